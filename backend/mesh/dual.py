"""Dual contouring of a signed field stored in sparse blocks: the watertight engine's mesher.

Marching cubes puts its vertices on grid edges, so every triangle that spans a sharp edge
or corner of the input cuts it off (up to ~0.9 voxel deep at a box's corner). Here the
vertices sit inside the cells instead, where the input's tangent planes meet:

1. **Cells and patches.** A cell (8 nodes) whose corners differ in sign is *cut*. Its cut
   edges fall into one or more *patches* (connected pieces of surface inside the cell),
   taken from marching cubes' own case table (:data:`PATCH`, derived once from PyMCubes
   on each of the 256 sign configurations), so the topology is that of marching cubes:
   closed and manifold. Each patch gets one vertex.
2. **Vertex placement.** Each cut edge contributes its zero crossing ``p`` (linear in the
   field) and, when ``p`` lies on the input, the unit normal ``n`` of the input face
   nearest to it (the nearest faces of the edge's two nodes are the candidates). With
   ``sharp=True`` the vertex minimizes ``sum (n . (x - p))^2`` (the quadric error function
   of Ju et al.'s dual contouring; Kobbelt et al. use the same planes): solved around
   the mean crossing with the pseudo-inverse, dropping directions whose eigenvalue is below
   ``QEF_TOLERANCE`` of the largest, so a flat patch stays at the mean crossing along the
   plane and moves only across it, an edge gets a point on the crease, a corner its tip.
   A solution farther than ``QEF_MARGIN`` voxels outside the cell falls back to the mean
   crossing (the planes were near-parallel or inconsistent). With ``sharp=False`` every
   vertex is the mean crossing (as OpenVDB's mesher does).
3. **Faces.** Each cut grid edge is surrounded by four cells; their patches that contain the
   edge make a quad, wound so that it faces from the negative (inside) end to the positive
   one, split into two triangles along its shorter diagonal.

The vertex of a patch lies near its cell, so the result hugs the field's zero level like
marching cubes' does on smooth parts, and keeps creases and corners where the input has
them.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from backend.mesh import parallel
from backend.mesh.blocks import BLOCK, BlockGrid
from backend.mesh.distance import closest_point_on_triangle
from backend.progress import ProgressFn

#: Eigenvalues of the QEF below this fraction of the largest are dropped (pseudo-inverse).
QEF_TOLERANCE = 0.1

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


@functools.lru_cache(maxsize=1)
def patch_table() -> np.ndarray:
    """(256, 12) int8: the patch (0..3) of each cut edge for each sign code, -1 for uncut edges.

    Bit ``c`` of the code is set when corner ``c`` is negative. Derived from PyMCubes: its
    triangles for one cell with values -1 / +1 are grouped into connected pieces, and each
    vertex (an edge midpoint) names its edge.
    """
    import mcubes

    table = np.full((256, 12), -1, dtype=np.int8)
    mid_edge = {tuple((CORNERS[a] + CORNERS[b]).tolist()): e for e, (a, b) in enumerate(EDGES)}
    for code in range(1, 255):
        values = np.where([(code >> c) & 1 for c in range(8)], -1.0, 1.0).reshape(2, 2, 2)
        points, triangles = mcubes.marching_cubes(values, 0.0)
        edge = [mid_edge[tuple(np.rint(2 * p).astype(int).tolist())] for p in points]
        root = list(range(len(points)))

        def find(i: int) -> int:
            while root[i] != i:
                root[i] = root[root[i]]
                i = root[i]
            return i

        for a, b, c in triangles.tolist():
            root[find(b)] = find(a)
            root[find(c)] = find(a)
        labels = sorted({find(i) for i in range(len(points))})
        for i, e in enumerate(edge):
            table[code, e] = labels.index(find(i))
    return table


def _ring_table() -> list[tuple[int, int, np.ndarray, np.ndarray, bool]]:
    """For the 3 edges at a cell's top corner (7) along x, y, z: the 4 cells around the edge.

    Returns, per axis: the corner at the edge's lower end in this cell, 7 (its upper end),
    the (4, 3) offsets of the four cells from this cell in winding order, their (4,) local
    edge index, and whether that order faces -axis (to be reversed when the lower end is
    negative).
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


def dual_contour(field: np.ndarray, nearest: np.ndarray, blocks: BlockGrid, block_value: np.ndarray,
                 rows: np.ndarray, windows, input_vertices: np.ndarray, faces: np.ndarray, *, sharp: bool,
                 progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the zero level of the block field (module doc).

    Parameters
    ----------
    field : (nb, BLOCK^3) float32
        Negative inside, no exact zeros.
    nearest : (nb, BLOCK^3) int32
        Nearest input face per band node, -1 off the shell.
    blocks : BlockGrid
    block_value : (C,) float32
        The value of the nodes of blocks outside the band.
    rows : (r,) int64
        Band blocks that can hold a cut cell.
    windows : callable
        ``windows(array, batch, outside)`` -> (len(batch), BLOCK + 1, BLOCK + 1, BLOCK + 1): the nodes of
        blocks ``rows[batch]`` and the first layers of the blocks above them, from ``array``
        (band blocks), ``outside`` elsewhere.
    input_vertices : (n, 3) float64
        The input, in grid index coordinates.
    faces : (m, 3) int64
    sharp : bool
        Feature-preserving vertices (QEF) or mean crossings.

    Returns
    -------
    vertices : (k, 3) float64
        In grid index coordinates.
    triangles : (t, 3) int64
        Outer surfaces counter-clockwise seen from outside.
    """
    table = patch_table()
    corners = input_vertices[faces]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = np.where(length > 0, normal / np.where(length > 0, length, 1.0), 0.0)

    def cells(part: int, parts: int):
        keys, codes, points = [], [], []
        batches = range(part * BATCH, len(rows), parts * BATCH)
        for n, first in enumerate(batches):
            if part == 0:
                progress(0.8 * n / max(len(batches), 1), "dual contouring")
            batch = np.arange(first, min(first + BATCH, len(rows)))
            ext = windows(field, batch, None)
            negative = ext < 0
            code = np.zeros((len(batch), BLOCK, BLOCK, BLOCK), dtype=np.int32)
            for c, (x, y, z) in enumerate(CORNERS.tolist()):
                code |= negative[:, x:x + BLOCK, y:y + BLOCK, z:z + BLOCK].astype(np.int32) << c
            cut = np.argwhere((code > 0) & (code < 255))                                  # (k, 4)
            if not len(cut):
                continue
            ijk = blocks.blocks[rows[batch[cut[:, 0]]]] * BLOCK + cut[:, 1:]
            face_ext = windows(nearest, batch, -1)
            values = np.stack([ext[cut[:, 0], cut[:, 1] + x, cut[:, 2] + y, cut[:, 3] + z]
                               for x, y, z in CORNERS.tolist()], axis=1)                   # (k, 8)
            near = np.stack([face_ext[cut[:, 0], cut[:, 1] + x, cut[:, 2] + y, cut[:, 3] + z]
                             for x, y, z in CORNERS.tolist()], axis=1)
            keys.append(np.ravel_multi_index(ijk.T, blocks.grid.shape))
            codes.append(code[tuple(cut.T)])
            points.append(_cell_vertices(ijk, code[tuple(cut.T)], values, near, table, input_vertices, faces,
                                         unit, sharp))
        if not keys:
            return None
        return np.concatenate(keys), np.concatenate(codes), np.concatenate(points)

    found = [r for r in parallel.run_parts(cells, parallel.parts_for(len(rows), PARALLEL_MIN_BLOCKS)) if r]
    if not found:
        raise RuntimeError("no cell of the field changes sign; the field has no negative node")
    progress(0.8, "dual contouring")
    key = np.concatenate([r[0] for r in found])
    code = np.concatenate([r[1] for r in found])
    vertices = np.concatenate([r[2] for r in found])              # (k, 4, 3): one slot per patch
    order = np.argsort(key, kind="stable")
    key, code, vertices = key[order], code[order], vertices[order]
    used = np.stack([np.any(table[code] == p, axis=1) for p in range(4)], axis=1)     # (k, 4) patch exists
    vertex_id = np.cumsum(used.reshape(-1)).reshape(-1, 4) - 1
    out_vertices = vertices.reshape(-1, 3)[used.reshape(-1)]

    shape = blocks.grid.shape
    ijk = np.stack(np.unravel_index(key, shape), axis=1)
    quads = []
    for low, high, offsets, edges, faces_minus in _RINGS:
        lo_neg = (code >> low) & 1
        hi_neg = (code >> high) & 1
        here = np.flatnonzero(lo_neg != hi_neg)
        ring = np.empty((len(here), 4), dtype=np.int64)
        for slot, (offset, edge) in enumerate(zip(offsets, edges)):
            other = np.ravel_multi_index((ijk[here] + offset).T, shape)
            row = np.searchsorted(key, other)
            row = np.minimum(row, len(key) - 1)
            if np.any(key[row] != other):
                raise RuntimeError("a cut edge has a neighbouring cell outside the band; the band is too narrow")
            ring[:, slot] = vertex_id[row, table[code[row], edge]]
        flip = (lo_neg[here] == 1) == faces_minus
        ring[flip] = ring[flip][:, ::-1]
        quads.append(ring)
    quads = np.concatenate(quads)
    progress(0.9, "dual contouring")
    return separate_nonmanifold_edges(out_vertices, _split_quads(out_vertices, quads))


def _cell_vertices(ijk: np.ndarray, code: np.ndarray, values: np.ndarray, near: np.ndarray, table: np.ndarray,
                   input_vertices: np.ndarray, faces: np.ndarray, unit: np.ndarray, sharp: bool) -> np.ndarray:
    """(k, 4, 3) vertex of each patch slot of each cut cell (unused slots: 0), index coordinates."""
    k = len(code)
    patch = table[code]                                                           # (k, 12)
    cell_rows, edge = np.nonzero(patch >= 0)
    a, b = EDGES[edge, 0], EDGES[edge, 1]
    va, vb = values[cell_rows, a].astype(np.float64), values[cell_rows, b].astype(np.float64)
    t = va / (va - vb)
    p = ijk[cell_rows] + CORNERS[a] + t[:, None] * (CORNERS[b] - CORNERS[a])        # crossings
    slot = cell_rows * 4 + patch[cell_rows, edge]
    total = np.bincount(slot, minlength=4 * k).astype(np.float64)
    mean = np.stack([np.bincount(slot, p[:, d], minlength=4 * k) for d in range(3)], axis=1)
    mean /= np.maximum(total, 1)[:, None]
    if not sharp:
        return mean.reshape(k, 4, 3)
    # Tangent planes: the nearer of the two end nodes' nearest faces, if the crossing is on it.
    best = np.full(len(p), np.inf)
    n = np.zeros((len(p), 3))
    for end in (a, b):
        face = near[cell_rows, end].astype(np.int64)
        has = np.flatnonzero(face >= 0)
        tri = input_vertices[faces[face[has]]]
        c = closest_point_on_triangle(p[has], tri[:, 0], tri[:, 1], tri[:, 2])
        d = np.linalg.norm(c - p[has], axis=1)
        better = d < best[has]
        best[has[better]] = d[better]
        n[has[better]] = unit[face[has[better]]]
    n[best > ON_INPUT_VOXELS] = 0.0
    rel = p - mean[slot]
    nn = n[:, :, None] * n[:, None, :]                                             # (e, 3, 3)
    ata = np.stack([np.bincount(slot, nn[:, i, j], minlength=4 * k) for i in range(3) for j in range(3)],
                   axis=1).reshape(-1, 3, 3)
    rhs = n * np.einsum("ij,ij->i", n, rel)[:, None]
    atb = np.stack([np.bincount(slot, rhs[:, d], minlength=4 * k) for d in range(3)], axis=1)
    used = np.flatnonzero(total > 0)
    w, basis = np.linalg.eigh(ata[used])
    keep = w > QEF_TOLERANCE * w[:, -1:]
    inverse = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    x = mean[used] + np.einsum("nij,nj->ni", basis, inverse * np.einsum("nji,nj->ni", basis, atb[used]))
    lo = ijk[used // 4].astype(np.float64)
    inside = np.all((x >= lo - QEF_MARGIN) & (x <= lo + 1 + QEF_MARGIN), axis=1)
    out = mean.copy()
    out[used[inside]] = x[inside]
    return out.reshape(k, 4, 3)


#: Quad diagonals whose squared lengths differ by less than this fraction count as equal;
#: then the one at the lower vertex index is cut, so rounding noise picks no side.
DIAGONAL_TIE = 1e-3


def _split_quads(vertices: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Two triangles per quad (q, 4), cut along the shorter diagonal."""
    p = vertices[quads]
    d02 = np.einsum("ij,ij->i", p[:, 0] - p[:, 2], p[:, 0] - p[:, 2])
    d13 = np.einsum("ij,ij->i", p[:, 1] - p[:, 3], p[:, 1] - p[:, 3])
    tie = np.abs(d02 - d13) <= DIAGONAL_TIE * np.maximum(d02, d13)
    cut02 = np.where(tie, quads[:, [0, 2]].min(axis=1) < quads[:, [1, 3]].min(axis=1), d02 < d13)
    first = np.where(cut02[:, None], quads[:, [0, 1, 2]], quads[:, [1, 2, 3]])
    second = np.where(cut02[:, None], quads[:, [0, 2, 3]], quads[:, [1, 3, 0]])
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
