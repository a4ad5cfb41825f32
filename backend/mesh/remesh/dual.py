"""Dual contouring of a signed field stored in sparse blocks: the watertight engine's mesher.

Marching cubes puts its vertices on grid edges, so every triangle that spans a sharp edge
or corner of the input cuts it off (up to ~0.9 voxel deep at a box's corner). Here the
vertices sit inside the cells instead, where the input's tangent planes meet:

1. **Cells and patches.** A cell (8 nodes) whose corners differ in sign is *cut*. Its cut
   edges fall into one or more *patches* (connected pieces of surface inside the cell),
   taken from marching cubes' own case table (:data:`PATCH`, derived once from PyMCubes
   on each of the 256 sign configurations), so the topology is that of marching cubes:
   closed. Each patch gets one vertex.
2. **Vertex placement.** Each cut edge contributes its zero crossing ``p`` (linear in the
   field) and, when ``p`` lies on an input face (within ``ON_INPUT_VOXELS``; the nearest
   faces of the edge's two nodes are the candidates), that face's unit normal ``n``. With
   ``sharp=True`` the vertex minimizes ``sum (n . (x - p))^2`` (the quadric error function
   of Ju et al.'s dual contouring; Kobbelt et al. use the same planes), measured from the
   mean crossing with the pseudo-inverse that drops directions below ``QEF_CUTOFF`` of the
   largest eigenvalue, so a flat patch stays at the mean crossing along the plane and moves
   only across it, an edge gets a point on the crease, a corner its tip.
   A solution farther than ``QEF_MARGIN`` voxels outside the cell falls back to the mean
   crossing (the planes were near-parallel or inconsistent). With ``sharp=False`` every
   vertex is the mean crossing (as OpenVDB's mesher does).
3. **Faces.** Each cut grid edge is surrounded by four cells; their patches that contain the
   edge make a quad, wound so that it faces from the negative (inside) end to the positive
   one, split into two triangles along its shorter diagonal. Where an ambiguous cell face
   joins the same two patches twice (a pinch, in thin slabs), the edge between their
   vertices would have four faces; :func:`separate_nonmanifold_edges` splits it, so the
   result is manifold.

The vertex of a patch lies near its cell, so the result hugs the field's zero level like
marching cubes' does on smooth parts, and keeps creases and corners where the input has
them.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import NamedTuple

import numpy as np

from backend.mesh import native, parallel
from backend.mesh.remesh.blocks import BLOCK, BlockGrid
from backend.progress import ProgressFn

log = logging.getLogger(__name__)

#: Eigen-directions of the QEF below this fraction of the largest eigenvalue are dropped
#: (pseudo-inverse): no tangent plane pins them (along a flat patch, along a crease), so the
#: vertex stays at the mean crossing along them. A Tikhonov term instead shrinks creases
#: toward the mean (0.1 of the trace: a rotated box's mean error 0.0045 voxel at resolution
#: 64 against 0.0018) or, small, lets near-parallel planes throw vertices along the surface.
QEF_CUTOFF = 0.1

#: Patches whose planes are this close to one plane (``|A|_F^2 >= FLAT_RATIO trace(A)^2``,
#: second eigenvalue below about 10% of the first) are solved along their one direction.
FLAT_RATIO = 0.85

#: A QEF solution may leave its cell by this many voxels; farther, the mean crossing is used.
QEF_MARGIN = 0.5

#: Crossings farther than this many voxels from their nearest input face (sheets' slab
#: surfaces, capped holes) give no tangent plane: they only count in the mean crossing.
ON_INPUT_VOXELS = 0.1

#: Band blocks whose cells are gathered at once (each ``(BLOCK + 1)^3`` nodes).
BATCH = 512

#: Band blocks per worker process below which meshing runs in one process.
PARALLEL_MIN_BLOCKS = 1024

#: Cell corner ``c`` is at offset ``CORNERS[c] = (c >> 2 & 1, c >> 1 & 1, c & 1)``.
CORNERS = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.int64)
#: The 12 cell edges as corner pairs (lower corner first).
EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8)
                  if np.abs(CORNERS[a] - CORNERS[b]).sum() == 1], dtype=np.int64)
_EDGE_OF = {(int(a), int(b)): e for e, (a, b) in enumerate(EDGES)}


#: The marching-cubes patch of each cut edge for each sign code: row ``code`` (8 codes a line) has
#: 12 characters, one per edge of EDGES: the patch index, or "." where the edge is not cut. It is
#: the grouping of PyMCubes' triangles for one cell into connected pieces, written out once so
#: that the mesher needs no compiled dependency (tests/backend/mesh/remesh/test_patch_table.py
#: derives it again from PyMCubes when that is installed).
_PATCHES = (
    "............ 000......... 0..00....... .0000....... .0...00..... 0.0..00..... 10.1100..... ..00000.....",
    "...0.0.0.... 0001.1.1.... 0...00.0.... .00.00.0.... .0.0..00.... 0.00..00.... 00..0.00.... ..0.0.00....",
    "..0.....00.. 00......00.. 1.011...00.. .0.00...00.. .10..11.00.. 0....00.00.. 1021100.22.. ...0000.00..",
    "..01.1.100.. 00.1.1.100.. 0.1.00.011.. .0..00.000.. .101..1100.. 0..0..0000.. 110.1.1100.. ....0.0000..",
    "....0...0.0. 000.1...1.1. 0..0....0.0. .000....0.0. .0..100.1.1. 0.0.100.1.1. 10.1.00.1.1. ..00.00.0.0.",
    "...101.10.0. 000212.21.1. 0....0.00.0. .00..0.00.0. .1.10.110.0. 0.001.001.1. 00....000.0. ..0...000.0.",
    "..0.0....00. 00..0....00. 0.00.....00. .0.0.....00. .10.011..00. 0...000..00. 0100.11..00. ...0.00..00.",
    "..0101.1.00. 00.101.1.00. 0.0..0.0.00. .0...0.0.00. .1010.11.00. 0..00.00.00. 000...00.00. ......00.00.",
    "......0..0.0 000...1..1.1 1..11.0..0.0 .1111.0..0.0 .0...0...0.0 0.0..0...0.0 10.110...0.0 ..0000...0.0",
    "...0.010.1.1 2220.010.1.1 0...0010.1.1 .11.1101.0.0 .0.0...0.0.0 0.00...0.0.0 00..0..0.0.0 ..0.0..0.0.0",
    "..0...0.0..0 00....0.0..0 0.100.1.1..1 .0.00.0.0..0 .00..0..0..0 0....0..0..0 011001..1..1 ...000..0..0",
    "..10.0101..1 11.0.0101..1 1.0.11010..0 .0..00000..0 .000...00..0 0..0...00..0 000.0..00..0 ....0..00..0",
    "....1.0.1010 111.2.0.2020 1..1..0.1010 .111..0.1010 .0..10..1010 0.0.10..1010 10.1.0..1010 ..00.0..0000",
    "...121012020 111030203232 1....1011010 .00..0100101 .0.01..01010 0.001..01010 00.....00000 ..0....00000",
    "..0.0.0...00 00..0.0...00 0.00..0...00 .0.0..0...00 .00.00....00 0...00....00 0000.0....00 ...0.0....00",
    "..010101..00 00.10101..00 0.0..000..00 .0...000..00 .0000..0..00 0..00..0..00 111....0..00 .......0..00",
    ".......0..00 111....0..00 1..11..0..00 .1111..0..00 .1...110..00 1.1..110..00 21.22110..00 ..111110..00",
    "...0.0....00 0001.1....11 0...00....00 .00.00....00 .0.0..0...00 0.00..0...00 00..0.0...00 ..0.0.0...00",
    "..1....01100 11.....01100 2.122..01100 .1.11..01100 .21..2201100 1....1101100 321332201100 ...111101100",
    "..10.0..1100 11.0.0..1100 1.0.11..0011 .0..00..0000 .010..0.1100 0..0..0.0000 110.1.1.0011 ....0.0.0000",
    "....0..00..0 000.1..11..1 0..0...00..0 .000...00..0 .1..01100..0 0.0.10011..1 01.0.1100..0 ..00.0000..0",
    "...000..0..0 000111..1..1 0....0..0..0 .00..0..0..0 .0.00.0.0..0 0.000.0.0..0 00....0.0..0 ..0...0.0..0",
    "..0.0..0.0.0 00..0..0.0.0 0.00...0.0.0 .0.0...0.0.0 .10.0110.0.0 0...0000.0.0 0100.110.0.0 ...0.000.0.0",
    "..0000...0.0 00.000...0.0 0.0..0...0.0 .0...0...0.0 .0000.0..0.0 1..11.0..0.0 000...0..0.0 ......0..0.0",
    "......00.00. 111...00.00. 1..11.00.00. .1111.00.00. .0...0.0.00. 0.0..0.0.00. 10.110.0.00. ..0000.0.00.",
    "...0.00..00. 0001.11..11. 0...000..00. .00.000..00. .0.0.....00. 0.00.....00. 00..0....00. ..0.0....00.",
    "..0...000.0. 00....000.0. 0.100.111.1. .0.00.000.0. .00..0.00.0. 0....0.00.0. 011001.11.1. ...000.00.0.",
    "..00.00.0.0. 00.0.00.0.0. 0.0.000.0.0. .0..100.1.1. .000....0.0. 0..0....0.0. 000.0...0.0. ....0...0.0.",
    "....0.0000.. 111.0.0000.. 0..0..0000.. .000..0000.. .0..00.000.. 0.0.00.000.. 00.0.0.000.. ..01.1.100..",
    "...0000.00.. 0001111.11.. 0....00.00.. .00..00.00.. .0.00...00.. 0.000...00.. 00......00.. ..0.....00..",
    "..0.0.00.... 00..0.00.... 0.00..00.... .0.0..00.... .00.00.0.... 0...00.0.... 0000.0.0.... ...0.0.0....",
    "..00000..... 00.0000..... 0.0..00..... .0...00..... .0000....... 0..00....... 000......... ............",
)


@functools.lru_cache(maxsize=1)
def patch_table() -> np.ndarray:
    """(256, 12) int8: the patch (0..3) of each cut edge for each sign code, -1 for uncut edges.

    Bit ``c`` of the code is set when corner ``c`` is negative (see ``_PATCHES``).
    """
    rows = " ".join(_PATCHES).split()
    table = np.array([[-1 if ch == "." else int(ch) for ch in row] for row in rows], dtype=np.int8)
    table.flags.writeable = False
    return table


def _ring_table() -> list[tuple[int, int, np.ndarray, np.ndarray, bool]]:
    """For the 3 edges at a cell's top corner (7) along x, y, z: the 4 cells around the edge.

    Returns, per axis: the corner at the edge's lower end in this cell, 7 (its upper end),
    the (4, 3) offsets of the four cells from this cell, counter-clockwise in the plane
    across the edge, their (4,) local edge index, and whether that order faces -axis.
    """
    rings = []
    for axis in range(3):
        u, w = [a for a in range(3) if a != axis]
        step = np.eye(3, dtype=np.int64)[axis]
        node = np.ones(3, dtype=np.int64) - step                 # the edge's lower end in this cell
        offsets, edges = [], []
        for du, dw in ((-1, -1), (0, -1), (0, 0), (-1, 0)):     # counter-clockwise in (u, w)
            cell = node.copy()
            cell[u] += du
            cell[w] += dw
            offsets.append(cell)
            lo = node - cell
            a, b = int(lo @ (4, 2, 1)), int((lo + step) @ (4, 2, 1))
            edges.append(_EDGE_OF[(a, b)])
        # (u, w) counter-clockwise faces +axis when (u, w, axis) is right-handed.
        faces_minus = bool(np.linalg.det(np.eye(3)[[u, w, axis]]) < 0)
        rings.append((int(node @ (4, 2, 1)), 7, np.array(offsets), np.array(edges), faces_minus))
    return rings


_RINGS = _ring_table()


def dual_contour(field: np.ndarray, nearest: np.ndarray, blocks: BlockGrid, rows: np.ndarray, windows,
                 input_vertices: np.ndarray, faces: np.ndarray, *, sharp: bool, progress: ProgressFn,
                 block_value: np.ndarray, outside_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the zero level of the block field (module doc).

    Parameters
    ----------
    field : (nb, BLOCK^3) float32
        Negative inside, no exact zeros.
    nearest : (nb, BLOCK^3) int32
        Nearest input face per band node, -1 off the shell.
    blocks : BlockGrid
    rows : (r,) int64
        Band blocks that can hold a cut cell.
    windows : callable
        ``windows(batch)`` -> (len(batch), BLOCK + 1, BLOCK + 1, BLOCK + 1) field values: the
        nodes of blocks ``rows[batch]`` and the first layers of the blocks above them (nodes
        of blocks outside the band have their block's value). Used by the numpy path.
    input_vertices : (n, 3) float64
        The input, in grid index coordinates.
    faces : (m, 3) int64
    sharp : bool
        Feature-preserving vertices (QEF) or mean crossings.
    block_value : (Cx * Cy * Cz,) float32
        The value of the nodes of each block outside the band.
    outside_value : float
        The value of nodes beyond the grid.

    Returns
    -------
    vertices : (k, 3) float64
        In grid index coordinates.
    triangles : (t, 3) int64
        Outer surfaces counter-clockwise seen from outside.
    """
    table = patch_table()
    patches = (table.max(axis=1) + 1).astype(np.int64)                             # per code
    use_native = native.available()
    if use_native:
        cell_code = np.zeros(blocks.count * BLOCK ** 3, dtype=np.uint8)
        native.cell_codes(field, blocks.slot, block_value, outside_value, blocks.coarse_shape, blocks.blocks, rows,
                          cell_code)
        position = np.flatnonzero((cell_code != 0) & (cell_code != 255))
        code = cell_code[position]
    else:
        position, code = _cut_cells(blocks, rows, windows, progress)
        cell_code = np.zeros(blocks.count * BLOCK ** 3, dtype=np.uint8)
        cell_code[position] = code
    if not len(position):
        raise RuntimeError("no cell of the field changes sign; the field has no negative node")
    progress(0.5, "dual contouring")
    # The vertex of patch p of the cut cell at band position q is first_vertex[q] + p. One
    # entry per band node, so int32 (vertices stay far below 2^31; 4 bytes less per node).
    first_vertex = np.full(blocks.count * BLOCK ** 3, -1, dtype=np.int32)
    first_vertex[position] = np.concatenate([[0], np.cumsum(patches[code])[:-1]])
    # Only the vertices of cells with a pinched face can end an edge of four faces.
    pinched = np.flatnonzero(pinch_table()[code])
    pinched_first = first_vertex[position[pinched]].astype(np.int64)
    pinched_patches = patches[code[pinched]]
    cell_corner = np.repeat(blocks.node_ijk(position), patches[code], axis=0)

    # Every cut grid edge once (as the edge at the top corner of one cell): its quad, its
    # crossing and the tangent plane there. Each big array is dropped once used: this is
    # the engine's peak of memory.
    if use_native:
        cut_edges = sum(int(np.count_nonzero(((code >> low) & 1) != ((code >> 7) & 1))) for low, *_ in _RINGS)
        quads = np.empty((cut_edges, 4), dtype=np.int64)
        points = np.empty((cut_edges, 3))
        face_a, face_b = np.empty(cut_edges, dtype=np.int32), np.empty(cut_edges, dtype=np.int32)
        native.dual_quads(field, nearest, blocks.slot, block_value, outside_value, blocks.coarse_shape, blocks.blocks,
                          position, cell_code, first_vertex, table, _native_rings(), quads, points, face_a, face_b)
        del first_vertex, cell_code
        progress(0.7, "dual contouring")
        normals = native.tangent_normals(points, face_a, face_b, input_vertices, faces, ON_INPUT_VOXELS) if sharp else None
        del face_a, face_b
        vertices = native.place_vertices(quads, points, normals, cell_corner, FLAT_RATIO, QEF_CUTOFF, QEF_MARGIN)
    else:
        quads, points, normals = _quads(field, nearest, blocks, position, code, cell_code, first_vertex,
                                        _Faces.of(input_vertices, faces) if sharp else None)
        del first_vertex, cell_code
        progress(0.7, "dual contouring")
        vertices = _place_vertices(quads, points, normals, cell_corner)
    del normals, cell_corner
    if sharp:
        _spread_short_edges(vertices, quads, points)
    del points
    progress(0.85, "dual contouring")
    triangles = native.split_quads(vertices, quads, DIAGONAL_TIE) if use_native else _split_quads(vertices, quads)
    del quads
    if not len(pinched):
        return vertices, triangles
    suspects = np.zeros(len(vertices), dtype=bool)
    slots = pinched_first[:, None] + np.arange(4)[None]
    suspects[slots[np.arange(4)[None] < pinched_patches[:, None]]] = True
    near_suspects = np.flatnonzero(suspects[triangles].any(axis=1))
    vertices, fixed = separate_nonmanifold_edges(vertices, triangles[near_suspects])
    triangles[near_suspects] = fixed
    return vertices, triangles


def _cut_cells(blocks: BlockGrid, rows: np.ndarray, windows, progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
    """Band position (k,) and sign code (k,) of the cut cells of blocks ``rows`` (numpy path)."""

    def part_cells(part: int, parts: int):
        found = []
        batches = range(part * BATCH, len(rows), parts * BATCH)
        for n, first in enumerate(batches):
            if part == 0:
                progress(0.5 * n / max(len(batches), 1), "dual contouring")
            batch = np.arange(first, min(first + BATCH, len(rows)))
            negative = windows(batch) < 0
            code = np.zeros((len(batch), BLOCK, BLOCK, BLOCK), dtype=np.int32)
            for c, (x, y, z) in enumerate(CORNERS.tolist()):
                code |= negative[:, x:x + BLOCK, y:y + BLOCK, z:z + BLOCK].astype(np.int32) << c
            cut = np.argwhere((code > 0) & (code < 255))                                  # (k, 4)
            position = rows[batch[cut[:, 0]]] * BLOCK ** 3 + np.ravel_multi_index(cut[:, 1:].T, (BLOCK,) * 3)
            found.append((position, code[tuple(cut.T)].astype(np.uint8)))
        return tuple(np.concatenate(column) for column in zip(*found)) if found else None

    found = [r for r in parallel.run_parts(part_cells, parallel.parts_for(len(rows), PARALLEL_MIN_BLOCKS)) if r]
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    position, code = (np.concatenate(column) for column in zip(*found))
    order = np.argsort(position, kind="stable")
    return position[order], code[order]


def _quads(field: np.ndarray, nearest: np.ndarray, blocks: BlockGrid, position: np.ndarray, code: np.ndarray,
           cell_code: np.ndarray, first_vertex: np.ndarray, frames: "_Faces | None"
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Quads (q, 4), crossings (q, 3) and tangent normals (q, 3) (None without ``frames``) of
    the cut edges at the top corners of the cut cells ``position`` (numpy path)."""
    table = patch_table()
    flat_field = field.reshape(-1)
    flat_nearest = nearest.reshape(-1)
    ijk = blocks.node_ijk(position)
    quads, points, normals = [], [], []
    for low, high, offsets, edges, faces_minus in _RINGS:
        lo_neg = (code >> low) & 1
        here = np.flatnonzero(lo_neg != ((code >> high) & 1))
        ring = np.empty((len(here), 4), dtype=np.int64)
        for slot, (step, edge) in enumerate(zip(offsets, edges)):
            other = blocks.locate(ijk[here] + step)[1]
            start = first_vertex[np.maximum(other, 0)]
            if np.any((other < 0) | (start < 0)):
                raise RuntimeError("a cut edge has a neighbouring cell outside the band; the band is too narrow")
            ring[:, slot] = start + table[cell_code[other], edge]
        flip = (lo_neg[here] == 1) == faces_minus
        quads.append(np.where(flip[:, None], ring[:, ::-1], ring))
        lo_node = blocks.locate(ijk[here] + CORNERS[low])[1]
        hi_node = blocks.locate(ijk[here] + CORNERS[high])[1]
        va, vb = flat_field[lo_node].astype(np.float64), flat_field[hi_node].astype(np.float64)
        t = va / (va - vb)
        p = (ijk[here] + CORNERS[low]).astype(np.float64)
        p += t[:, None] * (CORNERS[high] - CORNERS[low])
        points.append(p)
        if frames is not None:
            normals.append(_tangent_normals(p, flat_nearest[lo_node], flat_nearest[hi_node], frames))
    return (np.concatenate(quads), np.concatenate(points),
            np.concatenate(normals) if frames is not None else None)


@functools.lru_cache(maxsize=1)
def _native_rings() -> np.ndarray:
    """:data:`_RINGS` as the (3, 18) int64 table of the compiled ``dual_quads``: per axis the
    lower corner, faces_minus, then (dx, dy, dz, edge) of the four cells."""
    rows = []
    for low, high, offsets, edges, faces_minus in _RINGS:
        assert high == 7
        rows.append([low, int(faces_minus)] + np.concatenate([offsets, edges[:, None]], axis=1).reshape(-1).tolist())
    return np.array(rows, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def pinch_table() -> np.ndarray:
    """(256,) bool: sign codes with an ambiguous face whose four cut edges are all in one patch.

    Only then can the patch meet its neighbour's patch across that face twice, which makes
    a dual edge of four faces (see :func:`separate_nonmanifold_edges`).
    """
    table = patch_table()
    out = np.zeros(256, dtype=bool)
    for axis in range(3):
        for side in (0, 1):
            face = [c for c in range(8) if CORNERS[c, axis] == side]         # in order 00, 01, 10, 11
            edges = [e for e, (a, b) in enumerate(EDGES.tolist()) if a in face and b in face]
            for code in range(256):
                signs = [(code >> c) & 1 for c in face]
                diagonal = signs[0] == signs[3] and signs[1] == signs[2] and signs[0] != signs[1]
                if diagonal and len({int(table[code, e]) for e in edges}) == 1:
                    out[code] = True
    return out


class _Faces(NamedTuple):
    """Per input face: corner ``a``, edges ``ab``, ``ac``, their Gram matrix and unit normal."""

    a: np.ndarray
    ab: np.ndarray
    ac: np.ndarray
    gram: np.ndarray            # (m, 3): ab.ab, ab.ac, ac.ac
    inverse_det: np.ndarray     # 1 / det(gram), 0 for degenerate faces
    unit: np.ndarray

    @classmethod
    def of(cls, vertices: np.ndarray, faces: np.ndarray) -> "_Faces":
        a, b, c = (vertices[faces[:, k]] for k in range(3))
        ab, ac = b - a, c - a
        gram = np.stack([np.einsum("ij,ij->i", ab, ab), np.einsum("ij,ij->i", ab, ac),
                         np.einsum("ij,ij->i", ac, ac)], axis=1)
        det = gram[:, 0] * gram[:, 2] - gram[:, 1] ** 2
        normal = np.cross(ab, ac)
        length = np.linalg.norm(normal, axis=1, keepdims=True)
        unit = np.where(length > 0, normal / np.where(length > 0, length, 1.0), 0.0)
        inverse_det = np.where(det > 1e-12 * gram[:, 0] * gram[:, 2], 1.0 / np.where(det > 0, det, 1.0), 0.0)
        return cls(a, ab, ac, gram, inverse_det, unit)


def _gap(p: np.ndarray, face: np.ndarray, frames: _Faces) -> np.ndarray:
    """An upper bound (k,) on the distance from points ``p`` to faces ``face`` (inf for -1).

    The point's projection on the face's plane is clamped into the triangle in barycentric
    coordinates: exact inside the triangle, at most a little high near its edges. Enough to
    tell crossings on the input (about 0) from crossings off it (a sheet's slab, a cap).
    """
    has = face >= 0
    f = np.where(has, face, 0)
    ap = p - frames.a[f]
    d1 = np.einsum("ij,ij->i", ap, frames.ab[f])
    d2 = np.einsum("ij,ij->i", ap, frames.ac[f])
    g = frames.gram[f]
    s = np.clip((g[:, 2] * d1 - g[:, 1] * d2) * frames.inverse_det[f], 0.0, 1.0)
    t = np.clip((g[:, 0] * d2 - g[:, 1] * d1) * frames.inverse_det[f], 0.0, 1.0)
    over = np.maximum(s + t, 1.0)
    away = ap - (s / over)[:, None] * frames.ab[f] - (t / over)[:, None] * frames.ac[f]
    gap = np.linalg.norm(away, axis=1)
    return np.where(has & (frames.inverse_det[f] > 0), gap, np.inf)


def _tangent_normals(p: np.ndarray, face_a: np.ndarray, face_b: np.ndarray, frames: _Faces) -> np.ndarray:
    """Unit normal (k, 3) of the input at crossings ``p``: of the first end node's nearest face,
    else the second's, if the crossing is within ``ON_INPUT_VOXELS`` of it; zero (no plane)
    otherwise."""
    face = face_a.astype(np.int64)
    gap = _gap(p, face, frames)
    # The other end's face only where the first is not close enough (most crossings lie on
    # their first candidate; ties between the two are equally good planes).
    retry = np.flatnonzero(gap > ON_INPUT_VOXELS)
    other = face_b[retry].astype(np.int64)
    other_gap = _gap(p[retry], other, frames)
    better = other_gap < gap[retry]
    face[retry[better]], gap[retry[better]] = other[better], other_gap[better]
    n = frames.unit[face]
    n[gap > ON_INPUT_VOXELS] = 0.0
    return n


def _place_vertices(quads: np.ndarray, points: np.ndarray, normals: np.ndarray | None,
                    cell_corner: np.ndarray) -> np.ndarray:
    """Vertices (v, 3) from the crossings (q, 3) of the cut edges and their quads (q, 4).

    A vertex gathers the crossings of the edges whose quads it is in: their mean, and with
    ``normals`` the minimizer of ``sum (n . (x - p))^2`` (module doc, step 2), unless that
    leaves the vertex's cell (lower corner ``cell_corner``) by more than ``QEF_MARGIN``.
    """
    from scipy.sparse import csr_matrix

    count, q = len(cell_corner), len(quads)
    # A sparse (vertices x edges) matrix sums any per-edge quantity into the edge's four
    # vertices; one product per contiguous column.
    gather = csr_matrix((np.ones(4 * q), (quads.reshape(-1), np.repeat(np.arange(q), 4))), shape=(count, q))
    total = gather @ np.ones(q)
    mean = np.empty((count, 3))
    for d in range(3):
        mean[:, d] = (gather @ np.ascontiguousarray(points[:, d])) / total
    if normals is None:
        return mean
    n = [np.ascontiguousarray(normals[:, d]) for d in range(3)]
    along = n[0] * points[:, 0] + n[1] * points[:, 1] + n[2] * points[:, 2]
    A = np.empty((count, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            A[:, i, j] = A[:, j, i] = gather @ (n[i] * n[j])
    # Relative to the mean: A y = sum n (n . (p - mean)) = sum n (n . p) - A mean.
    r = np.stack([gather @ (n[d] * along) for d in range(3)], axis=1) - np.einsum("kij,kj->ki", A, mean)
    trace = A[:, 0, 0] + A[:, 1, 1] + A[:, 2, 2]
    # Nearly one plane (A close to rank one: |A|_F^2 near trace^2) is the common case; its
    # direction comes from two power steps, the rest get an eigendecomposition.
    flat = (np.einsum("kij,kij->k", A, A) >= FLAT_RATIO * trace ** 2) & (trace > 0)
    y = np.zeros((count, 3))
    if flat.any():
        Af = A[flat]
        v = Af[np.arange(len(Af)), np.argmax(np.diagonal(Af, axis1=1, axis2=2), axis=1)]
        for _ in range(2):
            v = np.einsum("kij,kj->ki", Af, v)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
        top = np.einsum("ki,kij,kj->k", v, Af, v)
        y[flat] = v * (np.einsum("ki,ki->k", v, r[flat]) / top)[:, None]
    rest = np.flatnonzero(~flat & (trace > 0))
    if len(rest):
        w, basis = np.linalg.eigh(A[rest])
        keep = w > QEF_CUTOFF * w[:, -1:]
        inverse = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
        y[rest] = np.einsum("kij,kj->ki", basis, inverse * np.einsum("kji,kj->ki", basis, r[rest]))
    x = mean + y
    inside = np.all((x >= cell_corner - QEF_MARGIN) & (x <= cell_corner + 1 + QEF_MARGIN), axis=1)
    return np.where(inside[:, None], x, mean)


#: Quad sides and diagonals shorter than this many voxels have their ends moved back to
#: their mean crossings.
MIN_EDGE_VOXELS = 0.01


def _spread_short_edges(vertices: np.ndarray, quads: np.ndarray, points: np.ndarray) -> int:
    """Move the ends of nearly zero-length quad sides and diagonals to their mean crossings, in place.

    Two neighbouring cells' patches can put their QEF vertices at one point of a crease or
    corner (both solve for the same planes). The surface stays closed and oriented, but an
    edge of length ~0 makes degenerate triangles that other tools refuse (Blender's
    QuadriFlow calls such a mesh non-manifold). Mean crossings of different cells are apart,
    so those ends go back to them; a vertex keeps its QEF place everywhere else. Returns how
    many vertices moved.
    """
    moved = np.zeros(len(vertices), dtype=bool)
    for _ in range(3):                       # a moved end may land near another QEF vertex
        ends = np.flatnonzero(_short_edge_ends(vertices, quads) & ~moved)
        if not len(ends):
            break
        mark = np.zeros(len(vertices), dtype=bool)
        mark[ends] = True
        rows, slots = np.nonzero(mark[quads])
        owner = quads[rows, slots]
        total = np.zeros((len(vertices), 3))
        np.add.at(total, owner, points[rows])
        count = np.bincount(owner, minlength=len(vertices))
        vertices[ends] = total[ends] / count[ends, None]
        moved[ends] = True
    if moved.any():
        log.debug("dual contouring: %d vertices of nearly zero-length edges moved to their mean crossings",
                  int(moved.sum()))
    return int(moved.sum())


def _short_edge_ends(vertices: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """(v,) bool: the ends of quad sides and diagonals shorter than ``MIN_EDGE_VOXELS``."""
    if native.available():
        return native.short_edge_ends(vertices, quads, MIN_EDGE_VOXELS)
    mark = np.zeros(len(vertices), dtype=bool)
    for i, j in ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)):            # sides and diagonals
        a, b = quads[:, i], quads[:, j]
        d = vertices[a] - vertices[b]
        hit = np.flatnonzero(np.einsum("ij,ij->i", d, d) < MIN_EDGE_VOXELS ** 2)
        mark[a[hit]] = mark[b[hit]] = True
    return mark


#: Quad diagonals whose squared lengths differ by less than this fraction count as equal;
#: then the one at the lower vertex index is cut, so rounding noise picks no side.
DIAGONAL_TIE = 1e-3


def _split_quads(vertices: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Two triangles per quad (q, 4), cut along the shorter diagonal."""
    diagonal = vertices[quads[:, 0]] - vertices[quads[:, 2]]
    d02 = np.einsum("ij,ij->i", diagonal, diagonal)
    diagonal = vertices[quads[:, 1]] - vertices[quads[:, 3]]
    d13 = np.einsum("ij,ij->i", diagonal, diagonal)
    tie = np.abs(d02 - d13) <= DIAGONAL_TIE * np.maximum(d02, d13)
    cut02 = np.where(tie, quads[:, [0, 2]].min(axis=1) < quads[:, [1, 3]].min(axis=1), d02 < d13)
    quads = np.where(cut02[:, None], quads, np.roll(quads, -1, axis=1))            # now cut along 0-2
    first, second = quads[:, :3], quads[:, [0, 2, 3]]
    return np.concatenate([first, second])


#: Vertex copies made by :func:`separate_nonmanifold_edges` move this far (voxels) into their
#: own faces, so that no two vertices coincide.
SEPARATION_VOXELS = 1e-3


def separate_nonmanifold_edges(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make a closed, oriented triangle mesh manifold where edges join four (or more) faces.

    The dual of marching cubes' patches has such an edge ``(p, q)`` where two patches of
    neighbouring cells meet on both segments of an ambiguous cell face (a pinch of the
    field's zero level, in thin slabs): the fan of faces around ``p`` is one disk whose rim
    passes ``q`` twice. Cutting that fan at the edge leaves two arcs, each closed by its own
    copy of the edge, so ``p`` becomes one vertex per arc; the faces of the edge are paired
    by the arc they end. ``q`` is split too if its own fan then falls apart. Copies move
    ``SEPARATION_VOXELS`` toward their own faces, so no two vertices coincide. The result
    is closed, oriented and manifold.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m, n = len(faces), len(vertices)
    a = faces.reshape(-1)                                               # corner / directed edge c: a[c] -> b[c]
    b = np.roll(faces, -1, axis=1).reshape(-1)
    key = np.minimum(a, b) * n + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    _, first, count = np.unique(key[order], return_index=True, return_counts=True)
    bad = np.flatnonzero(count > 2)
    if not len(bad):
        return vertices, faces
    twin = np.full(3 * m, -1, dtype=np.int64)
    good = first[count == 2]
    twin[order[good]], twin[order[good + 1]] = order[good + 1], order[good]
    affected = np.unique(np.concatenate([a[order[first[bad]]], b[order[first[bad]]]]))
    corners = np.flatnonzero(np.isin(a, affected))                   # corners at affected vertices
    local = np.full(3 * m, -1, dtype=np.int64)
    local[corners] = np.arange(len(corners))

    def fans(twin: np.ndarray) -> np.ndarray:
        """Component (len(corners),) of each affected corner: corner c, across edge c, is followed
        by the corner at a[c] of the twin's face."""
        t = twin[corners]
        has = t >= 0
        successor = 3 * (t[has] // 3) + (t[has] % 3 + 1) % 3
        graph = coo_matrix((np.ones(int(has.sum()), dtype=np.int8), (local[corners[has]], local[successor])),
                           shape=(len(corners), len(corners)))
        return connected_components(graph, directed=False)[1]

    arcs = fans(twin)
    # Pair the faces of each bad edge by the arc of its lower end's fan they close.
    for row in bad.tolist():
        members = order[first[row]:first[row] + count[row]]            # directed edges of this key
        low = min(int(a[members[0]]), int(b[members[0]]))
        at_low = np.where(a[members] == low, members, 3 * (members // 3) + (members % 3 + 1) % 3)
        arc = arcs[local[at_low]]
        for value in np.unique(arc).tolist():
            pair = members[arc == value]
            if len(pair) == 2 and a[pair[0]] == b[pair[1]]:
                twin[pair[0]], twin[pair[1]] = pair[1], pair[0]
    fan = fans(twin)
    # One vertex per (vertex, fan); a vertex's first fan keeps its index.
    vertex_fan = np.unique(np.stack([a[corners], fan], axis=1), axis=0)
    extra = vertex_fan[np.concatenate([[False], vertex_fan[1:, 0] == vertex_fan[:-1, 0]])]
    if not len(extra):
        return vertices, faces
    new_id = dict(zip(extra[:, 1].tolist(), range(n, n + len(extra))))
    out_faces = faces.reshape(-1).copy()
    move = np.flatnonzero(np.isin(fan, extra[:, 1]))
    out_faces[corners[move]] = [new_id[f] for f in fan[move].tolist()]
    out_faces = out_faces.reshape(-1, 3)
    out = np.concatenate([vertices, vertices[extra[:, 0]]])
    # Every copy of a split vertex moves a little toward the centroid of its own faces.
    split = np.concatenate([extra[:, 0], np.arange(n, len(out))])
    centroid = np.zeros_like(out)
    weight = np.zeros(len(out))
    np.add.at(centroid, out_faces.reshape(-1), np.repeat(out[out_faces].mean(axis=1), 3, axis=0))
    np.add.at(weight, out_faces.reshape(-1), 1.0)
    direction = centroid[split] / weight[split, None] - out[split]
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    out[split] += SEPARATION_VOXELS * direction
    return out, out_faces
