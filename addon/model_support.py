"""Model support on demand: PyTorch and the hub client installed for the bundled backend; stdlib only.

The extension zips carry what Watertight, Artist, Texture and From Views by the visual hull
need. The model-backed modes (From Views by the model, From Text with Meshsmith's model,
Artist (learned)) also need PyTorch, a few hundred MB that most users never want in the zip.
:class:`Installer` runs ``pip install --target`` with Blender's own Python into a folder of
the extension's user directory, on a thread, line by line into a log; the add-on then puts that
folder on the bundled backend's ``PYTHONPATH``.

Nothing is left half-installed: pip writes into ``<folder>.partial``, which replaces
``<folder>`` only when pip succeeds; a failed or cancelled install leaves the previous state
(and its log) as it was.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: What model support installs (the versions the backend is tested with).
PACKAGES = ("torch==2.13.0", "safetensors==0.8.0", "huggingface_hub==2.4.0")
#: PyTorch's CPU-only builds: on Linux and Windows PyPI's torch is the several-GB CUDA build.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The module whose presence means "installed".
MARKER_MODULE = "torch"


def default_torch_index(system: str | None = None) -> str:
    """The extra index for PyTorch on this OS: the CPU builds on Linux and Windows; none on macOS."""
    return CPU_INDEX if (system or platform.system()) in ("Linux", "Windows") else ""


def is_installed(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER_MODULE / "__init__.py").is_file()


def pip_command(python: str, target: str | os.PathLike, extra_index: str = "",
                extra_args: Sequence[str] = ()) -> list[str]:
    """The pip call that installs :data:`PACKAGES` into ``target``."""
    command = [python, "-m", "pip", "install", "--target", str(target), "--no-input", "--progress-bar", "off",
               "--disable-pip-version-check"]
    if extra_index:
        command += ["--extra-index-url", extra_index]
    return command + list(extra_args) + list(PACKAGES)


@dataclass
class Installer:
    """One install of model support into ``folder`` with ``python``; :meth:`start` runs it on a thread.

    ``state`` is "idle", "running", "done", "failed" or "cancelled"; ``line`` the last thing pip
    said (for the preferences), ``message`` the outcome, ``log_path`` everything pip printed.
    """

    python: str
    folder: Path
    extra_index: str = ""
    extra_args: tuple[str, ...] = ()
    state: str = "idle"
    line: str = ""
    message: str = ""
    lines_seen: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def partial(self) -> Path:
        return self.folder.with_name(self.folder.name + ".partial")

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
        self._thread = threading.Thread(target=self._run, name="meshsmith-model-support", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> str:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def cancel(self) -> None:
        process = self._process
        if self.running and process is not None and process.poll() is None:
            self.state = "cancelled"
            process.terminate()

    def _run(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        command = pip_command(self.python, self.partial, self.extra_index, self.extra_args)
        options: dict = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}
        try:
            with open(self.log_path, "w", encoding="utf-8") as log:
                log.write(" ".join(command) + "\n")
                self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, text=True, errors="replace", **options)
                for raw in self._process.stdout:
                    log.write(raw)
                    log.flush()
                    text = raw.strip()
                    if text:
                        self.line, self.lines_seen = text[:200], self.lines_seen + 1
                code = self._process.wait()
        except OSError as exc:
            self._fail(f"Could not run {self.python!r} -m pip: {exc.strerror or exc}.")
            return
        if self.state == "cancelled":
            shutil.rmtree(self.partial, ignore_errors=True)
            self.message = "Cancelled; nothing was changed."
            return
        if code != 0 or not is_installed(self.partial):
            self._fail(f"pip failed (exit code {code}): {self.line or 'no output'}. The whole output is in "
                       f"{self.log_path}. Nothing was changed.")
            return
        old = self.folder.with_name(self.folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(self.partial, self.folder)
        shutil.rmtree(old, ignore_errors=True)
        self.state = "done"
        self.message = (f"Model support installed ({', '.join(PACKAGES)}). Restart the backend to use it.")

    def _fail(self, message: str) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.state, self.message = "failed", message
