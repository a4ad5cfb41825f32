"""Point-triangle distance kernel and the narrow band, against brute-force references."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from backend.mesh.distance import (
    Grid,
    closest_point_on_triangle,
    narrow_band,
    narrow_band_grid,
    point_triangle_distance,
    split_long_triangles,
)
from backend.progress import Cancelled

REGIONS = ("A", "B", "C", "AB", "BC", "CA", "face")


def _reference(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, str]:
    """Closest point and its Voronoi region, one point at a time, without Ericson's tests.

    The triangle is convex, so its closest point is the orthogonal projection when that
    falls inside (solved by least squares), else the nearest point of its three edges.
    """
    best, region, best_d = None, None, np.inf
    for (s0, s1), (name, start, end) in zip(((a, b), (b, c), (c, a)), (("AB", "A", "B"), ("BC", "B", "C"),
                                                                       ("CA", "C", "A"))):
        d = s1 - s0
        t = 0.0 if d @ d == 0 else float(np.clip((p - s0) @ d / (d @ d), 0.0, 1.0))
        q = s0 + t * d
        if np.linalg.norm(p - q) < best_d:
            best, best_d = q, np.linalg.norm(p - q)
            region = start if t == 0.0 else end if t == 1.0 else name
    n = np.cross(b - a, c - a)
    if n @ n > 1e-9 * max((b - a) @ (b - a), (c - a) @ (c - a)) ** 2:
        uv = np.linalg.lstsq(np.stack([b - a, c - a], axis=1), p - a, rcond=None)[0]
        if uv.min() > 0 and uv.sum() < 1:
            q = a + (b - a) * uv[0] + (c - a) * uv[1]
            if np.linalg.norm(p - q) <= best_d:
                best, region = q, "face"
    return best, region


def _queries(rng: np.random.Generator, k: int) -> tuple[np.ndarray, ...]:
    """k (point, triangle) pairs: a fifth of the triangles degenerate, points everywhere around."""
    a, b, c = rng.normal(size=(3, k, 3))
    kind = rng.integers(0, 10, size=k)
    c[kind == 0] = a[kind == 0] + rng.random((np.sum(kind == 0), 1)) * (b - a)[kind == 0]  # collinear
    b[kind == 1] = a[kind == 1]                                                           # two corners meet
    b[kind == 2] = c[kind == 2] = a[kind == 2]                                            # a point
    # Barycentric weights from -1 to 2 reach every vertex and edge region; a normal offset
    # lifts the point off the plane.
    w = rng.uniform(-1.0, 2.0, size=(k, 3))
    w /= np.where(np.abs(w.sum(axis=1, keepdims=True)) < 0.2, 1.0, w.sum(axis=1, keepdims=True))
    n = np.cross(b - a, c - a)
    p = w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c + n * rng.normal(scale=0.5, size=(k, 1))
    return p, a, b, c, kind


def test_kernel_matches_a_brute_force_reference_in_every_voronoi_region():
    p, a, b, c, kind = _queries(np.random.default_rng(7), 3000)
    expected, regions = zip(*(_reference(*row) for row in zip(p, a, b, c)))
    expected = np.array(expected)

    got = closest_point_on_triangle(p, a, b, c)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    np.testing.assert_allclose(point_triangle_distance(p, a, b, c), np.linalg.norm(p - expected, axis=1), atol=1e-9)

    seen = {r: int(np.sum([x == r for x in regions])) for r in REGIONS}
    assert min(seen.values()) >= 20, seen  # the test really visited every region
    assert {r for r, k in zip(regions, kind) if k <= 2} >= {"A", "B", "AB", "BC", "CA"}  # and degenerate ones


def test_kernel_exact_cases():
    a, b, c = np.array([0.0, 0, 0]), np.array([2.0, 0, 0]), np.array([0.0, 2, 0])
    cases = {  # point -> closest point
        (0.5, 0.5, 3.0): (0.5, 0.5, 0.0),    # above the face
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex A
        (3.0, -1.0, 1.0): (2.0, 0.0, 0.0),   # vertex B
        (1.0, -2.0, 0.0): (1.0, 0.0, 0.0),   # edge AB
        (2.0, 2.0, 0.0): (1.0, 1.0, 0.0),    # edge BC
    }
    p = np.array(list(cases))
    np.testing.assert_allclose(closest_point_on_triangle(p, a, b, c), np.array(list(cases.values())), atol=1e-12)
    # A triangle collapsed to a segment and to a point.
    seg = point_triangle_distance([[1.0, 1.0, 0.0]], a, b, (1.0, 0.0, 0.0))
    dot = point_triangle_distance([[3.0, 4.0, 0.0]], a, a, a)
    np.testing.assert_allclose([seg[0], dot[0]], [1.0, 5.0])


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
    from backend.mesh import gpu
    from backend.mesh.blocks import padded_window
    from backend.mesh.distance import narrow_band_blocks

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
    from backend.mesh.blocks import padded_window
    from backend.mesh.distance import narrow_band_blocks

    vertices, faces = _soup(np.random.default_rng(5))
    grid = padded_window(Grid.cube(24).covering(vertices.min(axis=0), vertices.max(axis=0), 0.2))
    with pytest.raises(ValueError, match="device"):
        narrow_band_blocks(vertices, faces, grid, 0.1, margin=0.2, device="tpu")
    blocks, distance, face = narrow_band_blocks(vertices, faces, grid, 0.1, margin=0.2, device="cpu")
    assert distance.shape == face.shape == (blocks.count, 512)
