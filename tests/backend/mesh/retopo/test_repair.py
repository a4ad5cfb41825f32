"""Repair of polygon meshes (backend.mesh.retopo.repair): every defect a remesher leaves, and mending."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import polygons as P
from backend.mesh.metrics import genus
from backend.mesh.retopo import repair as R
from tests import meshes


def test_clean_cube_passes_repair_unchanged():
    v, p, report = R.repair(meshes.CUBE_VERTICES, meshes.CUBE_QUADS)
    assert len(p) == 6 and meshes.polygon_volume(v, p) == pytest.approx(1.0)
    assert report.as_dict() == {"passes": 1}
    top = P.topology(p)
    assert top.manifold and top.closed


def test_repair_fixes_flips_duplicates_a_hole_a_pentagon_and_a_short_edge():
    v = np.vstack([meshes.CUBE_VERTICES, [[0.5, 0.0, 1.0], [0.5, 1e-9, 1.0]]])      # 8, 9: two points on the edge 1-5
    rows = [meshes.CUBE_QUADS[0], meshes.CUBE_QUADS[1][::-1], meshes.CUBE_QUADS[2], meshes.CUBE_QUADS[3], meshes.CUBE_QUADS[4], list(meshes.CUBE_QUADS[4])]
    rows[2] = [0, 4, 5, 9, 8, 1]                                     # -y face with a doubled point on its top edge
    # +z face (1, 5, 7, 3) is missing: a hole. 5-gon after the short edge 8-9 collapses.
    out_v, out_p, report = R.repair(v, rows, min_edge=1e-6)
    assert report.short_edges == 1 and report.duplicates == 1 and report.flipped == 1
    assert report.holes == 1 and report.ngons == 1
    top = P.topology(out_p)
    assert top.manifold and top.closed
    assert meshes.polygon_volume(out_v, out_p) == pytest.approx(1.0)
    assert genus(P.to_mesh(out_v, out_p)[0]) == 0


def test_repair_keeps_two_polygons_on_a_fin_and_splits_a_pinched_vertex():
    # Two cubes sharing one corner vertex (a pinch), and a small fin: a third quad on an edge.
    v = np.vstack([meshes.CUBE_VERTICES, meshes.CUBE_VERTICES[1:] + 1.0, [[0.1, -0.1, 0.0], [0.1, -0.1, 1.0]]])   # 8-14, fin 15-16
    second = [[7 if a == 0 else a + 7 for a in q] for q in meshes.CUBE_QUADS]                   # its corner 0 is our 7
    rows = meshes.CUBE_QUADS + second + [[0, 1, 16, 15]]
    out_v, out_p, report = R.repair(v, rows)
    assert report.nonmanifold_faces == 1 and report.pinched_vertices == 1
    top = P.topology(out_p)
    assert top.manifold and top.closed and len(out_p) == 12
    assert len(out_v) == 16                                           # the shared corner became two vertices
    assert meshes.polygon_volume(out_v, out_p) == pytest.approx(2.0)


@pytest.mark.parametrize("compiled", [True, False])
def test_repair_of_an_array_matches_repair_of_lists(monkeypatch, compiled):
    # A (k, 4) array takes a vectorized way through short edges and repeated corners, and the
    # passes find edges and twins in C or numpy: all must give what the list input gives.
    if not compiled:
        monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    v, p = meshes.quad_cube(2)
    n = len(v)
    # An isolated sliver quad whose last corner sits on its first (it collapses to a
    # triangle, then its hole closes it into a two-sided pillow of no volume).
    v = np.vstack([v, [[3, 0, 0], [4, 0, 0], [3, 1, 0], [3, 1e-9, 0]]])
    p = P.flip(p, np.arange(len(p)) % 7 == 3)                          # flipped faces
    p = np.vstack([p[1:], p[10:11],                                   # a hole, a copy,
                   [[p[20, 0], p[20, 1], p[20, 0], p[20, 2]],          # a corner twice,
                    [n, n + 1, n + 2, n + 3]]])                       # the sliver
    rows = [[a for a in r if a != P.NO_CORNER] for r in p.tolist()]
    from_array = R.repair(v, p, min_edge=1e-6)
    from_lists = R.repair(v, rows, min_edge=1e-6)
    np.testing.assert_array_equal(from_array[0], from_lists[0])
    np.testing.assert_array_equal(from_array[1], from_lists[1])
    assert from_array[2] == from_lists[2]
    report = from_array[2]
    assert report.short_edges == 1 and report.degenerate == 1 and report.duplicates >= 1
    assert report.flipped > 0 and report.holes == 2
    top = P.topology(from_array[1])
    assert top.manifold and top.closed
    assert meshes.polygon_volume(from_array[0], from_array[1]) == pytest.approx(1.0)


def test_repair_leaves_long_borders_open_when_asked():
    v, p = meshes.quad_cube(2)
    top_face = P.polygon_normals(v, p)[:, 2] > 0
    open_p = p[~top_face]                                            # the cube without its top: a 16-edge border
    _, kept, report = R.repair(v, open_p, max_hole=8)
    assert report.holes == 0 and not P.topology(kept).closed
    _, closed, report = R.repair(v, open_p)
    assert report.holes == 1 and P.topology(closed).closed


def test_repair_closes_long_loops_that_are_not_borders():
    v, p = meshes.quad_cube(2)
    normals = P.polygon_normals(v, p)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    centre = v[np.where(p >= 0, p, 0)].mean(axis=1)
    top = normals[:, 2] > 0.5
    tear = (normals[:, 0] > 0.5) & (np.abs(centre[:, 2] - 0.5) < 0.3)   # a 12-edge gap across the +x side
    open_p = p[~top & ~tear]

    def is_border(loop: np.ndarray) -> bool:                             # only the open top is a border
        return bool((loop[:, 2] > 0.99).all())

    out_v, out, report = R.repair(v, open_p, max_hole=8, is_border=is_border)
    loops = R._boundary_loops(P.HalfedgeLinks.of(out))
    assert report.holes == 1 and len(loops) == 1 and (out_v[loops[0]][:, 2] > 0.99).all()
    _, kept, report = R.repair(v, open_p, max_hole=8)
    assert report.holes == 0 and len(R._boundary_loops(P.HalfedgeLinks.of(kept))) == 2


def test_ring_cutter_never_adds_an_edge_the_mesh_has():
    v = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)])
    cutter = R._RingCutter(v, [[0, 3, 4]])                           # the mesh already has the edge 0-3
    cut = cutter.cut([0, 1, 2, 3, 4, 5])
    chords = {tuple(sorted((q[0], q[-1]))) for q in cut if len(q) == 4}
    assert (0, 3) not in chords
    assert sorted(len(q) for q in cut) == [4, 4]


def test_mend_fixes_a_fin_and_a_flipped_face_and_nothing_else():
    v, f = meshes.uv_sphere(8, 16)
    a, b = f[40, 0], f[40, 1]
    v = np.vstack([v, 1.02 * (v[a] + v[b]) / 2])
    polys = P.pad(np.vstack([f, [[a, b, len(v) - 1]]]))                 # a small fin on the edge a-b
    polys = P.flip(polys, np.arange(len(polys)) == 7)                   # one face wound backwards
    polys, report, closed = R.mend(v, polys, max_faces=10)
    assert report.nonmanifold_faces == 1 and report.flipped == 1 and closed
    assert len(polys) == len(f) and P.topology(polys).manifold
    assert meshes.polygon_volume(v, polys) > 0
    # Too many faces on bad edges: left to the caller.
    assert R.mend(v, P.pad(np.vstack([f, [[a, b, len(v) - 1]]])), max_faces=2) is None


def test_a_long_chain_of_valence_2_vertices_is_dissolved_in_one_repair():
    # The middle quad of a 3 x 3 grid split again and again: each split puts a new vertex on the
    # diagonal from the last one, so the last has two edges and each earlier one three. Dissolving
    # the last leaves the one before with two: a chain, one vertex at a time, longer than the
    # repair's passes (beast's quads at 2,000 faces had one of ten).
    xs = np.arange(4, dtype=float)
    v = [np.array((x, y, 0.0)) for y in xs for x in xs]
    quads = [[j * 4 + i, j * 4 + i + 1, (j + 1) * 4 + i + 1, (j + 1) * 4 + i] for j in range(3) for i in range(3)]
    a, b, c, d = quads.pop(4)                                          # the middle quad
    v.append((v[a] + v[c]) / 2)
    quad = [c, d, a, len(v) - 1]
    quads.append([a, b, c, len(v) - 1])
    splits = 3 * R.MAX_REPAIR_PASSES
    for _ in range(splits):
        p0, p1, p2, x = quad
        v.append((v[x] + v[p1]) / 2)                                   # on the diagonal x - p1
        y = len(v) - 1
        quads.append([p0, p1, y, x])
        quad = [p1, p2, x, y]
    quads.append(quad)
    out_v, out_p, report = R.repair(np.array(v), quads, max_hole=8)  # the grid's border stays open
    interior, valence = P.interior_valences(out_p, len(out_v))
    assert not (interior & (valence == 2)).any()
    assert report.valence2 == splits + 1 and len(out_p) == 9 and P.topology(out_p).manifold
