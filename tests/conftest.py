"""Session-wide hooks of the test suite."""

from __future__ import annotations

import os
import sys

import pytest

_status: dict[str, int | None] = {"code": None}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's teardown once pytest is done, with pytest's exit status.

    Blender as a module (bpy) and torch in one interpreter can crash in its teardown: the whole
    suite ended "612 passed, 1 skipped" and then a segmentation fault, which made the run fail.
    Every report is written by now; only the teardown is skipped, and only when bpy is loaded.
    """
    if "bpy" in sys.modules and _status["code"] is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_status["code"])
