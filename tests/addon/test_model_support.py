"""Install Model Support's installer (bpy-free) against a stand-in for ``python -m pip``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from addon import model_support
from addon.model_support import CPU_INDEX, Installer, default_torch_index, is_installed, pip_command

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
        import time

        time.sleep(0.05)
    installer.cancel()
    assert installer.wait(10) == "cancelled"
    assert not (tmp_path / "model-support").exists() and not installer.partial.exists()


def test_a_python_that_does_not_run_is_a_clear_failure(tmp_path):
    installer = Installer(str(tmp_path / "missing-python"), tmp_path / "model-support")
    installer.start()
    assert installer.wait(10) == "failed" and "Could not run" in installer.message
