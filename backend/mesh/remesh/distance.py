"""Exact unsigned distance from a triangle mesh to the nodes of a grid near its surface: the narrow band.

The per-pair kernel is :mod:`backend.mesh.triangles`. Here it is run over the grid nodes
near the surface: :func:`narrow_band_blocks` (sparse 8^3 blocks,
:mod:`backend.mesh.remesh.blocks`; what the watertight engine uses, with an optional CUDA
path), :func:`narrow_band` (a sorted list) and :func:`narrow_band_grid` (dense, ``+inf``
outside). Long triangles are split into pieces; for each piece only the nodes of its
bounding box grown by ``band`` are visited, never (nodes x triangles), and of those only
the ones in the slab within ``band`` of its plane reach the kernel, in float32 (float64 for
slivers). Pieces are grouped by box shape and evaluated in chunks of about ``CHUNK_PAIRS``
pairs; each node keeps its minimum, and on request the input face that has it (pieces
report their parent face).

Nodes lie on the lattice of :class:`backend.mesh.remesh.blocks.Grid`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from backend.mesh import native, parallel
from backend.mesh.remesh.blocks import BLOCK, BLOCK_NODES, BlockGrid, Grid, blocks_of_boxes
from backend.mesh.triangles import TriangleFrames, dot3, triangle_distance
from backend.progress import ProgressFn, null_progress

log = logging.getLogger(__name__)

#: (node, triangle) box pairs looked at once; the plane cull leaves the kernel about a third
#: of them. The kernel holds ~30 temporaries per pair, a few MB at this size; 2**14-2**18
#: measured within 5% of each other on the bench meshes at resolution 512.
CHUNK_PAIRS = 1 << 16

#: Triangles are evaluated in float32 (1.6x faster than float64 here) unless they are
#: slivers: the face-region barycentrics divide by ``|ab x ac|^2``, whose float32 rounding
#: error relative to it grows like ``1 / sin(angle)^2``. Below ``sin = 1e-2`` (this bound on
#: ``sin^2``) a triangle takes the float64 path. Points are taken relative to the triangle's
#: corner ``a``, so float32 coordinates are small and the absolute error of a distance
#: stays below ~1e-6 of the triangle's size.
FLOAT32_MIN_SIN2 = 1e-4

#: Node boxes are rounded up to a multiple of this many nodes per side; see _band_chunks.
BOX_QUANTUM = 4

#: Triangles whose longest edge exceeds this many grid spacings are split (longest-edge
#: bisection) before the band is walked: a long diagonal triangle's bounding box holds
#: O(L^3) nodes but its band only O(L^2). The pieces cover the triangle exactly, so the
#: minimum distance over them is the distance to the triangle. A box costs one plane test
#: per node (the cull) and the kernel only in the plane's slab, so pieces may be long;
#: splitting finer pays for growing each piece's box by the band again. With a band of
#: 1.1 voxels at resolution 512, seconds for spot / Duck / beast / CesiumMilkTruck: 16 voxels
#: 0.67 / 0.91 / 0.82 / 1.32, 32: 0.56 / 0.79 / 0.82 / 1.00, 64: 0.56 / 0.83 / 0.83 / 1.09.
SPLIT_EDGE_VOXELS = 32.0

#: Band nodes per worker process below which the band is computed in one process (a fork
#: and the merge of the minima cost more than they save on small grids).
PARALLEL_MIN_NODES = 1 << 20

#: Calls of the compiled kernel per worker (each a contiguous run of triangle pieces):
#: progress is reported between them.
NATIVE_RUNS_PER_PART = 8



@dataclass(frozen=True)
class NarrowBand:
    """Unsigned distances of the grid nodes within ``band`` of a surface.

    Attributes
    ----------
    grid : Grid
    band : float
        Nodes farther than this from every triangle are absent.
    index : (k,) int64
        Flat node indices, sorted, unique.
    distance : (k,) float32
        Exact unsigned distance of each of those nodes, ``<= band``.
    face : (k,) int64
        A nearest input face of each of those nodes (any one of them on ties).
    """

    grid: Grid
    band: float
    index: np.ndarray
    distance: np.ndarray
    face: np.ndarray

    def dense(self) -> np.ndarray:
        """``grid.shape`` float32 array of distances, ``+inf`` at far nodes."""
        out = np.full(self.grid.size, np.inf, dtype=np.float32)
        out[self.index] = self.distance
        return out.reshape(self.grid.shape)


def narrow_band(
    vertices: np.ndarray,
    faces: np.ndarray,
    grid: Grid,
    band: float,
    *,
    chunk_pairs: int = CHUNK_PAIRS,
    progress: ProgressFn = null_progress,
) -> NarrowBand:
    """Exact unsigned distance of every node of ``grid`` within ``band`` of the triangles.

    Parameters
    ----------
    vertices : (n, 3) float
        In the grid's coordinates.
    faces : (m, 3) int
        Indices into ``vertices``; assumed valid.
    grid : Grid
    band : float
        Half-width of the band, in the grid's units (> 0).
    chunk_pairs : int
        Upper bound on (node, triangle) pairs evaluated at once; bounds memory.
    progress : ProgressFn
        Called with 0..1 between chunks; may raise :class:`~backend.progress.Cancelled`.

    Returns
    -------
    NarrowBand
        Sorted unique flat indices, their float32 distances and a nearest face of each.
    """
    parts = []
    for chunk in _band_chunks(vertices, faces, grid, band, chunk_pairs, progress):
        parts.append(_min_per_node(*chunk))
    if parts:
        index, distance, face = _min_per_node(*(np.concatenate(p) for p in zip(*parts)))
    else:
        index, distance, face = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return NarrowBand(grid=grid, band=float(band), index=index, distance=distance.astype(np.float32),
                      face=face.astype(np.int64))


def narrow_band_grid(
    vertices: np.ndarray,
    faces: np.ndarray,
    grid: Grid,
    band: float,
    *,
    chunk_pairs: int = CHUNK_PAIRS,
    progress: ProgressFn = null_progress,
    return_face: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Like :func:`narrow_band`, as a dense ``grid.shape`` float32 array, ``+inf`` outside the band.

    Cheaper than ``narrow_band(...).dense()`` when the dense grid is wanted anyway: chunks
    are folded into the grid as they come (``np.minimum.at``), with no global sort.

    With ``return_face``, also returns a ``grid.shape`` int32 array holding a nearest face
    (index into ``faces``) of every band node and -1 elsewhere (4 more bytes per node). After
    each chunk's minimum is folded in, a pair whose distance equals its node's new minimum
    is a nearest pair so far, so the face follows the minimum without any sort.
    """
    out = np.full(grid.size, np.inf, dtype=np.float32)
    nearest = np.full(grid.size, -1, dtype=np.int32) if return_face else None
    for index, distance, face in _band_chunks(vertices, faces, grid, band, chunk_pairs, progress):
        distance = distance.astype(np.float32)
        np.minimum.at(out, index, distance)
        if nearest is not None:
            hit = distance == out[index]
            nearest[index[hit]] = face[hit]  # on duplicate nodes any tie is a nearest face
    if nearest is None:
        return out.reshape(grid.shape)
    return out.reshape(grid.shape), nearest.reshape(grid.shape)


def narrow_band_blocks(
    vertices: np.ndarray,
    faces: np.ndarray,
    grid: Grid,
    band: float,
    *,
    margin: float,
    chunk_pairs: int = CHUNK_PAIRS,
    progress: ProgressFn = null_progress,
    device: str = "auto",
):
    """Like :func:`narrow_band_grid`, stored in sparse blocks (:mod:`backend.mesh.remesh.blocks`).

    The band blocks are those within ``margin`` (>= ``band``) of some triangle, judged by
    the bounding boxes of the split triangles, so every node within ``margin`` of the input
    is stored (nodes of those blocks beyond ``band`` get ``+inf``).

    Parameters
    ----------
    grid : Grid
        Its shape must be a multiple of ``BLOCK`` per axis (:func:`backend.mesh.remesh.blocks.padded_window`).

    device : {"auto", "cpu", "cuda"}
        "cuda" queries every band node with cubvh (:mod:`backend.mesh.remesh.gpu`); "auto" does so
        when cubvh and a CUDA device are available, else walks the triangles on the CPU.

    Returns
    -------
    blocks : BlockGrid
    distance : (nb, BLOCK^3) float32
        ``+inf`` beyond ``band``.
    face : (nb, BLOCK^3) int32
        A nearest input face of each node within ``band``, -1 elsewhere.
    """
    if not margin >= band:
        raise ValueError(f"margin ({margin!r}) must be at least the band ({band!r})")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    h = grid.spacing
    # Blocks are marked from the boxes of pieces of at most half a block: tighter than the
    # distance pieces' boxes, which may be long.
    a, b, c, _ = _split_long_triangles(vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]],
                                       0.5 * BLOCK * h)
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    start = np.floor((lo - margin - grid.origin) / h).astype(np.int64)
    stop = np.ceil((hi + margin - grid.origin) / h).astype(np.int64) + 1
    coarse_shape = tuple(int(s) // BLOCK for s in grid.shape)
    blocks = BlockGrid.from_mask(grid, blocks_of_boxes(start, stop, coarse_shape))
    from backend.mesh.remesh import gpu

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" or (device == "auto" and gpu.available() and len(faces) >= gpu.MIN_TRIANGLES):
        return blocks, *_band_blocks_cubvh(vertices, faces, blocks, band, progress)
    # The work is dealt to parts (:mod:`backend.mesh.parallel`), each keeping its own
    # minimum; the minima are merged here.
    size = blocks.count * BLOCK_NODES
    parts = parallel.parts_for(size, PARALLEL_MIN_NODES)
    if native.available():
        # The compiled kernel walks each piece's node box itself, on threads: a contiguous
        # run of pieces (neighbours in the input's face order, so their nodes share cache
        # lines) per call.
        outs = [np.full(size, np.inf, dtype=np.float32) for _ in range(parts)]
        nearests = [np.full(size, -1, dtype=np.int32) for _ in range(parts)]
        a, b, c, parent = _split_long_triangles(vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]],
                                                SPLIT_EDGE_VOXELS * h)
        corners = np.concatenate([a, b, c], axis=1)
        runs = np.linspace(0, len(corners), parts * NATIVE_RUNS_PER_PART + 1).astype(np.int64)

        def native_part(part: int, parts: int) -> None:
            mine = range(part * NATIVE_RUNS_PER_PART, (part + 1) * NATIVE_RUNS_PER_PART)
            for n, run in enumerate(mine):
                if part == 0:
                    progress(n / len(mine), "distance")
                first, last = runs[run], runs[run + 1]
                native.band_distance(corners[first:last], parent[first:last], grid.origin, h, grid.shape, band,
                                     blocks.slot, blocks.coarse_shape, outs[part], nearests[part])

        parallel.run_threads(native_part, parts)
    else:
        # Worker processes, each writing its minimum into shared memory.
        outs = [parallel.shared_array(size, np.float32, np.inf) for _ in range(parts)]
        nearests = [parallel.shared_array(size, np.int32, -1) for _ in range(parts)]

        def numpy_part(part: int, parts: int) -> None:
            out, nearest = outs[part], nearests[part]
            chunks = _band_chunks(vertices, faces, grid, band, chunk_pairs, progress if part == 0 else null_progress,
                                  part=part, parts=parts)
            for index, distance, face in chunks:
                position = blocks.positions_of_flat(index)
                distance = distance.astype(np.float32)
                np.minimum.at(out, position, distance)
                hit = distance == out[position]
                nearest[position[hit]] = face[hit]

        parallel.run_parts(numpy_part, parts)
    out, nearest = outs[0], nearests[0]
    for other_out, other_nearest in zip(outs[1:], nearests[1:]):
        closer = other_out < out
        np.copyto(out, other_out, where=closer)
        np.copyto(nearest, other_nearest, where=closer)
    return blocks, out.reshape(-1, BLOCK_NODES), nearest.reshape(-1, BLOCK_NODES)


def _band_blocks_cubvh(vertices: np.ndarray, faces: np.ndarray, blocks, band: float, progress: ProgressFn
                       ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`narrow_band_blocks`' arrays from cubvh: every band node is one GPU query."""
    from backend.mesh.remesh import gpu

    out = np.empty((blocks.count, BLOCK_NODES), dtype=np.float32)
    nearest = np.empty((blocks.count, BLOCK_NODES), dtype=np.int32)
    query = gpu.MeshDistance(vertices, faces)
    rows = max(1, gpu.GPU_CHUNK // BLOCK_NODES)
    for i in range(0, blocks.count, rows):
        progress(i / max(blocks.count, 1), "distance")
        position = np.arange(i * BLOCK_NODES, min(i + rows, blocks.count) * BLOCK_NODES)
        points = blocks.grid.origin + blocks.node_ijk(position) * blocks.grid.spacing
        distance, face = query(points)
        far = distance > band
        out.reshape(-1)[position] = np.where(far, np.inf, distance)
        nearest.reshape(-1)[position] = np.where(far, -1, face)
    progress(1.0, "distance")
    return out, nearest


def split_long_triangles(a: np.ndarray, b: np.ndarray, c: np.ndarray, max_edge: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bisect triangles across their longest edge until no edge is longer than ``max_edge``.

    Parameters
    ----------
    a, b, c : (m, 3) float64
        Triangle corners (a triangle soup).
    max_edge : float
        Longest edge allowed in the output (> 0).

    Returns
    -------
    a, b, c : (m', 3) float64
        A soup whose union is exactly the input's; triangles already short enough are
        returned unchanged. Bisecting the longest edge splits a long sliver into O(L) pieces,
        not the O(L^2) of 4-way subdivision.
    """
    a, b, c, _ = _split_long_triangles(a, b, c, max_edge)
    return a, b, c


def _split_long_triangles(a: np.ndarray, b: np.ndarray, c: np.ndarray, max_edge: float
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`split_long_triangles`, also returning the input triangle (m',) int64 of each piece."""
    if not max_edge > 0:
        raise ValueError(f"max_edge must be positive, got {max_edge!r}")
    parent = np.arange(len(a), dtype=np.int64)
    done = [(a, b, c, parent)] if len(a) == 0 else []
    limit2 = max_edge * max_edge
    while len(a):
        ab, bc, ca = b - a, c - b, a - c
        lens = np.stack([dot3(ab, ab), dot3(bc, bc), dot3(ca, ca)], axis=1)  # (m, 3)
        long = (lens > limit2).any(axis=1)
        if not long.any():                   # most meshes: nothing to split, nothing to copy
            done.append((a, b, c, parent))
            break
        done.append((a[~long], b[~long], c[~long], parent[~long]))
        a, b, c, longest, parent = a[long], b[long], c[long], lens[long].argmax(axis=1), parent[long]
        # Rotate so that the longest edge is (a, b), then split at its midpoint.
        r1, r2 = longest == 1, longest == 2
        a, b, c = (np.where(r1[:, None], b, np.where(r2[:, None], c, a)),
                   np.where(r1[:, None], c, np.where(r2[:, None], a, b)),
                   np.where(r1[:, None], a, np.where(r2[:, None], b, c)))
        mid = 0.5 * (a + b)
        a, b, c = np.concatenate([a, mid]), np.concatenate([mid, b]), np.concatenate([c, c])
        parent = np.concatenate([parent, parent])
    return tuple(np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*done))  # type: ignore[return-value]


def _band_chunks(vertices: np.ndarray, faces: np.ndarray, grid: Grid, band: float, chunk_pairs: int,
                 progress: ProgressFn, *, part: int = 0, parts: int = 1
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (flat node index (p,) int64, distance (p,) float32 (float64 for slivers), face (p,) int64) within ``band``, by chunk.

    A node may appear several times (once per nearby triangle); callers keep the minimum.
    Triangles are grouped by the shape of their node box (and precision), so a chunk is a
    dense (triangles, box nodes) block: node offsets come from one small template per shape.
    A plane test culls the box to the slab within ``band`` of the triangle's plane; the
    kernel runs on the pairs that remain (all of them for degenerate triangles). With
    ``parts > 1`` only every ``parts``-th chunk, starting at ``part``, is evaluated.
    """
    if not band > 0:
        raise ValueError(f"band must be positive, got {band!r}")
    if chunk_pairs < 1:
        raise ValueError(f"chunk_pairs must be positive, got {chunk_pairs!r}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    h = grid.spacing
    a, b, c, parent = _split_long_triangles(vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]],
                                            SPLIT_EDGE_VOXELS * h)
    if len(a) > len(faces):
        log.debug("split %d triangles into %d pieces of at most %.1f voxels", len(faces), len(a),
                  SPLIT_EDGE_VOXELS)

    # Node box of each triangle: its bounding box grown by the band, clipped to the grid.
    shape = np.asarray(grid.shape, dtype=np.int64)
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    start = np.maximum(np.ceil((lo - band - grid.origin) / h).astype(np.int64), 0)     # (m, 3)
    stop = np.minimum(np.floor((hi + band - grid.origin) / h).astype(np.int64) + 1, shape)
    extent = np.maximum(stop - start, 0)                                                # (m, 3)
    keep = extent.prod(axis=1) > 0
    a, b, c, start, extent, parent = a[keep], b[keep], c[keep], start[keep], extent[keep], parent[keep]
    # Boxes are grown to a multiple of BOX_QUANTUM nodes per side (moved back inside the
    # grid), so that few shapes, hence few chunks, remain; the extra nodes only cost the
    # plane cull, and any node's distance is correct whichever box it is found in.
    extent = np.minimum(-(-extent // BOX_QUANTUM) * BOX_QUANTUM, shape)
    start = np.maximum(np.minimum(start, shape - extent), 0)
    frames = TriangleFrames.from_corners(a, b, c)
    ab2, ac2, bc2 = dot3(b - a, b - a), dot3(c - a, c - a), dot3(c - b, c - b)
    longest2 = np.maximum(np.maximum(ab2, ac2), bc2)
    # 0: float32; 1: sliver, float64; 2: degenerate (segment or point), float64 edges.
    kind = np.where(frames.degenerate, 2, (dot3(*(np.cross(frames.ab, frames.ac),) * 2)
                                            <= FLOAT32_MIN_SIN2 * longest2 * longest2).astype(np.int64))
    frames32 = TriangleFrames._make(f if f.dtype == bool else f.astype(np.float32) for f in frames)
    # The culled path gathers a frame per pair: one row gather of a packed table is several
    # times faster than a gather per field.
    packed = {np.float32: _pack(frames32), np.float64: _pack(frames)}
    normal = np.cross(frames.ab, frames.ac)
    unit_normal = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)

    stride = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    base_flat = start @ stride                                                           # (m,)
    base_ap = (grid.origin + start * h) - a          # first box node relative to a, (m, 3)
    span = int(extent.max(initial=0)) + 1
    key = ((kind * span + extent[:, 0]) * span + extent[:, 1]) * span + extent[:, 2]
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    groups = np.split(order, cuts) if len(order) else []
    total = int(extent.prod(axis=1).sum())
    log.debug("narrow band: %d triangles in %d box shapes, %d pairs", len(a), len(groups), total)

    done = 0
    serial = -1
    for group in groups:
        box = tuple(int(e) for e in extent[group[0]])
        offsets = np.indices(box).reshape(3, -1).T                                     # (E, 3)
        offsets_flat = offsets @ stride                                                 # (E,)
        single = kind[group[0]] == 0
        dtype, group_frames = (np.float32, frames32) if single else (np.float64, frames)
        offsets_ap = (offsets * h).astype(dtype)
        per_chunk = max(1, chunk_pairs // len(offsets))
        planar = kind[group[0]] < 2
        for i in range(0, len(group), per_chunk):
            tri = group[i:i + per_chunk]
            done += len(tri) * len(offsets)
            serial += 1
            if serial % parts != part:
                continue
            progress(done / max(total, 1), "distance")
            ap = base_ap[tri].astype(dtype)[:, None, :] + offsets_ap[None, :, :]        # (n, E, 3)
            if planar:
                # Only nodes in the slab within ``band`` of the triangle's plane can be in
                # its band: one dot product culls most of the box before the kernel.
                slab = np.abs(np.einsum("nej,nj->ne", ap, unit_normal[tri].astype(dtype))) <= band
                row, col = np.nonzero(slab)
                dist = triangle_distance(ap[row, col], _unpack(packed[dtype][tri[row]]))       # (k,)
                near = dist <= band
                row, col = row[near], col[near]
                yield base_flat[tri[row]] + offsets_flat[col], dist[near], parent[tri[row]]
                continue
            dist = triangle_distance(ap, group_frames.take(tri).expand())                       # (n, E)
            near = dist <= band
            yield ((base_flat[tri][:, None] + offsets_flat[None, :])[near], dist[near],
                   np.broadcast_to(parent[tri][:, None], near.shape)[near])
    progress(1.0, "distance")


def _pack(frames: TriangleFrames) -> np.ndarray:
    """The non-degenerate kernel's per-triangle constants as one (m, 13) array (see _unpack)."""
    return np.ascontiguousarray(np.concatenate(
        [frames.ab, frames.ac, np.stack([frames.abab, frames.acac, frames.abac, frames.inv_abab, frames.inv_acac,
                                         frames.inv_bcbc, frames.inv_n2], axis=1)], axis=1))


_NOT_DEGENERATE = np.zeros(1, dtype=bool)


def _unpack(rows: np.ndarray) -> TriangleFrames:
    """Frames (views) from rows of :func:`_pack`, for triangles known not to be degenerate."""
    return TriangleFrames(None, rows[:, 0:3], rows[:, 3:6], *(rows[:, k] for k in range(6, 13)), _NOT_DEGENERATE)


def _min_per_node(index: np.ndarray, distance: np.ndarray, face: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique ``index`` with the minimum ``distance`` of each and the face that has it."""
    if len(index) == 0:
        return index, distance, face
    order = np.lexsort((distance, index))           # by node, nearest first
    index, distance, face = index[order], distance[order], face[order]
    first = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    return index[first], distance[first], face[first]
