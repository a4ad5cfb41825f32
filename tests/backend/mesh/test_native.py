"""The compiled kernels (backend/mesh/_native.c) against their numpy twins."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

from backend.mesh import native
from backend.mesh.remesh import distance, dual, sheets
from backend.mesh.remesh import watertight as wt
from backend.mesh.remesh.watertight import watertight
from tests import meshes

needs_native = pytest.mark.skipif(not native.available(), reason=native.why_unavailable() or "native off")


def test_native_is_built_where_expected():
    # `make test` sets MESHSMITH_EXPECT_NATIVE=1: a broken build must fail CI, not fall back quietly.
    if os.environ.get("MESHSMITH_EXPECT_NATIVE") != "1":
        pytest.skip("MESHSMITH_EXPECT_NATIVE is not 1")
    assert native.available(), native.why_unavailable()


def test_native_switch_is_checked(monkeypatch):
    monkeypatch.setenv("MESHSMITH_NATIVE", "yes")
    with pytest.raises(ValueError, match="MESHSMITH_NATIVE must be 0 or 1"):
        native.available()
    monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    assert not native.available()
    assert native.why_unavailable()


def _random_quads(seed: int, count: int = 400, quads: int = 1500):
    rng = np.random.default_rng(seed)
    corner = rng.integers(0, 20, size=(count, 3))
    q = rng.integers(0, count, size=(quads, 4))
    points = corner[q[:, 0]] + rng.uniform(0, 1, size=(quads, 3))
    normals = rng.normal(size=(quads, 3))
    # Mostly one plane per vertex neighbourhood (the flat branch), some creases and corners,
    # some crossings without a plane.
    normals[: quads // 2] = [0.0, 0.2, 1.0]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    normals[rng.uniform(size=quads) < 0.1] = 0.0
    return q, points, normals, corner


@needs_native
@pytest.mark.parametrize("sharp", [True, False])
def test_place_vertices_matches_numpy(sharp):
    q, points, normals, corner = _random_quads(1)
    normals = normals if sharp else None
    used = np.unique(q)
    expected = dual._place_vertices(q, points, normals, corner)
    got = native.place_vertices(q, points, normals, corner, dual.FLAT_RATIO, dual.QEF_CUTOFF, dual.QEF_MARGIN)
    np.testing.assert_allclose(got[used], expected[used], rtol=0, atol=1e-9)


@needs_native
def test_split_quads_matches_numpy():
    rng = np.random.default_rng(2)
    vertices = rng.uniform(size=(50, 3))
    vertices[10:20] = vertices[0:10]                       # some equal diagonals: the tie rule decides
    quads = rng.integers(0, 50, size=(300, 4))
    quads[:20] = [[i, i + 1, i + 10, i + 11] for i in range(20)]
    np.testing.assert_array_equal(native.split_quads(vertices, quads, dual.DIAGONAL_TIE),
                                  dual._split_quads(vertices, quads))


@needs_native
def test_tangent_normals_match_numpy():
    v, f = meshes.two_intersecting_boxes()
    v = np.concatenate([v, [[0, 0, 0], [1, 0, 0], [2, 0, 0]]])            # and a degenerate face
    f = np.concatenate([f, [[len(v) - 3, len(v) - 2, len(v) - 1]]])
    rng = np.random.default_rng(3)
    face_a = rng.integers(-1, len(f), size=2000).astype(np.int32)
    face_b = rng.integers(-1, len(f), size=2000).astype(np.int32)
    # Points on their first face, on their second, or near neither.
    which = rng.integers(0, 3, size=2000)
    corners = v[f[np.maximum(np.where(which == 1, face_b, face_a), 0)]]
    w = rng.dirichlet([1, 1, 1], size=2000)
    p = np.einsum("kj,kjd->kd", w, corners) + (which == 2)[:, None] * rng.normal(scale=0.3, size=(2000, 3))
    expected = dual._tangent_normals(p, face_a, face_b, dual._Faces.of(v, f))
    got = native.tangent_normals(p, face_a, face_b, v, f, dual.ON_INPUT_VOXELS)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert (np.abs(got).sum(axis=1) > 0).mean() > 0.3


@needs_native
def test_bad_indices_are_refused_not_read():
    q, points, normals, corner = _random_quads(4)
    q[5, 2] = len(corner)
    with pytest.raises(ValueError, match="out of range"):
        native.place_vertices(q, points, normals, corner, dual.FLAT_RATIO, dual.QEF_CUTOFF, dual.QEF_MARGIN)
    with pytest.raises(ValueError, match="out of range"):
        native.split_quads(np.zeros((3, 3)), np.array([[0, 1, 2, 3]]), dual.DIAGONAL_TIE)
    with pytest.raises(ValueError, match="shape"):
        native.split_quads(np.zeros((3, 3)), np.array([[0, 1, 2]]), dual.DIAGONAL_TIE)


@needs_native
@pytest.mark.parametrize("stage", ["signing", "dual contouring", "sheets"])
@pytest.mark.parametrize("mesh", ["broken", "boxes", "sheet", "patch"])
def test_stage_is_the_same_on_both_kernels(monkeypatch, stage, mesh):
    # Every stage on numpy but one, run on each kernel: the same triangles, the same vertices
    # up to rounding. (The distance pass is compared in test_blocks: its float32 rounding on
    # numpy decides ties between faces differently, so whole results differ there.)
    from tests.backend.mesh.remesh.test_sheets import bumpy_patch

    v, f = {"broken": meshes.broken_mesh, "boxes": meshes.two_intersecting_boxes, "sheet": meshes.plane,
            "patch": bumpy_patch}[mesh]()
    off = types.SimpleNamespace(available=lambda: False)
    for module in (distance, dual, wt, sheets):
        monkeypatch.setattr(module, "native", off)
    # Probes and exact crossings, the mesher, or the moves onto open sheets.
    tested = {"signing": wt, "dual contouring": dual, "sheets": sheets}[stage]
    results = []
    for kernels in (native, off):
        monkeypatch.setattr(tested, "native", kernels)
        results.append(watertight(v, f, resolution=48))
    compiled, numpy_ = results
    np.testing.assert_array_equal(compiled.faces, numpy_.faces)
    np.testing.assert_allclose(compiled.vertices, numpy_.vertices, rtol=0, atol=1e-9 * compiled.voxel_size)


@needs_native
def test_turned_over_matches_numpy(monkeypatch):
    rng = np.random.default_rng(7)
    before = rng.uniform(size=(80, 3))
    after = before + rng.normal(scale=0.2, size=before.shape)
    triangles = rng.integers(0, 80, size=(600, 3))
    triangles[:20, 2] = triangles[:20, 1]                                   # degenerate: never turned over
    got = native.turned_over(before, after, triangles)
    shrunk = native.turned_over(before, after, triangles, 0.01)
    monkeypatch.setattr(sheets, "native", types.SimpleNamespace(available=lambda: False))
    expected = sheets._turned_over(before, after, triangles)
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.sum() < len(triangles) and not expected[:20].any()
    # With a least area: the turned-over ones and more (the slivers), the same in both.
    np.testing.assert_array_equal(shrunk, sheets._turned_over(before, after, triangles, 0.01))
    assert (shrunk >= expected).all() and shrunk.sum() > expected.sum() and not shrunk[:20].any()


@needs_native
def test_short_edge_ends_match_numpy(monkeypatch):
    rng = np.random.default_rng(5)
    vertices = rng.uniform(size=(60, 3))
    vertices[30:40] = vertices[0:10] + 1e-4 * dual.MIN_EDGE_VOXELS       # near-coincident partners
    quads = rng.integers(0, 60, size=(400, 4))
    quads[:10] = [[i, i + 30, i + 11, i + 12] for i in range(10)]          # sides
    quads[10:20] = [[i + 12, i, i + 11, i + 30] for i in range(10)]        # diagonals
    got = native.short_edge_ends(vertices, quads, dual.MIN_EDGE_VOXELS)
    monkeypatch.setattr(dual, "native", types.SimpleNamespace(available=lambda: False))
    expected = dual._short_edge_ends(vertices, quads)
    np.testing.assert_array_equal(got, expected)
    assert got[:10].all() and got[30:40].all()


@needs_native
def test_corner_angles_match_numpy_bit_for_bit(monkeypatch):
    from backend.mesh import polygons as P

    rng = np.random.default_rng(3)
    quads = rng.normal(size=(3000, 4, 3))
    quads[:500, 1] = 0.5 * (quads[:500, 0] + quads[:500, 2]) + 1e-9 * rng.normal(size=(500, 3))   # flat corners
    quads[500:600, 2] = quads[500:600, 0] + 0.1 * (quads[500:600, 1] + quads[500:600, 3] - 2 * quads[500:600, 0])  # darts
    quads[600:610, 3] = quads[600:610, 0]                                                           # a doubled corner
    quads[610:620] = 0.0                                                                            # all in one point
    nested = quads[:2400].reshape(4, 600, 4, 3)
    got, got_nested = P.corner_angles(quads), P.corner_angles(nested)
    monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    expected = P.corner_angles(quads)
    np.testing.assert_array_equal(got, expected)                 # equal, not close: layouts depend on it
    np.testing.assert_array_equal(got_nested, P.corner_angles(nested))
    assert got.shape == (3000, 4) and got_nested.shape == (4, 600, 4)
    assert (expected[:500, 1] > 179.0).all() and (expected[500:600] > 180.0).any(axis=1).all()
    assert P.corner_angles(np.zeros((0, 4, 3))).shape == (0, 4)


@needs_native
def test_halfedge_links_match_numpy():
    from backend.mesh import polygons as P

    # A sphere less one triangle (a border), with a fin (an edge in three faces), one face
    # repeated in the same winding (two half-edges the same way), a fan of 29 edges at one
    # vertex (the kernel's bucket sort changes method above 16), and a random soup.
    v, f = meshes.uv_sphere(rings=8, segments=16)
    n = len(v)
    sphere = P.pad(f[1:])
    fin = [[f[5, 0], f[5, 1], n, P.NO_CORNER]]
    fan = [[n + 1, n + 2 + i, n + 3 + i, P.NO_CORNER] for i in range(29)]
    soup = np.random.default_rng(3).integers(n + 32, n + 72, size=(200, 4))
    soup[::3, 3] = P.NO_CORNER
    polys = np.vstack([sphere, fin, sphere[7:8], fan, soup])
    src, dst, _, _ = P.halfedges(polys)
    got = native.halfedge_links(src, dst, n + 72)
    expected = P._halfedge_links_numpy(src, dst, n + 72)
    for a, b in zip(got[:2], expected[:2]):
        np.testing.assert_array_equal(a, b)
    assert got[2] == expected[2]
    edge_of, twin, _ = got
    assert {-2, -1} <= set(twin.tolist())
    paired = np.flatnonzero(twin >= 0)
    assert len(paired) > len(sphere)
    np.testing.assert_array_equal(twin[twin[paired]], paired)               # twins are mutual ...
    np.testing.assert_array_equal(src[twin[paired]], dst[paired])           # ... run the other way
    np.testing.assert_array_equal(edge_of[twin[paired]], edge_of[paired])   # ... on one edge
    with pytest.raises(ValueError, match="out of range"):
        native.halfedge_links(src, dst, n)


@needs_native
@pytest.mark.parametrize("case", ["closed", "creases", "open and pinned", "with triangles"])
def test_pole_search_is_the_python_one_step_for_step(monkeypatch, case):
    # The same faces in the same order, the same merged positions, the same counts.
    from backend.mesh import polygons as poly
    from backend.mesh.retopo.poles import reduce_poles
    from tests.backend.mesh.retopo.test_poles import torus_layout

    v, p = torus_layout(pair=case != "with triangles")
    assert (p[:, 3] == poly.NO_CORNER).any() == (case == "with triangles")
    kwargs = {}
    if case == "creases":
        edges, _, _ = poly.edge_counts(p)
        kwargs["crease_edges"] = edges[(v[edges, 2] > 0.2).all(axis=1)]           # the torus's top band
    if case == "open and pinned":
        p = p[(v[p[:, :3], 1] < 0.5).all(axis=1)]                                   # a border across it
        kwargs["pinned"] = v[:, 0] > 1.1
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MESHSMITH_NATIVE", flag)
        results[flag] = reduce_poles(v, p, **kwargs)
    (cv, cp, creport), (pv, pp, preport) = results["1"], results["0"]
    assert preport.rotations > 10 and preport.collapses > 0                       # the search had work to do
    assert (creport.rotations, creport.collapses) == (preport.rotations, preport.collapses)
    np.testing.assert_array_equal(cp, pp)
    np.testing.assert_array_equal(cv, pv)
    np.testing.assert_array_equal(creport.touched, preport.touched)
    bad = pp.copy()
    bad[3, 1] = len(pv)
    with pytest.raises(ValueError, match="out of range"):
        native.reduce_poles(pv.copy(), bad, *np.zeros((3, len(pv)), dtype=bool), np.zeros((0, 2)), {}, 3, 0.3,
                            np.zeros(len(pv), dtype=bool), changes_per_face=4, changes_extra=64)


@needs_native
def test_closest_of_candidates_matches_numpy():
    from backend.mesh.triangles import closest_point_on_triangle

    rng = np.random.default_rng(11)
    vertices = rng.uniform(size=(60, 3))
    faces = rng.integers(0, 60, size=(200, 3))
    faces[:10, 2] = faces[:10, 1]                                           # degenerate: segments
    points = rng.uniform(-0.2, 1.2, size=(500, 3))
    candidates = rng.integers(0, 200, size=(500, 6))
    candidates[:50, :] = np.arange(6)                                       # all degenerate or near them
    near, face = native.closest_of_candidates(points, candidates, vertices, faces)
    corners = vertices[faces[candidates]]                                   # (p, k, 3, 3)
    every = closest_point_on_triangle(points[:, None], corners[..., 0, :], corners[..., 1, :], corners[..., 2, :])
    distance = np.linalg.norm(every - points[:, None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(near - points, axis=1), distance.min(axis=1), rtol=0, atol=1e-12)
    best = every[np.arange(500), distance.argmin(axis=1)]
    np.testing.assert_allclose(near, best, rtol=0, atol=1e-9)
    assert (face[:, None] == candidates).any(axis=1).all()
    # The face given is the one the point is on (ties aside, the nearest).
    chosen = vertices[faces[face]]
    on = closest_point_on_triangle(points, chosen[:, 0], chosen[:, 1], chosen[:, 2])
    np.testing.assert_allclose(on, near, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="out of range"):
        native.closest_of_candidates(points, np.full((500, 6), 200), vertices, faces)
    with pytest.raises(ValueError, match="candidates"):
        native.closest_of_candidates(points, candidates[:10], vertices, faces)


@needs_native
def test_surface_queries_agree_with_and_without_the_kernel(monkeypatch):
    from backend.mesh.retopo import artist

    v, f = meshes.torus(rings=64, segments=32)
    surface = artist._Surface(artist._Faces(v, f), spacing=0.05)
    points = v[::3] + np.random.default_rng(2).normal(scale=0.03, size=v[::3].shape)
    compiled, _ = surface.nearest(points)
    monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    numpy_, _ = surface.nearest(points)
    np.testing.assert_allclose(compiled, numpy_, rtol=0, atol=1e-12)
    assert np.abs(compiled - points).max() > 0.01                          # the points did move


@needs_native
def test_flat_corners_widen_the_same_with_and_without_the_kernel(monkeypatch):
    # A bumpy 12 x 12 grid with 40 corners dragged onto the line between their neighbours (flat
    # quads next to each other, so one move changes what the next vertex sees), a crease
    # across it and two triangles: the same moves, point for point, in the same order.
    from backend.mesh import polygons as poly
    from backend.mesh.retopo import relax

    rng = np.random.default_rng(5)
    n = 12
    xs = np.arange(n + 1, dtype=float)
    v = np.array([(x, y, 0.0) for y in xs for x in xs])
    p = np.array([(j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i + 1, (j + 1) * (n + 1) + i)
                  for j in range(n) for i in range(n)])
    height = lambda xy: 0.3 * np.sin(xy[:, 0] * 0.7) * np.cos(xy[:, 1] * 0.5)          # noqa: E731

    def closest(points: np.ndarray) -> np.ndarray:
        out = np.array(points, dtype=float).reshape(-1, 3)
        out[:, 2] = height(out)
        return out

    for q in rng.choice(len(p), size=40, replace=False):
        corner = rng.integers(4)
        a, b = p[q, (corner + 3) % 4], p[q, (corner + 1) % 4]
        v[p[q, corner]] = 0.5 * (v[a] + v[b]) + rng.normal(scale=0.01, size=3)
    v = closest(v)
    triangles = np.array([[p[0, 0], p[0, 1], p[0, 2], -1], [p[0, 0], p[0, 2], p[0, 3], -1]])
    p = np.vstack([triangles, p[1:]])
    crease = relax.CreaseLines(closest(np.array([(0.0, 6.0, 0.0)])), closest(np.array([(12.0, 6.0, 0.0)])),
                               tolerance=1e-6)
    before = int((poly.quad_corner_angles(v, p)[1].max(axis=1) > relax.FLAT_DEGREES).sum())
    compiled, compiled_moved = relax.widen_flat_corners(v, p, closest, creases=crease)
    monkeypatch.setattr(relax, "native", types.SimpleNamespace(available=lambda: False))
    numpy_, numpy_moved = relax.widen_flat_corners(v, p, closest, creases=crease)
    after = int((poly.quad_corner_angles(numpy_, p)[1].max(axis=1) > relax.FLAT_DEGREES).sum())
    assert before >= 30 and after < before / 2 and numpy_moved >= 20               # there was work, and it was done
    assert compiled_moved == numpy_moved
    np.testing.assert_array_equal(compiled, numpy_)
    with pytest.raises(ValueError, match="out of range"):
        native.widen_in_order(v.copy(), np.array([len(v)]), [v[:3]], np.zeros(0), np.zeros(len(v) + 1), p,
                              np.ones(len(p)), 160.0, 0.3, 0.1, 1e-3)
