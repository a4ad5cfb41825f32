"""Opening near-triangle quads by relaxing the vertex at the open corner."""

from __future__ import annotations

import numpy as np

from backend.mesh import polygons as poly
from backend.mesh.polygons import quad_corner_angles
from backend.mesh.retopo.relax import CreaseLines, relax_open_corners


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
