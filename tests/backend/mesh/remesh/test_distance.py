"""The narrow band of exact distances on grid nodes, against brute-force references."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from backend.mesh.remesh.blocks import Grid
from backend.mesh.remesh.distance import narrow_band, narrow_band_grid, split_long_triangles
from backend.mesh.triangles import point_triangle_distance
from backend.progress import Cancelled


def _soup(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """30 small triangles, one long diagonal sliver (split by the band), one degenerate."""
    centers = rng.uniform(-0.7, 0.7, size=(30, 1, 3))
    tris = centers + rng.normal(scale=0.08, size=(30, 3, 3))
    tris[0] = [[-0.9, -0.9, -0.8], [0.9, 0.85, 0.9], [0.8, 0.9, 0.7]]
    tris[1, 2] = (tris[1, 0] + tris[1, 1]) / 2
    return tris.reshape(-1, 3), np.arange(90).reshape(30, 3)


@pytest.mark.parametrize("chunk_pairs", [97, 1 << 18])
def test_narrow_band_equals_dense_brute_force_within_the_band(chunk_pairs):
    vertices, faces = _soup(np.random.default_rng(3))
    cube = Grid.cube(24)
    grid = cube.window(np.array([2, -2, 1]), np.array([23, 26, 20]))  # clips some triangles, pads others
    band = 2.2 * grid.spacing

    nodes = grid.points(np.arange(grid.size))                                            # (N, 3)
    t = vertices[faces]
    brute = point_triangle_distance(nodes[:, None, :], t[None, :, 0], t[None, :, 1], t[None, :, 2]).min(axis=1)

    dense = narrow_band_grid(vertices, faces, grid, band, chunk_pairs=chunk_pairs).ravel()
    sparse = narrow_band(vertices, faces, grid, band, chunk_pairs=chunk_pairs)
    inside, outside = brute < band * (1 - 1e-6), brute > band * (1 + 1e-6)
    assert inside.sum() > 1000 and outside.sum() > 1000
    # float32 kernel (float64 for slivers): absolute error far below a voxel.
    atol = 1e-5 * grid.spacing
    np.testing.assert_allclose(dense[inside], brute[inside], rtol=0, atol=atol)
    assert np.isinf(dense[outside]).all()
    np.testing.assert_array_equal(sparse.dense().ravel(), dense)
    assert np.all(np.diff(sparse.index) > 0) and sparse.distance.dtype == np.float32

    # The nearest face comes with the distance: its own distance is the minimum (ties allowed).
    with_face, face = narrow_band_grid(vertices, faces, grid, band, chunk_pairs=chunk_pairs, return_face=True)
    np.testing.assert_array_equal(with_face.ravel(), dense)
    face = face.ravel()
    assert face.dtype == np.int32 and (face[np.isinf(dense)] == -1).all() and (face[inside] >= 0).all()
    own = point_triangle_distance(nodes[inside], *(t[face[inside], k] for k in range(3)))
    np.testing.assert_allclose(own, brute[inside], rtol=0, atol=atol)
    np.testing.assert_allclose(point_triangle_distance(nodes[sparse.index], *(t[sparse.face, k] for k in range(3))),
                               sparse.distance, rtol=0, atol=atol)
    # The long sliver is split into pieces; faces still index the input, not the pieces.
    assert sparse.face.max() < len(faces) and 0 in sparse.face


def test_window_nodes_lie_on_the_lattice_of_the_cube():
    cube = Grid.cube(32)
    window = cube.covering(np.array([-0.99, -0.2, 0.3]), np.array([0.99, 0.1, 0.31]), margin=0.1)
    assert window.origin[0] < -1.0  # pads past the cube when the band needs it
    ijk = np.round((window.points(np.arange(window.size)) + 1.0) / cube.spacing)
    np.testing.assert_allclose(window.points(np.arange(window.size)), -1.0 + ijk * cube.spacing, atol=1e-12)
    outer = np.zeros(window.shape, bool)
    outer[[0, -1]] = outer[:, [0, -1]] = outer[:, :, [0, -1]] = True
    pts = window.points(np.flatnonzero(outer))
    lo, hi = np.array([-0.99, -0.2, 0.3]), np.array([0.99, 0.1, 0.31])
    gap = np.maximum(np.maximum(lo - pts, pts - hi), 0.0)
    assert np.linalg.norm(gap, axis=1).min() > 0.1  # the outer layer is beyond the margin


def test_narrow_band_does_not_touch_far_nodes():
    """A few small triangles on a 513^3 grid: a dense pass would allocate >= 135 M entries."""
    rng = np.random.default_rng(0)
    vertices = rng.uniform(-0.5, 0.5, size=(1, 3)) + rng.normal(scale=0.01, size=(60, 3))
    faces = np.arange(60).reshape(20, 3)
    grid = Grid.cube(512)
    tracemalloc.start()
    try:
        result = narrow_band(vertices, faces, grid, 2.2 * grid.spacing)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0 < len(result.index) < 200_000
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MB"


def test_split_long_triangles_covers_the_same_area_with_short_edges():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 50, 3))
    a2, b2, c2 = split_long_triangles(a, b, c, 0.3)
    area = lambda a, b, c: np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()  # noqa: E731
    assert len(a2) > 50 and np.isclose(area(a2, b2, c2), area(a, b, c))
    for u, v in ((a2, b2), (b2, c2), (c2, a2)):
        assert np.linalg.norm(u - v, axis=1).max() <= 0.3


def test_narrow_band_reports_progress_and_can_be_cancelled():
    vertices, faces = _soup(np.random.default_rng(5))
    grid = Grid.cube(32)
    calls = []
    narrow_band(vertices, faces, grid, 2.2 * grid.spacing, chunk_pairs=500, progress=lambda f, s: calls.append(f))
    assert len(calls) > 5 and calls == sorted(calls) and calls[-1] == 1.0

    def cancel(fraction, stage):
        if fraction > 0.3:
            raise Cancelled("job")

    with pytest.raises(Cancelled):
        narrow_band(vertices, faces, grid, 2.2 * grid.spacing, chunk_pairs=500, progress=cancel)


def test_cuda_path_matches_the_cpu_path():
    from backend.mesh.remesh import gpu
    from backend.mesh.remesh.blocks import padded_window
    from backend.mesh.remesh.distance import narrow_band_blocks

    if not gpu.available():
        pytest.skip("cubvh with a CUDA device is not available here")
    vertices, faces = _soup(np.random.default_rng(5))
    grid = padded_window(Grid.cube(40).covering(vertices.min(axis=0), vertices.max(axis=0), 0.2))
    band = 1.1 * grid.spacing
    cpu = narrow_band_blocks(vertices, faces, grid, band, margin=2 * band, device="cpu")
    cuda = narrow_band_blocks(vertices, faces, grid, band, margin=2 * band, device="cuda")
    np.testing.assert_array_equal(cpu[0].blocks, cuda[0].blocks)
    near = np.isfinite(cpu[1]) & np.isfinite(cuda[1])
    np.testing.assert_allclose(cuda[1][near], cpu[1][near], atol=1e-5 * grid.spacing)
    # Nodes at the band's edge may fall on either side by rounding; no other disagreement.
    assert (np.isfinite(cpu[1]) != np.isfinite(cuda[1])).sum() <= 0.001 * cpu[1].size


def test_device_choice_is_checked_and_cpu_is_always_there():
    from backend.mesh.remesh.blocks import padded_window
    from backend.mesh.remesh.distance import narrow_band_blocks

    vertices, faces = _soup(np.random.default_rng(5))
    grid = padded_window(Grid.cube(24).covering(vertices.min(axis=0), vertices.max(axis=0), 0.2))
    with pytest.raises(ValueError, match="device"):
        narrow_band_blocks(vertices, faces, grid, 0.1, margin=0.2, device="tpu")
    blocks, distance, face = narrow_band_blocks(vertices, faces, grid, 0.1, margin=0.2, device="cpu")
    assert distance.shape == face.shape == (blocks.count, 512)
