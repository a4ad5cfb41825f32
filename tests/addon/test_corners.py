"""addon/corners.py: per-corner attributes split into vertices for export, welded back on import (bpy-free)."""

from __future__ import annotations

import pytest

from addon import corners

# Two triangles sharing the edge 1-2 of a unit square; loops 0..5 in triangle order.
SQUARE = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
TRI_VERTICES = [0, 1, 2, 2, 1, 3]
TRI_LOOPS = [0, 1, 2, 3, 4, 5]


def test_no_per_corner_attribute_keeps_the_vertices():
    split = corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS, vertex_colors=[0.5] * 16)
    assert list(split.positions) == SQUARE and list(split.indices) == TRI_VERTICES
    assert split.uvs is None and list(split.colors) == [0.5] * 16


def test_a_uv_seam_splits_the_shared_vertices_only_where_uvs_differ():
    # Loops of vertex 1: (0.5, 0) in the first triangle, (0.6, 0) in the second: a seam.
    # Loops of vertex 2: the same UV on both sides: shared.
    uvs = [0, 0, 0.5, 0, 0, 1, 0, 1, 0.6, 0, 1, 1]
    split = corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS, loop_uvs=uvs)
    assert len(split.positions) // 3 == 5
    assert list(split.source_vertices) == [0, 1, 2, 1, 3]
    assert list(split.indices) == [0, 1, 2, 2, 3, 4]
    assert list(split.uvs) == pytest.approx([0, 0, 0.5, 0, 0, 1, 0.6, 0, 1, 1])
    assert list(split.positions[9:12]) == [1.0, 0.0, 0.0]  # the copy of vertex 1


def test_corner_colours_split_and_point_colours_follow_their_vertex():
    red, blue = [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]
    loop_colors = red * 3 + [*red, *blue, *red]  # vertex 1 is blue in the second triangle
    split = corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS, loop_colors=loop_colors)
    assert list(split.source_vertices) == [0, 1, 2, 1, 3]
    assert list(split.colors[12:16]) == blue and list(split.colors[4:8]) == red
    with pytest.raises(ValueError, match="not both"):
        corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS, loop_colors=loop_colors, vertex_colors=red * 4)
    with pytest.raises(ValueError, match="one entry per triangle corner"):
        corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS[:5])


def test_weld_merges_equal_positions_and_reindexes_corners():
    positions = SQUARE + [1.0, 0.0, 0.0]  # vertex 4 duplicates vertex 1
    welded, loops = corners.weld(positions, [0, 1, 2, 2, 4, 3])
    assert list(welded) == SQUARE
    assert list(loops) == [0, 1, 2, 2, 1, 3]


def test_split_then_weld_gives_back_the_mesh():
    uvs = [0, 0, 0.5, 0, 0, 1, 0, 1, 0.6, 0, 1, 1]
    split = corners.split_by_corner(SQUARE, TRI_VERTICES, TRI_LOOPS, loop_uvs=uvs)
    welded, loops = corners.weld(split.positions, split.indices)
    assert list(welded) == SQUARE and list(loops) == TRI_VERTICES
