"""Opening near-triangle quads by relaxing the vertex at the open corner."""

from __future__ import annotations

import numpy as np

from backend.mesh import polygons as poly
from backend.mesh.polygons import quad_corner_angles
from backend.mesh.retopo.relax import CreaseLines, _straight_border, relax_open_corners, widen_flat_corners


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n quad grid over [0, n]^2 in the z = 0 plane: (vertices, (k, 4) polygons)."""
    xs = np.arange(n + 1, dtype=float)
    vertices = np.array([(x, y, 0.0) for y in xs for x in xs])
    polygons = np.array([(j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i + 1, (j + 1) * (n + 1) + i)
                         for j in range(n) for i in range(n)])
    return vertices, polygons


def _on_plane(points: np.ndarray) -> np.ndarray:
    out = np.array(points, dtype=float)
    out[:, 2] = 0.0
    return out


def test_a_vertex_dragged_into_a_flat_corner_is_pulled_back_and_the_rest_stays():
    v, p = _grid(4)
    centre = 2 * 5 + 2
    v[centre] = (1.52, 2.48, 0.0)                      # almost on the line from (1, 2) to (2, 3)
    assert quad_corner_angles(v, p)[1].max() > 160.0
    relaxed, moved = relax_open_corners(v, p, _on_plane)
    assert quad_corner_angles(relaxed, p)[1].max() < 150.0
    assert moved >= 1 and np.allclose(relaxed[:, 2], 0.0)
    border = [0, 1, 2, 3, 4, 5, 9, 10, 14, 15, 19, 20, 21, 22, 23, 24]
    assert np.array_equal(relaxed[border], v[border])  # the border never moves
    assert (poly.polygon_normals(relaxed, p)[:, 2] > 0).all()        # no quad folded over


def test_no_move_folds_a_polygon():
    # The centre of a 2 x 2 grid pulled far outside its ring: the mean of its neighbours would
    # fold the quads on the far side if taken in one go; the guard undoes such steps.
    v, p = _grid(2)
    v[4] = (1.98, 1.0, 0.0)
    also = np.zeros(len(v), dtype=bool)
    also[4] = True
    relaxed, _ = relax_open_corners(v, p, _on_plane, also=also, passes=1)
    assert (poly.polygon_normals(relaxed, p)[:, 2] > 0).all()
    far = np.array([(3.5, 1.0, 0.0)])                                 # a target that would fold two quads
    folded, kept = poly.guarded_moves(v, np.where(np.arange(len(v))[:, None] == 4, far, v), also, p)
    assert not kept[4] and np.array_equal(folded, v)


def test_a_mesh_without_open_corners_is_left_as_it_is():
    v, p = _grid(3)
    relaxed, moved = relax_open_corners(v, p, _on_plane)
    assert moved == 0 and np.array_equal(relaxed, v)


def test_a_vertex_on_a_crease_slides_along_it_and_a_crease_corner_stays():
    v, p = _grid(4)
    centre = 2 * 5 + 2
    v[centre] = (1.52, 2.48, 0.0)                      # an open corner (as above) ...
    # ... on a crease along the diagonal through it, x + y = 4.
    lines = CreaseLines(np.array([(0.0, 4.0, 0.0)]), np.array([(4.0, 0.0, 0.0)]), tolerance=1e-6)
    relaxed, moved = relax_open_corners(v, p, _on_plane, creases=lines)
    x, y, _ = relaxed[centre]
    assert moved == 1 and abs(x + y - 4.0) < 1e-9                    # still on the crease
    assert x > 1.6                                                     # moved along it, toward (2, 2)
    assert quad_corner_angles(relaxed, p)[1].max() < 160.0
    # Where a crease ends (or three meet) is a crease corner: its vertex stays.
    assert lines.at_corner(np.array([(0.0, 4.0, 0.0), (2.0, 2.0, 0.0)])).tolist() == [True, False]
    ended = CreaseLines(np.array([(1.0, 3.0, 0.0)]), np.array([(1.52, 2.48, 0.0)]), tolerance=0.05)
    pinned, moved = relax_open_corners(v, p, _on_plane, creases=ended)
    assert moved == 0 and np.array_equal(pinned, v)


def _t_junction() -> tuple[np.ndarray, np.ndarray]:
    """Three quads around a valence-3 vertex (index 1, at the origin) on a straight line of edges:
    corners of 90, 90 and 180 degrees, the upper quad a triangle with an extra vertex."""
    v = np.array([(-1, 0, 0), (0, 0, 0), (1, 0, 0), (0, 1, 0), (-1, -1, 0), (0, -1, 0), (1, -1, 0)], dtype=float)
    p = np.array([[0, 1, 2, 3], [4, 5, 1, 0], [5, 6, 2, 1]])
    return v, p


def test_a_t_junction_is_widened_in_its_plane_and_nothing_else_moves():
    v, p = _t_junction()
    assert quad_corner_angles(v, p)[1].max() == 180.0
    v, p = _ringed(v, p)
    widened, moved = widen_flat_corners(v, p, _on_plane)
    angles = quad_corner_angles(widened, p)[1]
    assert moved == 1 and angles.max() < 160.0
    # Toward the stem, on the plane: the upper quad becomes a kite. (Up into it would read as
    # 127 degrees to an angle without a side: a dart, its corner at vertex 1 reflex.)
    assert np.allclose(widened[:, 2], 0.0) and widened[1, 1] < 0.0
    assert np.array_equal(np.delete(widened, 1, axis=0), np.delete(v, 1, axis=0))
    assert (poly.polygon_normals(widened, p)[:, 2] > 0).all()                  # nothing turned over
    dart = v.copy()
    dart[1] = (0.0, 0.5, 0.0)
    assert quad_corner_angles(dart, p)[1][0, 1] > 180.0


def test_widening_keeps_crease_and_border_vertices_where_they_may_be():
    v, p = _ringed(*_t_junction())
    along_stem = CreaseLines(np.array([(0.0, -3.0, 0.0)]), np.array([(0.0, 3.0, 0.0)]), tolerance=1e-6)
    widened, moved = widen_flat_corners(v, p, _on_plane, creases=along_stem)
    assert moved == 1 and abs(widened[1, 0]) < 1e-9                          # slid along the crease only
    assert quad_corner_angles(widened, p)[1].max() < 160.0
    along_line = CreaseLines(np.array([(-3.0, 0.0, 0.0)]), np.array([(3.0, 0.0, 0.0)]), tolerance=1e-6)
    widened, moved = widen_flat_corners(v, p, _on_plane, creases=along_line)  # sliding cannot open it
    assert moved == 0 and np.array_equal(widened, v)
    bare, q = _t_junction()
    q = q[:2]                                                                 # vertex 1 now on the border
    widened, moved = widen_flat_corners(bare, q, _on_plane)
    assert moved == 0 and np.array_equal(widened, bare)


def test_a_border_vertex_slides_along_the_reference_border_to_open_a_quad():
    # A 2 x 2 grid on the reference's border y = 0: its centre (4) pulled onto the line from
    # border vertex 1 to vertex 3 makes the lower-left quad a triangle, and the centre stays (a
    # crease ends there). Vertex 1 slides along the border and opens it; the grid's corners
    # 0 and 2 (where the layout's border turns) and vertex 3 (off the reference's border) stay.
    v, p = _grid(2)
    v[4] = (0.1, 0.9, 0.0)
    assert quad_corner_angles(v, p)[1].max() > 179.0
    pin = CreaseLines(np.array([(0.1, 0.9, 0.0)]), np.array([(0.1, 2.0, 0.0)]), tolerance=1e-6)
    border = CreaseLines(np.array([(-1.0, 0.0, 0.0)]), np.array([(3.0, 0.0, 0.0)]), tolerance=1e-6)
    widened, moved = widen_flat_corners(v, p, _on_plane, creases=pin, borders=border)
    assert moved == 1 and widened[1, 1] == 0.0 and 0.0 < widened[1, 0] < 1.0      # along the border, on it
    assert quad_corner_angles(widened, p)[1].max() < 160.0
    assert np.array_equal(np.delete(widened, 1, axis=0), np.delete(v, 1, axis=0))
    assert (poly.polygon_normals(widened, p)[:, 2] > 0).all()
    # Only where the layout's border runs on straight: its sides' middles, not the grid's corners.
    src, dst, _, _ = poly.halfedges(p)
    _, counts, edge_of = poly.edge_counts(p)
    open_ = counts[edge_of] == 1
    assert sorted(_straight_border(v, src[open_], dst[open_]).tolist()) == [1, 3, 5, 7]
    # Without the reference's border, or where it ends at vertex 1, nothing can move.
    for borders in (None, CreaseLines(np.array([(-1.0, 0.0, 0.0)]), np.array([(1.0, 0.0, 0.0)]), tolerance=1e-6)):
        kept, moved = widen_flat_corners(v, p, _on_plane, creases=pin, borders=borders)
        assert moved == 0 and np.array_equal(kept, v)


def _ringed(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The T-junction's six outer vertices joined to a ring of six more, twice as far out, by quads."""
    outer = [0, 4, 5, 6, 2, 3]                                        # its border, counter-clockwise
    ring = np.array([2.0 * v[i] * (1.5 if i in (3, 5) else 1.0) for i in outer])
    out_v = np.vstack([v, ring])
    first = len(v)
    quads = [[outer[k], first + k, first + (k + 1) % 6, outer[(k + 1) % 6]] for k in range(6)]
    return out_v, np.vstack([p, quads])


def test_on_a_crease_agrees_with_the_distance_to_it():
    # CreaseLines.on gives up early on points far from every sample; it must say what comparing
    # nearest()'s distance with the tolerance says, also for points just inside or outside it.
    rng = np.random.default_rng(3)
    a = rng.uniform(-1.0, 1.0, (40, 3))
    b = a + rng.normal(0.0, 0.3, (40, 3))
    lines = CreaseLines(a, b, tolerance=0.01)
    t = rng.uniform(0.0, 1.0, (2000, 1))
    seg = rng.integers(0, 40, 2000)
    offset = rng.normal(0.0, 1.0, (2000, 3))
    offset *= rng.uniform(0.0, 0.02, (2000, 1)) / np.linalg.norm(offset, axis=1, keepdims=True)
    points = np.vstack([a[seg] + t * (b[seg] - a[seg]) + offset, rng.uniform(-1.5, 1.5, (2000, 3))])
    expected = lines.nearest(points)[1] <= lines.tolerance
    assert 0.2 < expected.mean() < 0.8                                 # both kinds, many near the limit
    assert np.array_equal(lines.on(points), expected)
