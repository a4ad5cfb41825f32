"""Triangle-and-quad meshes: conversion, repair, triangle pairing, subdivision, and their report."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import polygons as P
from backend.mesh.gltf import polygon_triangles
from backend.mesh.metrics import genus, polygon_report, signed_volume

#: The unit cube as six outward quads.
CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
CUBE_Q = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def _volume(v, polys) -> float:
    return signed_volume(v, P.to_mesh(v, polys)[0])


def _fine_cube(levels: int = 2):
    v, p = CUBE_V, P.pad(CUBE_Q)
    for _ in range(levels):
        sub = P.subdivide(v, p)
        v, p = sub.vertices, sub.polygons
    return v, p


def test_round_trip_through_mesh_arrays_matches_polygon_triangles():
    polys = P.pad([[0, 1, 3, 2], [4, 6, 7], [1, 5, 7, 3]])
    tris, sizes = P.to_mesh(CUBE_V, polys)
    ref_tris, ref_sizes = polygon_triangles([[0, 1, 3, 2], [4, 6, 7], [1, 5, 7, 3]])
    assert np.array_equal(tris, ref_tris) and np.array_equal(sizes, ref_sizes)
    assert np.array_equal(P.from_mesh(tris, sizes), polys)
    with pytest.raises(ValueError, match="describe 6 triangles but faces has 5"):
        P.from_mesh(tris, np.array([4, 4, 4], dtype=np.uint8))


def test_clean_cube_passes_repair_unchanged():
    v, p, report = P.repair(CUBE_V, CUBE_Q)
    assert len(p) == 6 and _volume(v, p) == pytest.approx(1.0)
    assert report.as_dict() == {"passes": 1}
    top = P.topology(p)
    assert top.manifold and top.closed


def test_repair_fixes_flips_duplicates_a_hole_a_pentagon_and_a_short_edge():
    v = np.vstack([CUBE_V, [[0.5, 0.0, 1.0], [0.5, 1e-9, 1.0]]])      # 8, 9: two points on the edge 1-5
    rows = [CUBE_Q[0], CUBE_Q[1][::-1], CUBE_Q[2], CUBE_Q[3], CUBE_Q[4], list(CUBE_Q[4])]
    rows[2] = [0, 4, 5, 9, 8, 1]                                     # -y face with a doubled point on its top edge
    # +z face (1, 5, 7, 3) is missing: a hole. 5-gon after the short edge 8-9 collapses.
    out_v, out_p, report = P.repair(v, rows, min_edge=1e-6)
    assert report.short_edges == 1 and report.duplicates == 1 and report.flipped == 1
    assert report.holes == 1 and report.ngons == 1
    top = P.topology(out_p)
    assert top.manifold and top.closed
    assert _volume(out_v, out_p) == pytest.approx(1.0)
    assert genus(P.to_mesh(out_v, out_p)[0]) == 0


def test_repair_keeps_two_polygons_on_a_fin_and_splits_a_pinched_vertex():
    # Two cubes sharing one corner vertex (a pinch), and a small fin: a third quad on an edge.
    v = np.vstack([CUBE_V, CUBE_V[1:] + 1.0, [[0.1, -0.1, 0.0], [0.1, -0.1, 1.0]]])   # 8-14, fin 15-16
    second = [[7 if a == 0 else a + 7 for a in q] for q in CUBE_Q]                   # its corner 0 is our 7
    rows = CUBE_Q + second + [[0, 1, 16, 15]]
    out_v, out_p, report = P.repair(v, rows)
    assert report.nonmanifold_faces == 1 and report.pinched_vertices == 1
    top = P.topology(out_p)
    assert top.manifold and top.closed and len(out_p) == 12
    assert len(out_v) == 16                                           # the shared corner became two vertices
    assert _volume(out_v, out_p) == pytest.approx(2.0)


@pytest.mark.parametrize("compiled", [True, False])
def test_repair_of_an_array_matches_repair_of_lists(monkeypatch, compiled):
    # A (k, 4) array takes a vectorized way through short edges and repeated corners, and the
    # passes find edges and twins in C or numpy: all must give what the list input gives.
    if not compiled:
        monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    v, p = _fine_cube(2)
    n = len(v)
    # An isolated sliver quad whose last corner sits on its first (it collapses to a
    # triangle, then its hole closes it into a two-sided pillow of no volume).
    v = np.vstack([v, [[3, 0, 0], [4, 0, 0], [3, 1, 0], [3, 1e-9, 0]]])
    p = P.flip(p, np.arange(len(p)) % 7 == 3)                          # flipped faces
    p = np.vstack([p[1:], p[10:11],                                   # a hole, a copy,
                   [[p[20, 0], p[20, 1], p[20, 0], p[20, 2]],          # a corner twice,
                    [n, n + 1, n + 2, n + 3]]])                       # the sliver
    rows = [[a for a in r if a != P.NO_CORNER] for r in p.tolist()]
    from_array = P.repair(v, p, min_edge=1e-6)
    from_lists = P.repair(v, rows, min_edge=1e-6)
    np.testing.assert_array_equal(from_array[0], from_lists[0])
    np.testing.assert_array_equal(from_array[1], from_lists[1])
    assert from_array[2] == from_lists[2]
    report = from_array[2]
    assert report.short_edges == 1 and report.degenerate == 1 and report.duplicates >= 1
    assert report.flipped > 0 and report.holes == 2
    top = P.topology(from_array[1])
    assert top.manifold and top.closed
    assert _volume(from_array[0], from_array[1]) == pytest.approx(1.0)


def test_repair_leaves_long_borders_open_when_asked():
    v, p = _fine_cube(2)
    top_face = P.polygon_normals(v, p)[:, 2] > 0
    open_p = p[~top_face]                                            # the cube without its top: a 16-edge border
    _, kept, report = P.repair(v, open_p, max_hole=8)
    assert report.holes == 0 and not P.topology(kept).closed
    _, closed, report = P.repair(v, open_p)
    assert report.holes == 1 and P.topology(closed).closed


def test_repair_closes_long_loops_that_are_not_borders():
    v, p = _fine_cube(2)
    normals = P.polygon_normals(v, p)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    centre = v[np.where(p >= 0, p, 0)].mean(axis=1)
    top = normals[:, 2] > 0.5
    tear = (normals[:, 0] > 0.5) & (np.abs(centre[:, 2] - 0.5) < 0.3)   # a 12-edge gap across the +x side
    open_p = p[~top & ~tear]

    def is_border(loop: np.ndarray) -> bool:                             # only the open top is a border
        return bool((loop[:, 2] > 0.99).all())

    out_v, out, report = P.repair(v, open_p, max_hole=8, is_border=is_border)
    loops = P._boundary_loops(P._Links.of(out))
    assert report.holes == 1 and len(loops) == 1 and (out_v[loops[0]][:, 2] > 0.99).all()
    _, kept, report = P.repair(v, open_p, max_hole=8)
    assert report.holes == 0 and len(P._boundary_loops(P._Links.of(kept))) == 2


def test_ring_cutter_never_adds_an_edge_the_mesh_has():
    v = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)])
    cutter = P._RingCutter(v, [[0, 3, 4]])                           # the mesh already has the edge 0-3
    cut = cutter.cut([0, 1, 2, 3, 4, 5])
    chords = {tuple(sorted((q[0], q[-1]))) for q in cut if len(q) == 4}
    assert (0, 3) not in chords
    assert sorted(len(q) for q in cut) == [4, 4]


def test_subdivide_gives_quads_only_on_the_same_cube():
    sub = P.subdivide(CUBE_V, P.pad([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6], [0, 6, 4],
                                      [1, 5, 7, 3]]))
    assert len(sub.polygons) == 4 * 5 + 3 * 2 and (sub.polygons[:, 3] >= 0).all()
    assert sub.new.sum() == len(sub.vertices) - 8
    top = P.topology(sub.polygons)
    assert top.manifold and top.closed and _volume(sub.vertices, sub.polygons) == pytest.approx(1.0)


def test_pair_triangles_turns_every_triangle_into_quads_without_moving_vertices():
    v, p = _fine_cube(2)                                             # 96 quads
    # Split three quads, far apart, into triangles: six triangles.
    tris = []
    for i in (0, 40, 90):
        a, b, c, d = p[i]
        tris += [[a, b, c, -1], [a, c, d, -1]]
    p = np.vstack([np.delete(p, [0, 40, 90], axis=0), np.array(tris)])
    out_v, out_p, left = P.pair_triangles(v, p)
    assert left == 0 and (out_p[:, 3] >= 0).all() and len(out_p) == len(p) - 3
    assert np.array_equal(out_v, v)
    top = P.topology(out_p)
    assert top.manifold and top.closed and _volume(out_v, out_p) == pytest.approx(1.0)


def _grid(n: int):
    """A flat n x n grid of quads in z = 0, wound counter-clockwise seen from +z."""
    xs = np.arange(n + 1, dtype=float)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(-1, 4)
    return v, quads


def test_pair_triangles_walks_an_odd_triangle_to_an_open_border():
    v, quads = _grid(4)
    rows = [q.tolist() for q in quads]
    a, b, c, d = rows[0]                     # the corner quad loses its corner vertex: one triangle
    rows[0] = [b, c, d]
    a, b, c, d = rows[5]                     # an inner quad becomes two triangles
    rows[5:6] = [[a, b, c], [a, c, d]]
    polys = P.pad(rows)
    assert (polys[:, 3] < 0).sum() == 3
    out_v, out_p, left = P.pair_triangles(v, polys)
    assert left == 0 and (out_p[:, 3] >= 0).all()
    assert len(out_v) == len(v) + 1                                  # one midpoint on the open border
    top = P.topology(out_p)
    assert top.manifold and not top.closed
    assert P.polygon_areas(out_v, out_p).sum() == pytest.approx(16.0 - 0.5)


def test_polygon_report_counts_quads_and_valence():
    tris, sizes = P.to_mesh(CUBE_V, P.pad(CUBE_Q))
    report = polygon_report(tris, sizes)
    assert report == {"faces": 6, "quads": 6, "triangles": 0, "quad_ratio": 1.0, "valence4_share": 0.0,
                      "manifold": True, "closed": True}
    v, p = _fine_cube(2)
    report = polygon_report(*P.to_mesh(v, p))
    assert report["faces"] == 96 and report["quad_ratio"] == 1.0
    assert report["valence4_share"] == pytest.approx((len(v) - 8) / len(v))   # all but the 8 corners
    open_report = polygon_report(*P.to_mesh(v, p[1:]))
    assert open_report["manifold"] and not open_report["closed"]
    flipped = p.copy()
    flipped[0] = flipped[0][[0, 3, 2, 1]]
    assert not polygon_report(*P.to_mesh(v, flipped))["manifold"]


def test_mend_fixes_a_fin_and_a_flipped_face_and_nothing_else():
    from tests import meshes

    v, f = meshes.uv_sphere(8, 16)
    a, b = f[40, 0], f[40, 1]
    v = np.vstack([v, 1.02 * (v[a] + v[b]) / 2])
    polys = P.pad(np.vstack([f, [[a, b, len(v) - 1]]]))                 # a small fin on the edge a-b
    polys = P.flip(polys, np.arange(len(polys)) == 7)                   # one face wound backwards
    polys, report, closed = P.mend(v, polys, max_faces=10)
    assert report.nonmanifold_faces == 1 and report.flipped == 1 and closed
    assert len(polys) == len(f) and P.topology(polys).manifold
    assert _volume(v, polys) > 0
    # Too many faces on bad edges: left to the caller.
    assert P.mend(v, P.pad(np.vstack([f, [[a, b, len(v) - 1]]])), max_faces=2) is None
