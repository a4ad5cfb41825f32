"""Workers (backend.mesh.parallel), forked and threaded: order, shared memory, errors, and the engine's results."""

import os

import numpy as np
import pytest

from backend.mesh import parallel
from backend.mesh.remesh.watertight import watertight
from tests import meshes

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@fork_only
def test_parts_come_back_in_order_and_children_write_shared_memory():
    shared = parallel.shared_array(4, np.int64)
    pids = parallel.run_parts(lambda part, parts: (shared.__setitem__(part, 10 + part), os.getpid())[1], 4)
    assert shared.tolist() == [10, 11, 12, 13]
    assert pids[0] == os.getpid() and len(set(pids)) == 4          # parts 1..3 ran in other processes


def test_threads_run_every_part_in_order():
    seen = []
    assert parallel.run_threads(lambda part, parts: (seen.append(part), part * 10)[1], 3) == [0, 10, 20]
    assert sorted(seen) == [0, 1, 2]


@pytest.mark.parametrize("run", [pytest.param("run_parts", marks=fork_only), "run_threads"])
@pytest.mark.parametrize("failing", [1, 2])
def test_a_parts_exception_is_raised_here(run, failing):
    def task(part, parts):
        if part == failing:
            raise ValueError(f"part {part} failed")
        return part

    with pytest.raises(ValueError, match=f"part {failing} failed"):
        getattr(parallel, run)(task, 3)


@fork_only
def test_a_failing_first_part_kills_the_children():
    marker = parallel.shared_array(1, np.int64)

    def task(part, parts):
        if part == 0:
            raise KeyboardInterrupt
        import time

        time.sleep(5)
        marker[0] = 1                                               # never reached: killed first

    with pytest.raises(KeyboardInterrupt):
        parallel.run_parts(task, 2)
    assert marker[0] == 0


def test_worker_count_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MESHSMITH_WORKERS", "3")
    assert parallel.worker_count() == (3 if hasattr(os, "fork") else 1)
    assert parallel.parts_for(10, 4) == min(parallel.worker_count(), 2)
    monkeypatch.setenv("MESHSMITH_WORKERS", "zero")
    with pytest.raises(ValueError, match="MESHSMITH_WORKERS"):
        parallel.worker_count()


@fork_only
def test_watertight_gives_the_same_result_with_and_without_workers(monkeypatch):
    v, f = meshes.broken_mesh()
    results = []
    for workers in ("1", "2"):
        monkeypatch.setenv("MESHSMITH_WORKERS", workers)
        # A tiny per-part minimum makes every stage split even on this small grid.
        monkeypatch.setattr(parallel, "parts_for", lambda work, minimum: min(parallel.worker_count(), max(work, 1)))
        results.append(watertight(v, f, resolution=64))
    np.testing.assert_array_equal(results[0].faces, results[1].faces)
    # Equal up to ties between faces at the same distance, which the chunk order decides
    # and which pick a vertex's tangent plane.
    np.testing.assert_allclose(results[0].vertices, results[1].vertices, atol=0.01 * results[0].voxel_size)
