"""Fixtures for the add-on tests: an isolated Blender user folder, the built extension installed
into the real ``bpy`` module, and a real backend process.

The bpy-free tests (glb, client, jobs) need none of the Blender fixtures; ``bpy`` is imported
only by the fixtures that install the extension.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Blender reads this when bpy is first imported: the tests must never touch a real user's
# Blender configuration or extensions.
_BLENDER_USER = tempfile.mkdtemp(prefix="meshsmith-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _BLENDER_USER

#: Seconds the backend gets to write its state file and answer /v1/health.
BACKEND_START_TIMEOUT = 120.0
ADDON_MODULE = "bl_ext.user_default.meshsmith"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_BLENDER_USER, ignore_errors=True)


@dataclass(frozen=True)
class RunningBackend:
    url: str
    token: str
    pid: int
    state_dir: Path
    data_dir: Path
    log_path: Path


def backend_python() -> str:
    """``$MESHSMITH_BACKEND_PYTHON``, else the repository's ``.venv`` (which has the backend's deps)."""
    return os.environ.get("MESHSMITH_BACKEND_PYTHON") or str(REPO / ".venv" / "bin" / "python")


def _health(url: str) -> dict | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/v1/health", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _log_tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def backend(tmp_path_factory) -> RunningBackend:
    """A real ``python -m backend serve --port 0`` with its own state and data folders.

    Fails (never skips) when it cannot start: the end-to-end tests are the point of this suite.
    The add-on in this process finds it through ``MESHSMITH_STATE_DIR``.
    """
    root = tmp_path_factory.mktemp("backend")
    state_dir, data_dir, log_path = root / "state", root / "data", root / "backend.log"
    env = {**os.environ, "MESHSMITH_STATE_DIR": str(state_dir), "MESHSMITH_DATA_DIR": str(data_dir)}
    python = backend_python()
    if not Path(python).exists():
        pytest.fail(f"backend Python {python} does not exist; set MESHSMITH_BACKEND_PYTHON")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python, "-m", "backend", "serve", "--port", "0"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + BACKEND_START_TIMEOUT
        state_file = state_dir / "backend.json"
        while True:
            if process.poll() is not None:
                pytest.fail(f"the backend exited with code {process.returncode} while starting:\n{_log_tail(log_path)}")
            if state_file.exists():
                state = json.loads(state_file.read_text())
                if state.get("pid") == process.pid and _health(state["url"]):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the backend did not answer within {BACKEND_START_TIMEOUT:g} s:\n{_log_tail(log_path)}")
            time.sleep(0.25)
        previous = os.environ.get("MESHSMITH_STATE_DIR")
        os.environ["MESHSMITH_STATE_DIR"] = str(state_dir)
        yield RunningBackend(state["url"], state["token"], process.pid, state_dir, data_dir, log_path)
        if previous is None:
            os.environ.pop("MESHSMITH_STATE_DIR", None)
        else:
            os.environ["MESHSMITH_STATE_DIR"] = previous
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    """The extension zip, built (and validated) by scripts/build_extension.py."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_extension.py"), "--output-dir", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    return path


@pytest.fixture(scope="session")
def addon(extension_zip):
    """The installed and enabled extension package (``bl_ext.user_default.meshsmith``)."""
    import importlib

    import bpy

    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    module = importlib.import_module(ADDON_MODULE)
    assert ADDON_MODULE in bpy.context.preferences.addons
    return module


@pytest.fixture
def runtime(addon):
    """The add-on's runtime module, with default preferences for every test."""
    import importlib

    import bpy

    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    for name in ("backend_address", "backend_python", "backend_dir"):
        setattr(prefs, name, "")
    prefs.start_on_generate = False
    return importlib.import_module(ADDON_MODULE + ".runtime")
