"""Pole removal by edge rotation and diagonal collapse (backend.mesh.retopo.poles)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import polygons as poly
from backend.mesh.retopo.poles import reduce_poles, split_flat_corners

# Every test here runs on the compiled search and on its Python twin.
pytestmark = pytest.mark.usefixtures("kernels")

N = 6


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """An N x N quad grid in the z = 0 plane, counter-clockwise quads: (vertices, (k, 4) polygons)."""
    xs = np.arange(N + 1, dtype=float)
    vertices = np.array([(x, y, 0.0) for y in xs for x in xs])
    return vertices, np.array([[_v(i, j), _v(i + 1, j), _v(i + 1, j + 1), _v(i, j + 1)]
                               for j in range(N) for i in range(N)])


def _v(i: int, j: int) -> int:
    return j * (N + 1) + i


def _quad_of(polygons: np.ndarray, corners: list[int]) -> int:
    return int(np.flatnonzero([set(row) == set(corners) for row in polygons.tolist()])[0])


def _interior_valences(vertices: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    src, _, _, _ = poly.halfedges(polygons)
    edges, counts, edge_of = poly.edge_counts(polygons)
    border = np.zeros(len(vertices), dtype=bool)
    border[src[counts[edge_of] == 1]] = True
    valence = np.bincount(edges.ravel(), minlength=len(vertices))
    return valence[~border]


def _rotated_grid() -> tuple[np.ndarray, np.ndarray]:
    """The grid with the edge between quads (2, 2) and (3, 2) turned: two valence-3 and two
    valence-5 vertices around one hexagon."""
    v, p = _grid()
    hexagon = [_v(2, 2), _v(3, 2), _v(4, 2), _v(4, 3), _v(3, 3), _v(2, 3)]
    p[_quad_of(p, [_v(2, 2), _v(3, 2), _v(3, 3), _v(2, 3)])] = hexagon[0:4]
    p[_quad_of(p, [_v(3, 2), _v(4, 2), _v(4, 3), _v(3, 3)])] = hexagon[3:6] + hexagon[:1]
    return v, p


def torus_layout(pair: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Instant Meshes' layout of a torus, made manifold (quads and triangles), paired into quads if ``pair``."""
    from backend.mesh.retopo import artist, quads, repair
    from tests import meshes

    v, raw = artist.instant_meshes(*meshes.torus(rings=48, segments=24), target_faces=800)
    v, p = repair.repair(v, raw)[:2]
    return quads.pair_triangles(v, p)[:2] if pair else (v, p)


def test_a_turned_edge_is_turned_back():
    v, p = _rotated_grid()
    assert sorted(np.unique(_interior_valences(v, p)).tolist()) == [3, 4, 5]
    out_v, out_p, report = reduce_poles(v, p)
    assert (_interior_valences(out_v, out_p) == 4).all()
    assert report.rotations == 1 and report.collapses == 0 and len(out_p) == len(p)
    assert poly.topology(out_p).manifold and (poly.polygon_normals(out_v, out_p)[:, 2] > 0).all()
    assert report.touched.sum() == 6                                  # the hexagon's corners


def test_two_valence_3_vertices_across_a_quad_are_merged():
    # The vertex at (3, 3) split in two, with a quad between them: 3-3 across it, 5-5 the other way.
    v, p = _grid()
    a, c, north, south = _v(3, 3), len(v), _v(3, 4), _v(3, 2)
    v = np.vstack([v, [(2.75, 3.0, 0.0)]])
    v[a] = (3.25, 3.0, 0.0)
    for row in (_quad_of(p, [_v(2, 3), a, north, _v(2, 4)]), _quad_of(p, [_v(2, 2), south, a, _v(2, 3)])):
        p[row][p[row] == a] = c
    p = np.vstack([p, [[a, north, c, south]]])
    assert poly.topology(p).manifold and (poly.polygon_normals(v, p)[:, 2] > 0).all()
    out_v, out_p, report = reduce_poles(v, p)
    assert report.collapses == 1 and len(out_p) == N * N and len(out_v) == (N + 1) ** 2
    assert (_interior_valences(out_v, out_p) == 4).all()
    assert np.allclose(out_v[np.argmin(np.linalg.norm(out_v - (3.0, 3.0, 0.0), axis=1))], (3.0, 3.0, 0.0))


def test_pinned_and_regular_layouts_are_left_alone():
    v, p = _grid()
    out_v, out_p, report = reduce_poles(v, p)
    assert report.rotations == report.collapses == 0
    assert np.array_equal(out_v, v) and np.array_equal(out_p, p)
    v, p = _rotated_grid()
    pinned = np.zeros(len(v), dtype=bool)
    pinned[[_v(3, 2), _v(3, 3)]] = True                                # the valence-3 vertices keep their edges
    _, out_p, report = reduce_poles(v, p, pinned=pinned)
    assert report.rotations == 0 and np.array_equal(out_p, p)


def test_a_rewiring_that_would_fold_the_surface_is_skipped():
    # The turned edge over a sharp ridge: turning it back would make quads that face away.
    v, p = _rotated_grid()
    v[_v(3, 2), 2] = v[_v(3, 3), 2] = -20.0                             # the valence-3 pair pulled far below
    out_v, out_p, report = reduce_poles(v, p)
    assert report.rotations == 0 and np.array_equal(out_p, p)


def _turn(p: np.ndarray, a: int, b: int) -> np.ndarray:
    """Rotate the edge a-b between its two quads (one step counter-clockwise) in a copy of ``p``."""
    p = p.copy()
    rows = [r for r in range(len(p)) if a in p[r] and b in p[r]]
    q1, q2 = (list(p[r]) for r in rows)
    if q1[(q1.index(a) + 1) % 4] != b:
        rows, (q1, q2) = rows[::-1], (q2, q1)
    i, j = q1.index(a), q2.index(b)
    ring = [b, q1[(i + 2) % 4], q1[(i + 3) % 4], a, q2[(j + 2) % 4], q2[(j + 3) % 4]]
    p[rows[0]], p[rows[1]] = ring[1:5], ring[4:6] + ring[0:2]
    return p


def test_a_border_vertex_left_with_one_flat_quad_gets_a_second():
    v, p = _grid()
    p = _turn(p, _v(3, 0), _v(3, 1))                                   # (3, 0) on the border keeps one quad
    corner = lambda q: poly.quad_corner_angles(v, q)[1].max()            # noqa: E731
    assert corner(p) > 179.0
    out_v, out_p, report = reduce_poles(v, p)
    assert report.rotations >= 1 and corner(out_p) < 91.0
    assert np.array_equal(out_v, v) and poly.topology(out_p).manifold



def test_a_flat_corner_is_split_by_an_edge_where_the_layout_allows():
    v, p = _grid()
    p = _turn(p, _v(3, 0), _v(3, 1))                                   # (3, 0): one quad, flat
    corner = lambda q: poly.quad_corner_angles(v, q)[1].max()            # noqa: E731
    split, report = split_flat_corners(v, p)
    assert report.rotations == 1 and corner(split) < 91.0 and len(split) == len(p)
    assert sum(_v(3, 0) in row for row in split.tolist()) == 2 and poly.topology(split).manifold
    assert report.touched[_v(3, 0)]
    # Both far edges of its quad on a crease: nothing may turn.
    quad = next(row for row in p.tolist() if _v(3, 0) in row)
    k = quad.index(_v(3, 0))
    far = np.array([[quad[(k + 1) % 4], quad[(k + 2) % 4]], [quad[(k + 2) % 4], quad[(k + 3) % 4]]])
    kept, report = split_flat_corners(v, p, crease_edges=far)
    assert sum(_v(3, 0) in row for row in kept.tolist()) == 1 and not report.touched[_v(3, 0)]
    regular, report = split_flat_corners(*_grid())
    assert report.rotations == 0 and np.array_equal(regular, _grid()[1])

def test_crease_edges_stay_and_a_crease_vertex_gets_a_face_on_its_empty_side():
    v, p = _grid()
    v[:, 2] = np.maximum(v[:, 0] - 3.0, 0.0)                             # folded along x = 3: a ridge
    crease = np.array([[_v(3, j), _v(3, j + 1)] for j in range(N)])
    p = _turn(p, _v(3, 3), _v(4, 3))                                   # (3, 3): one quad east of the crease
    out_v, out_p, report = reduce_poles(v, p, crease_edges=crease)
    edges, _, _ = poly.edge_counts(out_p)
    kept = {tuple(e) for e in np.sort(edges, axis=1).tolist()}
    assert all(tuple(sorted(e)) in kept for e in crease.tolist())
    assert (_interior_valences(out_v, out_p) == 4).all() and report.rotations >= 1
    assert np.array_equal(out_v[crease.ravel()], v[crease.ravel()])


def test_a_crease_edge_is_never_turned_even_when_that_would_pay():
    v, p = _rotated_grid()                                             # the 5-5 edge (2, 2)-(4, 3) undoes it
    diagonal = [_v(2, 2), _v(4, 3)]
    _, out_p, report = reduce_poles(v, p, crease_edges=np.array([diagonal]))
    assert any(set(diagonal) <= set(row) for row in out_p.tolist()) and np.array_equal(out_p, p)
    _, free_p, _ = reduce_poles(v, p)
    assert not any(set(diagonal) <= set(row) for row in free_p.tolist())


def test_deeper_walks_cancel_poles_that_one_step_cannot(monkeypatch):
    # Instant Meshes' own layout of a torus (genus 1: it needs no pole at all), made manifold and
    # paired into quads, rewired with walks of one zero-cost rotation and then of three.
    from backend.mesh.retopo import poles

    v, p = torus_layout()
    assert poly.topology(p).manifold
    counts = {}
    for depth in (1, 3):
        monkeypatch.setattr(poles, "SHIFT_DEPTH", depth)
        out_v, out_p, report = reduce_poles(v, p)
        valence = _interior_valences(out_v, out_p)
        counts[depth] = int((valence != 4).sum())
        assert poly.topology(out_p).manifold
    assert counts[3] < counts[1], counts                # 60 -> 38 when measured



def test_a_degenerate_quad_is_collapsed_by_the_last_resort():
    # Quad (2, 2) of the grid squashed onto its diagonal: its corners on one line (two at 180
    # degrees, two at 0), as where several vertices landed on one crease. No move of one vertex
    # opens it; rewire_flat_quads collapses it, and relaxing the vertices it touched opens the rest.
    from backend.mesh.retopo.poles import rewire_flat_quads
    from backend.mesh.retopo.relax import relax_open_corners

    v, p = _grid()
    v[_v(3, 2)] = (2.6, 2.6, 0.0)
    v[_v(2, 3)] = (2.4, 2.4, 0.0)
    squashed = _quad_of(p, [_v(2, 2), _v(3, 2), _v(3, 3), _v(2, 3)])
    assert poly.quad_corner_angles(v, p)[1][squashed].max() > 179.0
    out_v, out_p, report = rewire_flat_quads(v, p)
    assert report.collapses == 1 and len(out_p) == len(p) - 1 and poly.topology(out_p).manifold
    out_v, _ = relax_open_corners(out_v, out_p, lambda x: x * (1.0, 1.0, 0.0), also=report.touched)
    assert poly.quad_corner_angles(out_v, out_p)[1].max() < 160.0
    # Relaxing alone leaves it as it was.
    assert poly.quad_corner_angles(relax_open_corners(v, p, lambda x: x * (1.0, 1.0, 0.0))[0], p)[1].max() > 160.0



# A 45-quad patch of our remesh of "Full bookcase" by Andrew Kator & Jennifer Legaz (CC BY 3.0 US,
# https://creativecommons.org/licenses/by/3.0/us/; Debian's sweethome3d-furniture), around a crease vertex with seven locked edges: the search cycled through two
# rotations of one hexagon for ever (each counted as lowering the excess on a sector the rotation
# itself reshaped), and the artist job never finished. Coordinates to 3 decimals; it still cycled.
_CYCLE_VERTICES = """
-0.026 0.95 0.014 -0.065 0.909 -0.001 -0.219 0.848 -0.118 -0.241 0.927 -0.116 -0.227 0.92 -0.149
-0.273 0.852 -0.118 -0.276 0.924 -0.118 -0.231 0.949 -0.142 -0.176 0.95 -0.032 -0.118 0.95
-0.046 -0.237 0.95 -0.077 -0.35 0.888 -0.118 -0.35 0.924 -0.118 -0.112 0.95 0.013 -0.124 0.905
0.006 -0.237 0.95 -0.02 -0.177 0.95 0.028 -0.276 0.924 -0.063 -0.4 0.849 -0.15 -0.4 0.905 -0.15
-0.327 0.924 -0.065 -0.276 0.92 0.001 -0.285 0.95 0.037 -0.4 0.85 -0.099 -0.4 0.892 -0.083
-0.361 0.946 -0.073 -0.382 0.79 -0.149 -0.351 0.935 -0.009 -0.18 0.909 0.005 -0.262 0.775 0.006
-0.236 0.834 0.006 -0.4 0.856 -0.001 -0.4 0.895 -0.025 -0.4 0.95 -0.084 -0.321 0.914 0.006
-0.285 0.879 0.005 -0.158 0.923 0.052 -0.233 0.903 0.005 -0.287 0.774 0.006 -0.288 0.827 0.006
-0.337 0.95 0.038 -0.286 0.923 0.052 -0.4 0.809 -0.085 -0.4 0.805 -0.025 -0.4 0.862 0.026 -0.4
0.95 0.033 -0.4 0.95 -0.022 -0.35 0.864 0.05 -0.34 0.913 0.052 -0.337 0.819 0.006 -0.346 0.774
-0 -0.401 0.749 -0.066 -0.401 0.752 -0.023 -0.4 0.813 0.026 -0.35 0.813 0.05 -0.367 0.766 0.032
-0.4 0.76 0.026 -0.365 0.767 -0.129
"""
_CYCLE_QUADS = """
5 6 3 2 6 7 4 3 11 12 6 5 9 8 16 13 6 17 10 7 18 19 12 11 12 20 17 6 21 15 10 17 15 22 16 8 18
23 24 19 19 25 20 12 24 23 31 32 38 29 30 39 42 43 31 23 31 44 45 32 24 32 46 33 47 34 27 48 34
49 39 35 39 30 37 35 50 38 39 49 27 40 41 48 43 53 44 31 44 47 48 45 33 46 27 25 54 49 34 47 50
49 54 55 52 56 53 43 53 54 47 44 56 55 54 53 57 51 42 23 57 23 18 26 19 24 33 25 21 41 22 15 40
48 22 41 45 27 46 32 45 48 40 27 13 16 36 0 22 48 36 16 41 21 36 48 27 17 20 25 27 34 21 17 35
37 21 34 36 21 28 14 37 30 28 21 1 0 36 14
"""
_CYCLE_CREASES = """
0 13 0 36 3 4 3 6 4 7 6 12 6 17 7 10 9 13 10 15 11 12 11 18 12 19 15 21 15 22 17 21 18 19 21 28
21 34 21 36 22 48 23 24 23 42 24 32 29 38 31 32 31 43 33 46 34 47 34 49 36 48 40 41 40 48 41 48
42 43 43 53 44 45 44 53 45 48 47 48 47 54 53 56 54 55
"""


def test_a_layout_the_search_cycles_on_still_ends():
    v = np.array(_CYCLE_VERTICES.split(), dtype=float).reshape(-1, 3)
    p = np.array(_CYCLE_QUADS.split(), dtype=np.int64).reshape(-1, 4)
    creases = np.array(_CYCLE_CREASES.split(), dtype=np.int64).reshape(-1, 2)
    rv, rp, report = reduce_poles(v, p, crease_edges=creases)
    assert report.rotations + report.collapses > 0
    assert poly.topology(rp).manifold and (rp[:, 3] >= 0).all()


def test_sector_ideals_follow_the_corner_angles_between_locked_edges():
    from backend.mesh.retopo.poles import _layout, _sector_ideals
    from tests import meshes

    # An open grid: a border vertex's one sector spans 180 degrees (two faces), a corner's 90 (one).
    v, p = _grid()
    special, _, _, locked = _layout(v, p, None, None)
    ideals = _sector_ideals(v, p, special, locked)
    assert ideals[(_v(0, 0), _v(1, 0))] == 1 and ideals[(_v(N, N), _v(N - 1, N))] == 1
    assert ideals[(_v(3, 0), _v(4, 0))] == 2 and ideals[(_v(0, 3), _v(0, 2))] == 2
    assert len(ideals) == 4 * N and set(ideals) == {(x, y) for x, y in ideals if special[x]}
    # A quad cube with its edges as creases: a corner has three sectors of one face, a vertex inside
    # an edge two of two; a free vertex has none.
    v, p = meshes.quad_cube(2)
    on_face = np.abs(np.abs(v) - 0.5) < 1e-9                      # (n, 3): on the cube's face planes
    on_edge = on_face.sum(axis=1) >= 2
    edges = poly.edge_counts(p)[0]
    crease = edges[(on_face[edges[:, 0]] & on_face[edges[:, 1]]).sum(axis=1) >= 2]   # both ends on two planes
    special, _, _, locked = _layout(v, p, crease, None)
    ideals = _sector_ideals(v, p, special, locked)
    corner = (np.abs(np.abs(v) - 0.5) < 1e-9).all(axis=1)
    for x in np.flatnonzero(special).tolist():
        mine = sorted(count for (y, _), count in ideals.items() if y == x)
        assert mine == ([1, 1, 1] if corner[x] else [2, 2]), (x, mine)
    assert not any(special[~on_edge])
