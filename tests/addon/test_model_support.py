"""Install Model Support's installer (bpy-free) against a stand-in for ``python -m pip``."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from addon import model_support
from addon.model_support import (CONSTRAINTS_NAME, CPU_INDEX, Installer, bundled_constraints, default_torch_index,
                                  is_installed, pip_command)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the stand-in pip is a POSIX shell script")


def _fake_python(tmp_path: Path, body: str) -> str:
    """A 'python' whose ``-m pip install --target DIR ...`` runs ``body`` with $TARGET set."""
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\n"
                      'while [ "$1" != "--target" ]; do shift; done; TARGET="$2"\n' + body)
    script.chmod(0o755)
    return str(script)


def test_the_pip_command_pins_the_packages_and_takes_the_index():
    command = pip_command("py", "/t", CPU_INDEX)
    assert command[:6] == ["py", "-m", "pip", "install", "--target", "/t"]
    assert command[command.index("--extra-index-url") + 1] == CPU_INDEX
    assert command[-len(model_support.PACKAGES):] == list(model_support.PACKAGES)
    assert "--extra-index-url" not in pip_command("py", "/t", "")
    assert default_torch_index("Linux") == default_torch_index("Windows") == CPU_INDEX
    assert default_torch_index("Darwin") == ""


def test_pip_is_held_to_the_pins_the_zip_carries(tmp_path):
    # The zip's requirements-extension.txt sits next to the add-on's __init__.py; the add-on alone has none.
    assert bundled_constraints(tmp_path) == "" and bundled_constraints() == ""
    (tmp_path / CONSTRAINTS_NAME).write_text("tqdm==4.70.1\n")
    pins = bundled_constraints(tmp_path)
    assert pins == str(tmp_path / CONSTRAINTS_NAME)
    command = pip_command("py", "/t", constraints=pins)
    assert command[command.index("--constraint") + 1] == pins
    assert command.index("--constraint") < len(command) - len(model_support.PACKAGES)
    assert "--constraint" not in pip_command("py", "/t")
    # ... and the installer passes them on.
    seen = tmp_path / "args"
    python = _fake_python(tmp_path, f'echo "$@" > "{seen}"\nmkdir -p "$TARGET/torch"\ntouch "$TARGET/torch/__init__.py"\n')
    installer = Installer(python, tmp_path / "model-support", constraints=pins)
    installer.start()
    assert installer.wait(30) == "done", installer.message
    assert f"--constraint {pins}" in seen.read_text()


def test_a_good_install_lands_whole_and_replaces_the_old_one(tmp_path):
    folder = tmp_path / "user" / "model-support"
    (folder / "old").mkdir(parents=True)
    python = _fake_python(tmp_path, 'echo "Collecting torch"\nmkdir -p "$TARGET/torch"\n'
                                    'touch "$TARGET/torch/__init__.py"\necho "Successfully installed torch"\n')
    installer = Installer(python, folder)
    installer.start()
    assert installer.wait(30) == "done", installer.message
    assert is_installed(folder) and not (folder / "old").exists()
    assert not installer.partial.exists()
    assert installer.line == "Successfully installed torch" and installer.lines_seen == 2
    assert "Collecting torch" in installer.log_path.read_text()


def test_a_failed_install_changes_nothing_and_says_where_the_log_is(tmp_path):
    folder = tmp_path / "model-support"
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text("")               # a previous, working install
    python = _fake_python(tmp_path, 'mkdir -p "$TARGET/torch"\necho "ERROR: No matching distribution"\nexit 1\n')
    installer = Installer(python, folder)
    installer.start()
    assert installer.wait(30) == "failed"
    assert "No matching distribution" in installer.message and str(installer.log_path) in installer.message
    assert is_installed(folder) and not installer.partial.exists()


def test_cancel_stops_pip_and_leaves_nothing(tmp_path):
    python = _fake_python(tmp_path, 'mkdir -p "$TARGET/torch"\necho started\nexec sleep 30\n')
    installer = Installer(python, tmp_path / "model-support")
    installer.start()
    for _ in range(100):
        if installer.lines_seen:
            break
        time.sleep(0.05)
    installer.cancel()
    assert installer.wait(10) == "cancelled"
    assert not (tmp_path / "model-support").exists() and not installer.partial.exists()


def test_a_python_that_does_not_run_is_a_clear_failure(tmp_path):
    installer = Installer(str(tmp_path / "missing-python"), tmp_path / "model-support")
    installer.start()
    assert installer.wait(10) == "failed" and "Could not run" in installer.message


def _good_pip(tmp_path: Path) -> str:
    return _fake_python(tmp_path, 'mkdir -p "$TARGET/torch"\necho "new" > "$TARGET/torch/__init__.py"\n')


def test_a_cancel_before_pip_starts_is_not_lost(tmp_path, monkeypatch):
    # cancel() while the thread still clears an old partial (no pip process yet): pip must not run.
    ran = tmp_path / "pip-ran"
    python = _fake_python(tmp_path, f'touch "{ran}"\nmkdir -p "$TARGET/torch"\ntouch "$TARGET/torch/__init__.py"\n')
    installer = Installer(python, tmp_path / "model-support")
    clearing, go_on = threading.Event(), threading.Event()
    real_rmtree = shutil.rmtree

    def slow_rmtree(path, *args, **kwargs):
        if Path(path) == installer.partial and not go_on.is_set():
            clearing.set()
            go_on.wait(10)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(model_support.shutil, "rmtree", slow_rmtree)
    installer.start()
    assert clearing.wait(10)
    installer.cancel()
    go_on.set()
    assert installer.wait(10) == "cancelled", installer.message
    assert not ran.exists() and not installer.folder.exists() and not installer.partial.exists()


@pytest.mark.parametrize("failing", ["folder", "partial"], ids=["moving-the-old-aside", "moving-the-new-in"])
def test_a_swap_that_fails_puts_the_previous_install_back(tmp_path, monkeypatch, failing):
    # On Windows a running backend holds torch's DLLs: the folder cannot be moved.
    folder = tmp_path / "model-support"
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text("old\n")
    installer = Installer(_good_pip(tmp_path), folder)
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == getattr(installer, failing):
            raise PermissionError(13, "Access is denied")
        return real_replace(src, dst)

    monkeypatch.setattr(model_support.os, "replace", replace)
    installer.start()
    assert installer.wait(30) == "failed", installer.message
    assert "Access is denied" in installer.message and "Nothing was changed" in installer.message
    assert (folder / "torch" / "__init__.py").read_text() == "old\n"
    assert not installer.partial.exists() and not installer.old.exists()


def test_any_error_of_the_install_thread_ends_as_a_failure(tmp_path):
    # The folder's parent is a file: making the partial's folder fails before pip runs.
    (tmp_path / "user").write_text("")
    installer = Installer(_good_pip(tmp_path), tmp_path / "user" / "model-support")
    installer.start()
    assert installer.wait(10) == "failed" and not installer.running
    assert "Nothing was changed" in installer.message
