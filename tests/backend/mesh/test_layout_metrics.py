"""The layout figures of the artist bench: poles, valence-2 vertices, near-triangle quads, pieces, creases."""

from __future__ import annotations

import numpy as np

from backend.mesh.metrics import crease_coverage, layout_report
from tests import meshes


def _quad_grid(n: int):
    """An n x n quad grid on the unit square, as triangles + sizes (quads split a-b-c, a-c-d)."""
    xs = np.linspace(0, 1, n + 1)
    vertices = np.array([(x, y, 0.0) for y in xs for x in xs])
    quads = [(j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i + 1, (j + 1) * (n + 1) + i)
             for j in range(n) for i in range(n)]
    faces = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return vertices, np.array(faces), np.full(len(quads), 4)


def test_a_regular_grid_has_no_poles_no_obtuse_quads_and_one_piece():
    v, f, sizes = _quad_grid(6)
    report = layout_report(v, f, sizes)
    assert report["poles_per_1000"] == 0.0 and report["valence2"] == 0
    assert report["obtuse_quads"] == 0 and abs(report["max_quad_angle"] - 90.0) < 1e-9
    assert report["components"] == 1


def test_a_near_triangle_quad_is_counted_and_so_is_a_second_piece():
    # One quad whose corner at (1, 0) is 177 degrees (a triangle with an extra vertex), one square.
    v = np.array([(0, 0, 0), (1, 0, 0), (2, 0.05, 0), (0, 1, 0),
                  (5, 5, 0), (6, 5, 0), (6, 6, 0), (5, 6, 0)], dtype=float)
    f = np.array([(0, 1, 2), (0, 2, 3), (4, 5, 6), (4, 6, 7)])
    report = layout_report(v, f, np.array([4, 4]))
    assert report["obtuse_quads"] == 1 and 176.0 < report["max_quad_angle"] < 178.0
    assert report["components"] == 2
    assert report["valence2"] == 0                  # their corners are on their borders
    assert layout_report(v, f, np.array([4, 4]), obtuse_degrees=178.0)["obtuse_quads"] == 0


def test_a_dart_counts_by_its_reflex_corner_not_the_angle_between_its_edges():
    # (0, 0) (2, 0) (1, 0.5) (1, 2) wound counter-clockwise: the corner at (1, 0.5) turns the wrong
    # way. The edges there meet at about 117 degrees; inside the quad the corner is 243.
    v = np.array([(0, 0, 0), (2, 0, 0), (1, 0.5, 0), (1, 2, 0)], dtype=float)
    f = np.array([(0, 1, 2), (0, 2, 3)])
    report = layout_report(v, f, np.array([4]))
    assert report["obtuse_quads"] == 1 and 243.0 < report["max_quad_angle"] < 244.0


def test_a_closed_two_quad_pillow_is_all_valence_two():
    """The speck issue 19 found under a chair: two quads glued along all four edges."""
    v = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], dtype=float)
    f = np.array([(0, 1, 2), (0, 2, 3), (3, 2, 1), (3, 1, 0)])
    report = layout_report(v, f, np.array([4, 4]))
    assert report["valence2"] == 4 and report["poles_per_1000"] == 2000.0


def test_a_box_has_eight_poles_as_quads():
    v, f = meshes.box()
    sizes = np.full(6, 4)
    # meshes.box() is 12 triangles, two per side, paired as the quads of the sides.
    report = layout_report(v, f, sizes)
    assert report["poles_per_1000"] == 1000.0 * 8 / 6          # every corner has valence 3
    assert report["components"] == 1 and report["obtuse_quads"] == 0


def test_crease_coverage_of_a_box_by_itself_and_by_a_rounded_copy():
    v, f = meshes.box()
    assert crease_coverage(v, f, v, f) == 1.0
    # A copy pulled in by a tenth of the box: its edges are far from the creases.
    assert crease_coverage(v, f, v * 0.8, f) == 0.0
    # A flat sheet has no crease: nothing to miss.
    g, gf, gs = _quad_grid(3)
    assert crease_coverage(g, gf, g, gf, gs) == 1.0


def test_parts_touching_at_a_vertex_count_apart_when_joined_only_through_edges():
    from backend.mesh.metrics import connected_components

    # Two boxes sharing one corner vertex (an eye resting on a head), and a third box apart.
    (va, fa), (vb, fb), (vc, fc) = (meshes.box(lo, hi) for lo, hi in
                                    (((0, 0, 0), (1, 1, 1)), ((1, 1, 1), (2, 2, 2)), ((5, 5, 5), (6, 6, 6))))
    v = np.concatenate([va, vb, vc])
    f = np.concatenate([fa, fb + 8, fc + 16])
    corner = np.flatnonzero(np.all(v == 1.0, axis=1))
    assert len(corner) == 2
    f[f == corner[1]] = corner[0]                   # the two boxes now share that vertex
    assert connected_components(f)[0] == 2
    count, labels = connected_components(f, through="edges")
    assert count == 3 and len(np.unique(labels[:12])) == 1
    assert layout_report(v, f)["components"] == 3
