"""Start, watch and stop a local backend process (``PYTHON -m backend serve``); stdlib only.

Which Python runs it (:func:`resolve_python`): the one the preferences name, else
``$MESHSMITH_BACKEND_PYTHON``, else Blender's own when the extension carries the backend
(the zips ``make dist`` builds: ``bundled/`` holds the backend's packages, and Blender has
installed the zip's wheels into its extensions' ``site-packages``), else ``python3`` on PATH.

Only a process started here is ever stopped here: a backend the user runs in a terminal is
found through the state file and used, never terminated.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .client import Client
from .connection import resolve_connection
from .errors import BackendError, BackendStartError, BackendUnavailable
from .protocol import Health

log = logging.getLogger(__name__)

#: Seconds to wait for a freshly started backend to answer its health check.
START_TIMEOUT = 60.0
#: Seconds a backend gets to shut down cleanly (and remove its state file) before it is killed.
STOP_TIMEOUT = 10.0
#: Environment variable naming the backend's Python when the preferences leave it empty.
PYTHON_ENV = "MESHSMITH_BACKEND_PYTHON"
#: The folder of a self-contained extension that holds the backend's packages.
BUNDLED = Path(__file__).resolve().parent / "bundled"


def bundled_dir() -> str:
    """The extension's own copy of the backend (its folder, for ``PYTHONPATH``), or "" when it has none."""
    return str(BUNDLED) if (BUNDLED / "backend" / "__main__.py").is_file() else ""


def bundled_paths(wheels: str, model_support: str = "") -> tuple[str, ...]:
    """The folders after the bundle on the bundled backend's ``PYTHONPATH``: Blender's install of
    the zip's wheels first, so their tested pins win over the copies pip put into model support
    (click, tqdm, typing-extensions...), then model support ("" for a folder it does not have)."""
    return tuple(p for p in (wheels, model_support) if p)


def uses_bundled(preference: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """True when Start runs the bundled backend on Blender's Python (no Python named, one bundled)."""
    environ = os.environ if environ is None else environ
    return not (preference.strip() or environ.get(PYTHON_ENV, "").strip()) and bool(bundled_dir())


def resolve_python(preference: str = "", environ: Mapping[str, str] | None = None) -> str:
    """The interpreter to run the backend with.

    The preference when set, else ``$MESHSMITH_BACKEND_PYTHON``, else Blender's own Python when
    the extension bundles the backend, else ``python3`` (or ``python``) on PATH. Raises
    :class:`BackendStartError` when none is found.
    """
    environ = os.environ if environ is None else environ
    if uses_bundled(preference, environ):
        return sys.executable
    candidate = preference.strip() or environ.get(PYTHON_ENV, "").strip()
    if candidate:
        path = Path(candidate).expanduser()
        if path.is_file():
            return str(path)
        found = shutil.which(candidate)
        if found:
            return found
        raise BackendStartError(
            f"The backend Python {candidate!r} does not exist. Set it in Meshsmith's preferences "
            "to the python of the environment where the backend is installed."
        )
    for name in ("python3", "python"):
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return found
    raise BackendStartError(
        "No Python found to run the backend. Set the backend Python in Meshsmith's preferences "
        f"or the {PYTHON_ENV} environment variable."
    )


def guess_backend_dir(python: str) -> str:
    """The checkout that holds ``backend/`` when ``python`` is that checkout's venv, else "".

    A development setup runs ``<checkout>/.venv/bin/python`` (``Scripts\\python.exe`` on Windows)
    without the backend being pip-installed; the checkout then has to be the working directory.
    """
    path = Path(python).expanduser()
    # Not resolved: a venv's python is a symlink to the system one, and the venv is what counts.
    for venv in (path.parent.parent, path.parent):
        checkout = venv.parent
        if (checkout / "backend" / "__main__.py").is_file():
            return str(checkout)
    return ""


@dataclass(frozen=True)
class PythonProbe:
    """What :func:`probe_python` found out about an interpreter."""

    executable: str          # the real interpreter (a pyenv or conda shim resolves to it); "" if it did not run
    has_backend: bool        # ``import backend`` would work where Start runs it
    error: str = ""          # why it did not run, when it did not


_PROBE = ("import importlib.util, json, sys; "
          "print(json.dumps([sys.executable, importlib.util.find_spec('backend') is not None]))")


def _python_path(backend_dir: str, extra_paths: Sequence[str], inherited: str) -> str:
    return os.pathsep.join(p for p in (backend_dir, *extra_paths, inherited) if p)


def probe_python(python: str, backend_dir: str = "", timeout: float = 15.0, *,
                 extra_paths: Sequence[str] = ()) -> PythonProbe:
    """Run ``python`` once to learn its real executable and whether it can import the backend,
    with the working directory and ``PYTHONPATH`` that :meth:`BackendProcess.start` would give it.

    Blocks up to ``timeout`` seconds: call it off Blender's main thread.
    """
    backend_dir = backend_dir.strip() or guess_backend_dir(python)
    env = dict(os.environ)
    if backend_dir or extra_paths:
        env["PYTHONPATH"] = _python_path(backend_dir, extra_paths, env.get("PYTHONPATH", ""))
    options: dict = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}
    try:
        done = subprocess.run([python, "-c", _PROBE], cwd=backend_dir or None, env=env, capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **options)
        executable, has_backend = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return PythonProbe("", False, f"it did not answer within {timeout:.0f} s")
    except (OSError, ValueError, IndexError, TypeError) as exc:
        return PythonProbe("", False, f"it could not be run ({type(exc).__name__}: {exc})")
    return PythonProbe(str(executable), bool(has_backend))


def default_log_path() -> Path:
    """Where the backend's output goes: one file per Blender process, in the temp folder."""
    return Path(tempfile.gettempdir()) / f"meshsmith-backend-{os.getpid()}.log"


def _tail(path: Path, lines: int = 8, start: int = 0) -> str:
    """The last ``lines`` lines written to ``path`` after byte ``start``."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class BackendProcess:
    """One backend process this add-on started.

    Parameters
    ----------
    python
        Interpreter with the backend's dependencies (see :func:`resolve_python`).
    backend_dir
        Folder that contains the ``backend`` package, when it is not installed in ``python``;
        used as working directory and put first on ``PYTHONPATH``. Empty: guessed from
        ``python`` when that is a checkout's venv (:func:`guess_backend_dir`).
    args
        Extra arguments after ``serve``, e.g. ``("--port", "0")``.
    extra_paths
        Folders put on ``PYTHONPATH`` after ``backend_dir``: for the bundled backend, the
        ``site-packages`` where Blender installed the extension's wheels.
    log_path
        File that receives the process's stdout and stderr.
    environ
        Environment for the process; ``os.environ`` by default. The state file is looked up
        with the same environment, so ``MESHSMITH_STATE_DIR`` agrees on both sides.
    """

    def __init__(
        self,
        python: str,
        *,
        backend_dir: str = "",
        args: Sequence[str] = (),
        log_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        extra_paths: Sequence[str] = (),
    ):
        self.python = python
        self.backend_dir = backend_dir.strip()
        self.args = tuple(args)
        self.extra_paths = tuple(extra_paths)
        self.log_path = Path(log_path) if log_path else default_log_path()
        self.environ = dict(os.environ if environ is None else environ)
        self._process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        #: Where this start's output begins in the (shared, appended) log file.
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        return [self.python, "-m", "backend", "serve", *self.args]

    def start(self) -> None:
        """Spawn the process; returns at once (see :meth:`wait_until_healthy`)."""
        if self.running:
            return
        env = dict(self.environ)
        cwd = None
        backend_dir = self.backend_dir or guess_backend_dir(self.python)
        if backend_dir:
            if not (Path(backend_dir) / "backend").is_dir():
                raise BackendStartError(
                    f"The backend folder {backend_dir!r} has no 'backend' package. "
                    "Point it at the Meshsmith checkout that contains backend/."
                )
            cwd = backend_dir
        if backend_dir or self.extra_paths:
            env["PYTHONPATH"] = _python_path(backend_dir, self.extra_paths, env.get("PYTHONPATH", ""))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()
        options: dict = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            # Its own session: a Ctrl-C in Blender's terminal does not hit the backend mid-job;
            # the add-on stops it explicitly instead.
            options["start_new_session"] = True
        try:
            self._process = subprocess.Popen(
                self.command(),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                **options,
            )
        except OSError as exc:
            self._close_log()
            raise BackendStartError(f"Could not run {self.python!r}: {exc.strerror or exc}.") from exc
        log.info("started backend pid %s: %s (log %s)", self._process.pid, " ".join(self.command()), self.log_path)

    def wait_until_healthy(self, timeout: float = START_TIMEOUT, *, address_override: str = "") -> Health:
        """Wait until this process has written its state file and answers ``/v1/health``.

        Raises :class:`BackendStartError` (with the end of the log) when the process exits or
        ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None:
                raise BackendStartError("The backend was not started.")
            code = self._process.poll()
            if code is not None:
                raise BackendStartError(
                    f"The backend exited with code {code} while starting. Its log ({self.log_path}) ends with:\n"
                    + _tail(self.log_path, start=self._log_start)
                )
            try:
                connection = resolve_connection(address_override, environ=self.environ)
                # Another backend's (or a stale) state file must not pass for ours.
                if address_override or connection.pid in (None, self._process.pid):
                    return Client.from_connection(connection, timeout=2.0).health()
            except (BackendUnavailable, BackendError):
                pass
            if time.monotonic() > deadline:
                raise BackendStartError(
                    f"The backend did not answer within {timeout:g} s. Its log ({self.log_path}) ends with:\n"
                    + _tail(self.log_path, start=self._log_start)
                )
            time.sleep(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate the process (clean shutdown first, then kill); a no-op when not running."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("backend pid %s did not stop in %g s; killing it", process.pid, timeout)
                process.kill()
                process.wait(timeout)
            log.info("stopped backend pid %s", process.pid)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def start_backend(
    python: str,
    *,
    backend_dir: str = "",
    args: Sequence[str] = (),
    log_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    address_override: str = "",
    extra_paths: Sequence[str] = (),
) -> tuple[BackendProcess, Health]:
    """Start a backend and wait for it; on failure nothing is left running."""
    process = BackendProcess(python, backend_dir=backend_dir, args=args, log_path=log_path, environ=environ,
                             extra_paths=extra_paths)
    process.start()
    try:
        health = process.wait_until_healthy(timeout, address_override=address_override)
    except BackendStartError:
        process.stop()
        raise
    return process, health
