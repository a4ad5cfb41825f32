"""Data parallelism for the mesh core: threads for compiled kernels, forked processes for numpy.

The watertight engine's compiled kernels (:mod:`backend.mesh.native`) release the GIL, so
:func:`run_threads` runs their parts on threads: shared memory, no fork, no copy-on-write
faults (which on this project's 2-core VM cost more than a second process gave).

Its numpy fallback is many mid-sized chunks (the distance pass) and per-node gathers
(probing), which hold the GIL: threads do not speed these up; processes do.
:func:`run_parts` splits a stage into ``parts``: part 0 runs in the calling process, the
others in children made with
``os.fork``, which see every array of the caller without copying (copy-on-write). Results
come back through a pipe, pickled; large fixed-size outputs are written in place into
:func:`shared_array` buffers (anonymous shared memory), which children and parent see alike.

Safety. A child only runs the given numpy function on inherited arrays and leaves with
``os._exit``: no ``atexit`` handlers, no flushing of inherited buffers, no logging
handlers or locks of other threads are touched, so forking from the backend's worker
thread (other threads exist: the HTTP server) is safe in practice for this use. If the
calling part raises (a cancelled job raises from its progress callback), the children are
killed. A child that dies without an answer (out of memory, killed) is reported as an error
that says how to run without workers.

``MESHSMITH_WORKERS`` sets the number of threads or processes (1 turns this off); the default is the
number of CPUs this process may run on, at most :data:`MAX_WORKERS`. Platforms without
``os.fork`` run every part in the calling process.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import warnings
from typing import Callable, TypeVar

import numpy as np

T = TypeVar("T")

#: More processes than this rarely help: the stages are memory-bound.
MAX_WORKERS = 8


def worker_count() -> int:
    """How many processes a stage may use (``MESHSMITH_WORKERS``, else the usable CPUs, capped)."""
    if not hasattr(os, "fork"):
        return 1
    raw = os.environ.get("MESHSMITH_WORKERS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"MESHSMITH_WORKERS must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"MESHSMITH_WORKERS must be a positive integer, got {raw!r}")
        return value
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def parts_for(work: int, min_per_part: int) -> int:
    """Number of parts for ``work`` units: each part gets at least ``min_per_part`` (fork costs ~ms)."""
    return max(1, min(worker_count(), work // max(min_per_part, 1)))


def shared_array(shape: int | tuple[int, ...], dtype, fill=None) -> np.ndarray:
    """A zeroed array in anonymous shared memory: writes by forked children are seen here.

    ``fill`` sets every element (zero needs no pass: the memory starts zeroed).
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    dtype = np.dtype(dtype)
    nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    array = np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)
    if fill is not None and fill != 0:
        array.fill(fill)
    return array


def run_parts(task: Callable[[int, int], T], parts: int) -> list[T]:
    """``[task(0, parts), ..., task(parts - 1, parts)]``, part 0 here, the others in forked children.

    ``task`` must not depend on side effects of other parts except through
    :func:`shared_array` buffers, and only part 0 should report progress (children's calls
    would go nowhere). With ``parts == 1`` or without ``os.fork`` everything runs here.

    Raises
    ------
    Exception
        Whatever a part raised (a child's exception is re-raised here, pickled).
    RuntimeError
        A child died without an answer.
    """
    if parts <= 1 or not hasattr(os, "fork"):
        return [task(part, parts) for part in range(parts)]
    children: list[tuple[int, int]] = []
    try:
        for part in range(1, parts):
            read_end, write_end = os.pipe()
            with warnings.catch_warnings():
                # Python >= 3.12 warns on fork in a threaded process; see the module doc.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:                                                    # the child
                os.close(read_end)
                _child(task, part, parts, write_end)
            os.close(write_end)
            children.append((pid, read_end))
        first = task(0, parts)
    except BaseException:
        for pid, read_end in children:
            _kill(pid)
            os.close(read_end)
        raise
    results = [first]
    error: BaseException | None = None
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            died = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                    else f"exited with status {os.WEXITSTATUS(status)}")
            error = error or RuntimeError(
                f"a worker process {died} (out of memory?); run with MESHSMITH_WORKERS=1 or a lower resolution")
            continue
        kind, value = pickle.loads(data)
        if kind == "error":
            error = error or value
        results.append(value)
    if error is not None:
        raise error
    return results


def run_threads(task: Callable[[int, int], T], parts: int) -> list[T]:
    """``[task(0, parts), ..., task(parts - 1, parts)]`` on threads, part 0 on this one.

    For tasks that spend their time in compiled code that releases the GIL
    (:mod:`backend.mesh.native`): threads share memory outright, so they cost no fork and no
    copy-on-write page faults, and may write into ordinary arrays (each part its own rows
    or its own buffers: nothing here locks). Exceptions propagate (the first part's first).
    """
    if parts <= 1:
        return [task(0, 1)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="meshsmith-part") as pool:
        others = [pool.submit(task, part, parts) for part in range(1, parts)]
        try:
            first = task(0, parts)
        finally:
            rest = [future.result() for future in others]
    return [first, *rest]


def _child(task: Callable[[int, int], T], part: int, parts: int, write_end: int) -> None:
    """Run one part in a forked child, send ``("ok", result)`` or ``("error", exception)``, exit."""
    code = 0
    try:
        try:
            payload = pickle.dumps(("ok", task(part, parts)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            try:
                payload = pickle.dumps(("error", exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # an exception that does not pickle
                payload = pickle.dumps(("error", RuntimeError(f"worker part {part} failed: {exc!r}")))
        view = memoryview(payload)
        while view:
            view = view[os.write(write_end, view):]
    except BaseException:  # noqa: BLE001 - a child must never return into the caller's code
        code = 1
    finally:
        os._exit(code)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
