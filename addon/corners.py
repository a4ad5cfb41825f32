"""Per-corner (Blender) <-> per-vertex (glTF) attributes: split vertices for export, weld them on import.

Blender keeps UVs and colours per face corner ("loop"), so one vertex can carry different UVs
on either side of a seam. glTF keeps attributes per vertex. Exporting splits a vertex once per
distinct attribute value; importing welds vertices that sit at the very same position, so a
result arrives as one connected mesh with its seams in the UV layer, as Blender users expect.
Stdlib only; flat ``array.array`` throughout, like :mod:`.glb`.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from .glb import U32


def gather(values: Sequence[float], index: Sequence[int], width: int) -> array:
    """``values`` viewed as rows of ``width``, picked by ``index``: a flat array('f') of ``width * len(index)``."""
    out = array("f", bytes(4 * width * len(index)))
    for k in range(width):
        column = values[k::width]
        out[k::width] = array("f", [column[i] for i in index])
    return out


@dataclass
class SplitMesh:
    """A triangle mesh with per-vertex attributes, ready for :func:`addon.glb.write_glb`.

    Attributes
    ----------
    positions : array('f'), 3 n
    indices : array(U32), 3 m
    uvs : array('f'), 2 n, or None
    colors : array('f'), 4 n, or None
    source_vertices : array(U32), n
        For each output vertex, the input vertex it copies.
    """

    positions: array
    indices: array
    uvs: array | None
    colors: array | None
    source_vertices: array


def split_by_corner(
    positions: Sequence[float],
    corner_vertices: Sequence[int],
    corner_loops: Sequence[int],
    *,
    loop_uvs: Sequence[float] | None = None,
    loop_colors: Sequence[float] | None = None,
    vertex_colors: Sequence[float] | None = None,
) -> SplitMesh:
    """Turn triangles with per-loop attributes into a mesh with per-vertex attributes.

    Parameters
    ----------
    positions : flat floats, 3 n
        Vertex coordinates.
    corner_vertices, corner_loops : flat ints, 3 m each
        For every triangle corner, its vertex and its loop (``MeshLoopTriangle.vertices`` and
        ``.loops``).
    loop_uvs : flat floats, 2 L, optional
        UVs per loop.
    loop_colors : flat floats, 4 L, optional
        RGBA per loop (a colour attribute on the CORNER domain).
    vertex_colors : flat floats, 4 n, optional
        RGBA per vertex (a colour attribute on the POINT domain). At most one of
        ``loop_colors`` and ``vertex_colors``.

    A vertex is copied once for every distinct (UV, colour) it carries; corners that agree
    share one output vertex.
    """
    if len(corner_vertices) != len(corner_loops):
        raise ValueError(
            f"corner_vertices and corner_loops must have one entry per triangle corner; got {len(corner_vertices)} and {len(corner_loops)}"
        )
    if loop_colors is not None and vertex_colors is not None:
        raise ValueError("give loop_colors or vertex_colors, not both")
    if loop_uvs is None and loop_colors is None:
        # Nothing varies per corner: the vertices stay as they are.
        n = len(positions) // 3
        return SplitMesh(
            positions=array("f", positions),
            indices=array(U32, corner_vertices),
            uvs=None,
            colors=array("f", vertex_colors) if vertex_colors is not None else None,
            source_vertices=array(U32, range(n)),
        )
    remap: dict[tuple, int] = {}
    indices = array(U32, bytes(4 * len(corner_vertices)))
    source_vertices = array(U32)
    source_loops = array(U32)
    for c, (vertex, loop) in enumerate(zip(corner_vertices, corner_loops)):
        key: tuple = (vertex,)
        if loop_uvs is not None:
            key += (loop_uvs[2 * loop], loop_uvs[2 * loop + 1])
        if loop_colors is not None:
            key += tuple(loop_colors[4 * loop : 4 * loop + 4])
        index = remap.get(key)
        if index is None:
            index = remap[key] = len(source_vertices)
            source_vertices.append(vertex)
            source_loops.append(loop)
        indices[c] = index
    colors = None
    if loop_colors is not None:
        colors = gather(loop_colors, source_loops, 4)
    elif vertex_colors is not None:
        colors = gather(vertex_colors, source_vertices, 4)
    return SplitMesh(
        positions=gather(positions, source_vertices, 3),
        indices=indices,
        uvs=gather(loop_uvs, source_loops, 2) if loop_uvs is not None else None,
        colors=colors,
        source_vertices=source_vertices,
    )


def weld(positions: Sequence[float], corners: Sequence[int], ids: Sequence[int] | None = None) -> tuple[array, array]:
    """Merge vertices whose ``ids`` are equal, or without ids, whose positions are equal (exactly).

    Ids (the result's ``vertexIds``) say which vertices are copies of one vertex split along a
    seam; positions cannot tell such copies from distinct vertices that happen to coincide
    (two parts touching), which welding by position would join into a non-manifold edge.

    Returns ``(positions, corners)``: the kept positions (array('f'), first occurrence
    order) and ``corners`` re-indexed into them (array(U32)).
    """
    first: dict = {}
    remap = array(U32, bytes(4 * (len(positions) // 3)))
    kept = array(U32)
    for v in range(len(positions) // 3):
        key = ids[v] if ids is not None else (positions[3 * v], positions[3 * v + 1], positions[3 * v + 2])
        index = first.get(key)
        if index is None:
            index = first[key] = len(kept)
            kept.append(v)
        remap[v] = index
    return gather(positions, kept, 3), array(U32, [remap[c] for c in corners])
