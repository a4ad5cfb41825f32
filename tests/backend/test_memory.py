"""backend.memory: the allocator settings take on glibc and can be turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backend import memory

# In a fresh process: the resident MB freed by deleting a 64 MB array, then after release_freed_memory().
_CODE = """
import numpy as np
from backend import memory
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
print(memory.keep_freed_memory())
a = np.ones(8 << 20)
before = rss()
del a
after = rss()
memory.release_freed_memory()
print(round(before - after), round(before - rss()))
"""


def _run(**env: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True,
                          env={**os.environ, **env})
    return done.stdout.split()


@pytest.mark.skipif(memory._libc() is None or not os.path.exists("/proc/self/statm"), reason="not Linux with glibc")
def test_freed_memory_is_kept_until_released():
    took, freed, released = _run()
    assert took == "True"
    assert int(freed) < 8 and int(released) > 56        # kept on free, given back on release
    took, freed, _ = _run(MESHSMITH_KEEP_MEMORY="0")
    assert took == "False" and int(freed) > 56            # glibc's default: big arrays go back at once
