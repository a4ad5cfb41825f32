"""Silence what Blender itself prints (render progress, operator reports, importer timings) around a call.

Standard library only: render/, the demo and the field test use it, in either Blender's Python.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_stdout(enabled: bool = True) -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null while the block runs (``enabled=False``: do nothing).

    Blender writes from C (``Fra:`` render lines, ``Info:`` reports, importer timings), past
    ``sys.stdout``; only the descriptors catch it. Python's own streams are flushed first so
    nothing of the script's is lost or reordered. Errors still surface as exceptions.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
