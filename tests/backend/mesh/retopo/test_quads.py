"""Triangles to quads (backend.mesh.retopo.quads): subdivision and pairing along paths."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import polygons as P
from backend.mesh.retopo import quads as Q
from tests import meshes


def test_subdivide_gives_quads_only_on_the_same_cube():
    sub = Q.subdivide(meshes.CUBE_VERTICES, P.pad([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6], [0, 6, 4],
                                      [1, 5, 7, 3]]))
    assert len(sub.polygons) == 4 * 5 + 3 * 2 and (sub.polygons[:, 3] >= 0).all()
    assert sub.new.sum() == len(sub.vertices) - 8
    top = P.topology(sub.polygons)
    assert top.manifold and top.closed and meshes.polygon_volume(sub.vertices, sub.polygons) == pytest.approx(1.0)


def test_pair_triangles_turns_every_triangle_into_quads_without_moving_vertices():
    v, p = meshes.quad_cube(2)                                             # 96 quads
    # Split three quads, far apart, into triangles: six triangles.
    tris = []
    for i in (0, 40, 90):
        a, b, c, d = p[i]
        tris += [[a, b, c, -1], [a, c, d, -1]]
    p = np.vstack([np.delete(p, [0, 40, 90], axis=0), np.array(tris)])
    out_v, out_p, left = Q.pair_triangles(v, p)
    assert left == 0 and (out_p[:, 3] >= 0).all() and len(out_p) == len(p) - 3
    assert np.array_equal(out_v, v)
    top = P.topology(out_p)
    assert top.manifold and top.closed and meshes.polygon_volume(out_v, out_p) == pytest.approx(1.0)


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
    out_v, out_p, left = Q.pair_triangles(v, polys)
    assert left == 0 and (out_p[:, 3] >= 0).all()
    assert len(out_v) == len(v) - 1                                  # one border edge collapsed
    top = P.topology(out_p)
    assert top.manifold and not top.closed
    # Its triangle went (area 16 - 0.5 - 0.5); a midpoint on the border would have left a quad
    # with a 180-degree corner there.
    assert P.polygon_areas(out_v, out_p).sum() == pytest.approx(15.0)
    assert P.quad_corner_angles(out_v, out_p)[1].max() < 160.0
