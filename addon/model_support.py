"""Model support on demand: PyTorch and the hub client installed for the bundled backend; stdlib only.

The extension zips carry what Watertight, Artist, Texture and From Views by the visual hull
need. The model-backed modes (From Views by the model, From Text with Meshsmith's model,
Artist (learned)) also need PyTorch, a few hundred MB that most users never want in the zip.
:class:`Installer` runs ``pip install --target`` with Blender's own Python into a folder of
the extension's user directory, on a thread, line by line into a log; the add-on then puts that
folder on the bundled backend's ``PYTHONPATH``.

pip resolves against the pins of ``requirements-extension.txt`` (a constraints file the zip
carries, :func:`bundled_constraints`), so what it adds of the shared dependencies (click, tqdm,
typing-extensions...) is what the zip's wheels already hold; the add-on also puts this folder
*after* those wheels on the path.

Nothing is left half-installed: pip writes into ``<folder>.partial``, which replaces
``<folder>`` only when pip succeeds, and a swap that fails puts the previous folder back; a
failed or cancelled install leaves the previous install as it was. The log,
``<folder>.log``, is always the last attempt's.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: What model support installs (the versions the backend is tested with).
PACKAGES = ("torch==2.13.0", "safetensors==0.8.0", "huggingface_hub==2.4.0")
#: PyTorch's CPU-only builds: on Linux and Windows PyPI's torch is the several-GB CUDA build.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The module whose presence means "installed".
MARKER_MODULE = "torch"
#: The pins of the zip's wheels, next to the extension's manifest (``make dist`` puts it there).
CONSTRAINTS_NAME = "requirements-extension.txt"


def default_torch_index(system: str | None = None) -> str:
    """The extra index for PyTorch on this OS: the CPU builds on Linux and Windows; none on macOS."""
    return CPU_INDEX if (system or platform.system()) in ("Linux", "Windows") else ""


def is_installed(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER_MODULE / "__init__.py").is_file()


def bundled_constraints(root: str | os.PathLike | None = None) -> str:
    """The zip's ``requirements-extension.txt`` in the installed extension ``root`` (this
    package's folder by default); "" when it has none (the add-on alone)."""
    path = Path(root if root is not None else Path(__file__).parent) / CONSTRAINTS_NAME
    return str(path) if path.is_file() else ""


def pip_command(python: str, target: str | os.PathLike, extra_index: str = "",
                extra_args: Sequence[str] = (), constraints: str | os.PathLike = "") -> list[str]:
    """The pip call that installs :data:`PACKAGES` into ``target``, held to the pins of the
    ``constraints`` file when there is one."""
    command = [python, "-m", "pip", "install", "--target", str(target), "--no-input", "--progress-bar", "off",
               "--disable-pip-version-check"]
    if extra_index:
        command += ["--extra-index-url", extra_index]
    if constraints:
        command += ["--constraint", str(constraints)]
    return command + list(extra_args) + list(PACKAGES)


@dataclass
class Installer:
    """One install of model support into ``folder`` with ``python``; :meth:`start` runs it on a thread.

    ``state`` is "idle", "running", "done", "failed" or "cancelled"; ``line`` the last thing pip
    said (for the preferences), ``message`` the outcome, ``log_path`` everything pip printed.
    ``constraints`` is a pip constraints file (see :func:`bundled_constraints`), or "".
    """

    python: str
    folder: Path
    extra_index: str = ""
    extra_args: tuple[str, ...] = ()
    constraints: str = ""
    state: str = "idle"
    line: str = ""
    message: str = ""
    lines_seen: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def partial(self) -> Path:
        return self.folder.with_name(self.folder.name + ".partial")

    @property
    def old(self) -> Path:
        return self.folder.with_name(self.folder.name + ".old")

    @property
    def log_path(self) -> Path:
        return self.folder.with_name(self.folder.name + ".log")

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        if self.running:
            return
        self.state, self.line, self.message, self.lines_seen = "running", "starting pip", "", 0
        self._cancel.clear()
        self._thread = threading.Thread(target=self._run, name="meshsmith-model-support", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> str:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def cancel(self) -> None:
        """Stop the install: pip is stopped if it runs, and not started if it does not yet; the
        thread then ends as "cancelled". Once pip has succeeded and the swap begun, it completes."""
        if not self.running:
            return
        self._cancel.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _run(self) -> None:
        try:
            self._install()
        except Exception as exc:  # noqa: BLE001 - whatever it is, the state must leave "running"
            log.exception("installing model support failed")
            self._fail(f"Installing model support failed: {exc}. Nothing was changed.")

    def _install(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        if self._cancel.is_set():
            self._cancelled()
            return
        command = pip_command(self.python, self.partial, self.extra_index, self.extra_args, self.constraints)
        options: dict = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}
        try:
            with open(self.log_path, "w", encoding="utf-8") as log_file:
                log_file.write(" ".join(command) + "\n")
                self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, text=True, errors="replace", **options)
                if self._cancel.is_set():           # cancel() came while Popen ran and saw no process
                    self._process.terminate()
                for raw in self._process.stdout:
                    log_file.write(raw)
                    log_file.flush()
                    text = raw.strip()
                    if text:
                        self.line, self.lines_seen = text[:200], self.lines_seen + 1
                code = self._process.wait()
        except OSError as exc:
            self._fail(f"Could not run {self.python!r} -m pip: {exc.strerror or exc}.")
            return
        if self._cancel.is_set():
            self._cancelled()
            return
        if code != 0 or not is_installed(self.partial):
            self._fail(f"pip failed (exit code {code}): {self.line or 'no output'}. The whole output is in "
                       f"{self.log_path}. Nothing was changed.")
            return
        try:
            self._swap()
        except OSError as exc:
            lost = self.old.exists() and not self.folder.exists()    # the swap and its undo both failed
            self._fail(f"The new install could not replace {self.folder} ({exc.strerror or exc}; is a backend "
                       f"using it? Stop it and install again). "
                       + (f"The previous install is in {self.old}." if lost else "Nothing was changed."))
            return
        self.state = "done"
        self.message = (f"Model support installed ({', '.join(PACKAGES)}). Restart the backend to use it.")

    def _swap(self) -> None:
        """Put ``partial`` in place of ``folder``; if that fails, the previous ``folder`` is back
        (from ``old``) before the error is raised."""
        shutil.rmtree(self.old, ignore_errors=True)
        moved = False
        try:
            if self.folder.exists():
                os.replace(self.folder, self.old)
                moved = True
            os.replace(self.partial, self.folder)
        except OSError:
            if moved:
                os.replace(self.old, self.folder)
            raise
        shutil.rmtree(self.old, ignore_errors=True)

    def _cancelled(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.state, self.message = "cancelled", "Cancelled; nothing was changed."

    def _fail(self, message: str) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.state, self.message = "failed", message
