"""Marching cubes in numpy against PyMCubes, whose tables it carries."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh.remesh.dual import CORNERS, EDGES
from backend.mesh.remesh.marching import marching_cubes, triangle_table

mcubes = pytest.importorskip("mcubes")


def test_the_table_is_pymcubes_triangles_cell_by_cell():
    mid_edge = {tuple((CORNERS[a] + CORNERS[b]).tolist()): e for e, (a, b) in enumerate(EDGES)}
    table, counts = triangle_table()
    for code in range(256):
        values = np.where([(code >> c) & 1 for c in range(8)], -1.0, 1.0).reshape(2, 2, 2)
        points, triangles = mcubes.marching_cubes(values, 0.0)
        edge = np.array([mid_edge[tuple(np.rint(2 * p).astype(int).tolist())] for p in points], dtype=np.int64)
        expected = edge[np.asarray(triangles, dtype=np.int64)] if len(triangles) else np.zeros((0, 3), np.int64)
        assert np.array_equal(table[code, : counts[code]], expected.reshape(-1, 3)), code


def _same_mesh(ours, theirs) -> bool:
    """Same vertices (to 1e-6: PyMCubes interpolates in another order) and the same oriented faces."""
    from scipy.spatial import cKDTree

    distance, index = cKDTree(theirs[0]).query(ours[0])
    if len(ours[0]) != len(theirs[0]) or distance.max() > 1e-6 or len(set(index.tolist())) != len(index):
        return False

    def oriented(faces):                      # a face is the same under rotation, not reflection
        return {tuple(np.roll(f, -int(np.argmin(f)))) for f in np.asarray(faces, dtype=np.int64).tolist()}

    return oriented(index[ours[1]]) == oriented(theirs[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_meshes_equal_pymcubes(seed):
    rng = np.random.default_rng(seed)
    # A lumpy blob plus noise: many cell cases, ambiguous faces included.
    axis = np.linspace(-1, 1, 24)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    field = np.sqrt(x ** 2 + (1.3 * y) ** 2 + z ** 2) - 0.7 + 0.15 * rng.standard_normal(x.shape)
    ours = marching_cubes(field, 0.05)
    theirs = mcubes.marching_cubes(field, 0.05)
    assert len(ours[1]) == len(theirs[1]) > 500
    assert _same_mesh(ours, theirs)


def test_a_closed_region_gives_a_closed_manifold_surface():
    import trimesh

    axis = np.linspace(-1, 1, 20)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces = marching_cubes(np.sqrt(x ** 2 + y ** 2 + z ** 2) - 0.6, 0.0)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert len(mesh.vertices) == len(np.unique(vertices, axis=0))       # each cut edge once


def test_bad_volumes_are_refused():
    with pytest.raises(ValueError, match="3D"):
        marching_cubes(np.zeros((4, 4)))
    assert marching_cubes(np.ones((3, 3, 3)))[1].shape == (0, 3)
