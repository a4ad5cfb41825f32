"""The mesher's written-out marching-cubes patch table against PyMCubes, from which it was derived."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh.remesh.dual import CORNERS, EDGES, patch_table


def _derive_from_pymcubes() -> np.ndarray:
    """Group PyMCubes' triangles for one cell with values -1 / +1 into connected pieces; each
    triangle vertex is an edge midpoint and names its edge."""
    mcubes = pytest.importorskip("mcubes")
    table = np.full((256, 12), -1, dtype=np.int8)
    mid_edge = {tuple((CORNERS[a] + CORNERS[b]).tolist()): e for e, (a, b) in enumerate(EDGES)}
    for code in range(1, 255):
        values = np.where([(code >> c) & 1 for c in range(8)], -1.0, 1.0).reshape(2, 2, 2)
        points, triangles = mcubes.marching_cubes(values, 0.0)
        edge = [mid_edge[tuple(np.rint(2 * p).astype(int).tolist())] for p in points]
        root = list(range(len(points)))

        def find(i: int) -> int:
            while root[i] != i:
                root[i] = root[root[i]]
                i = root[i]
            return i

        for a, b, c in triangles.tolist():
            root[find(b)] = find(a)
            root[find(c)] = find(a)
        labels = sorted({find(i) for i in range(len(points))})
        for i, e in enumerate(edge):
            table[code, e] = labels.index(find(i))
    return table


def test_the_written_table_is_pymcubes_grouping():
    assert np.array_equal(patch_table(), _derive_from_pymcubes())


def test_every_cut_edge_has_a_patch_and_no_other_does():
    table = patch_table()
    for code in range(256):
        signs = [(code >> c) & 1 for c in range(8)]
        cut = [signs[a] != signs[b] for a, b in EDGES]
        assert [p >= 0 for p in table[code]] == cut, code
    # Complementary codes cut the same edges.
    assert np.array_equal(table >= 0, table[::-1] >= 0)
