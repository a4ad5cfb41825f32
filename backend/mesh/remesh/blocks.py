"""Grids of the lattice: windows of nodes, and sparse blocks that store a window only near a surface.

Lattice convention (see :mod:`backend.conventions`): resolution ``res`` puts nodes at
``-1 + i * (2 / res)`` for ``i`` in ``0..res`` on each axis. A :class:`Grid` is a box of
nodes of such a lattice; its indices may extend past ``0..res`` (a window with padding),
which keeps every node on the same lattice.

A :class:`BlockGrid` cuts a :class:`Grid` window (its shape padded to
a multiple of ``BLOCK``) into blocks of ``BLOCK^3`` nodes. Only the *band blocks*, those
within some margin of the surface, hold per-node arrays, as ``(nb, BLOCK^3)`` rows in
C order within the block; every other block is one value for all its nodes. Memory and
time then follow the surface's area, not the window's volume: at resolution 512 a typical
mesh has some ten thousand band blocks (a few million nodes) in a window of ~10^8 nodes.

:func:`label_free` does the 6-connected flood fill of such a grid: the free nodes of each
band block that has a blocked node are labelled on their own (one
:func:`scipy.ndimage.label` call over all of them, kept apart by an empty layer), every
other block (all free) is labelled whole on the coarse grid of blocks, and the labels that
touch across block faces are joined by one
:func:`scipy.sparse.csgraph.connected_components` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Nodes per block side. 8 keeps a block's float32 row at 2 KB and its six faces cheap to
#: join; the coarse grid at resolution 1024 is then 128^3 entries.
BLOCK = 8
_SHIFT = 3  # log2(BLOCK)
_MASK = BLOCK - 1
BLOCK_NODES = BLOCK ** 3

_SIX = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class Grid:
    """A box of nodes ``origin + index * spacing``, ``index`` in ``[0, shape)`` per axis.

    Flat node indices are C order: ``(i * shape[1] + j) * shape[2] + k``.

    Attributes
    ----------
    origin : (3,) float64
        Coordinates of node ``(0, 0, 0)``.
    spacing : float
        Distance between neighbouring nodes (the voxel size ``h``).
    shape : tuple of 3 int
        Nodes along each axis.
    """

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]

    @classmethod
    def cube(cls, resolution: int) -> "Grid":
        """The ``(resolution + 1)^3`` nodes over ``[-1, 1]^3``, spacing ``2 / resolution``."""
        if resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        n = int(resolution) + 1
        return cls(origin=np.full(3, -1.0), spacing=2.0 / resolution, shape=(n, n, n))

    @property
    def size(self) -> int:
        """Number of nodes."""
        return int(np.prod(self.shape))

    def window(self, start: np.ndarray, stop: np.ndarray) -> "Grid":
        """The nodes ``start <= index < stop`` of this lattice (indices may lie outside ``shape``).

        Coordinates are ``self.origin + start * spacing`` exactly as in this grid, so a
        window's nodes are bit-identical to the lattice's.
        """
        start = np.asarray(start, dtype=np.int64)
        stop = np.asarray(stop, dtype=np.int64)
        if start.shape != (3,) or stop.shape != (3,) or (stop <= start).any():
            raise ValueError(f"window needs 3 indices with stop > start, got start={start}, stop={stop}")
        shape = tuple(int(s) for s in stop - start)
        return Grid(origin=self.origin + start * self.spacing, spacing=self.spacing, shape=shape)

    def covering(self, lo: np.ndarray, hi: np.ndarray, margin: float) -> "Grid":
        """The window of this lattice holding every node within ``margin`` of the box ``[lo, hi]``.

        One more node layer is added on each side, so the outermost layer is strictly
        farther than ``margin`` from the box (a band computed with that margin leaves it
        empty, which flood fills rely on to start from the window's boundary).
        """
        h = self.spacing
        start = np.floor((np.asarray(lo) - margin - self.origin) / h).astype(np.int64) - 1
        stop = np.ceil((np.asarray(hi) + margin - self.origin) / h).astype(np.int64) + 2
        return self.window(start, stop)

    def points(self, flat: np.ndarray) -> np.ndarray:
        """Coordinates of nodes given by flat index; (k,) int in, (k, 3) float64 out."""
        ijk = np.stack(np.unravel_index(np.asarray(flat, dtype=np.int64), self.shape), axis=1)
        return self.origin + ijk * self.spacing


@dataclass(frozen=True)
class BlockGrid:
    """Band blocks of a grid window.

    Attributes
    ----------
    grid : Grid
        The window; every entry of its shape is a multiple of ``BLOCK``.
    coarse_shape : tuple of 3 int
        Blocks along each axis (``grid.shape // BLOCK``).
    blocks : (nb, 3) int64
        Block coordinates of the band blocks, in C order of the coarse grid.
    slot : (Cx * Cy * Cz,) int64
        Row of each block in the per-node arrays, -1 for blocks outside the band.
    """

    grid: Grid
    coarse_shape: tuple[int, int, int]
    blocks: np.ndarray
    slot: np.ndarray

    @classmethod
    def from_mask(cls, grid: Grid, band_blocks: np.ndarray) -> "BlockGrid":
        """The block grid whose band is ``band_blocks`` (coarse-shaped bool)."""
        if any(s % BLOCK for s in grid.shape) or band_blocks.shape != tuple(s // BLOCK for s in grid.shape):
            raise ValueError(f"grid shape {grid.shape} and block mask {band_blocks.shape} do not match")
        ids = np.flatnonzero(band_blocks)
        slot = np.full(band_blocks.size, -1, dtype=np.int64)
        slot[ids] = np.arange(len(ids))
        blocks = np.stack(np.unravel_index(ids, band_blocks.shape), axis=1).astype(np.int64)
        return cls(grid=grid, coarse_shape=tuple(int(s) for s in band_blocks.shape), blocks=blocks, slot=slot)

    @property
    def count(self) -> int:
        """Number of band blocks."""
        return len(self.blocks)

    def block_id(self, b: np.ndarray) -> np.ndarray:
        """Coarse flat id of block coordinates (k, 3)."""
        cx, cy, cz = self.coarse_shape
        return (b[:, 0] * cy + b[:, 1]) * cz + b[:, 2]

    def neighbours(self, offset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The block at ``offset`` (3,) from each band block.

        Returns whether it is in the grid (nb,) bool, its coarse id (nb,) (0 where it is not),
        and its row (nb,) in the per-node arrays (-1 outside the band or the grid).
        """
        other = self.blocks + np.asarray(offset, dtype=np.int64)
        inside = ((other >= 0) & (other < np.asarray(self.coarse_shape))).all(axis=1)
        block = self.block_id(np.where(inside[:, None], other, 0))
        return inside, block, np.where(inside, self.slot[block], -1)

    def locate(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coarse block id (k,) and position (k,) ``slot * BLOCK^3 + local`` of nodes (k, 3).

        The position is -1 for nodes in blocks outside the band. Nodes must lie in the grid.
        """
        bid = self.block_id(ijk >> _SHIFT)
        local = ((ijk[:, 0] & _MASK) * BLOCK + (ijk[:, 1] & _MASK)) * BLOCK + (ijk[:, 2] & _MASK)
        slot = self.slot[bid]
        return bid, np.where(slot >= 0, slot * BLOCK_NODES + local, -1)

    def node_ijk(self, position: np.ndarray) -> np.ndarray:
        """Grid indices (k, 3) of band-node positions (k,) ``slot * BLOCK^3 + local``."""
        slot, local = np.divmod(position, BLOCK_NODES)
        within = np.stack([local >> 2 * _SHIFT, (local >> _SHIFT) & _MASK, local & _MASK], axis=1)
        return (self.blocks[slot] << _SHIFT) + within

    def flat_index(self, position: np.ndarray) -> np.ndarray:
        """Flat C-order index in ``grid`` of band-node positions (k,)."""
        return np.ravel_multi_index(self.node_ijk(position).T, self.grid.shape)

    def positions_of_flat(self, flat: np.ndarray) -> np.ndarray:
        """Band-node positions (k,) of flat grid indices (k,); -1 outside the band."""
        ijk = np.stack(np.unravel_index(flat, self.grid.shape), axis=1)
        return self.locate(ijk)[1]


def padded_window(grid: Grid) -> Grid:
    """``grid`` grown at its far end to a shape that is a multiple of ``BLOCK`` per axis."""
    shape = np.asarray(grid.shape, dtype=np.int64)
    return grid.window(np.zeros(3, dtype=np.int64), -(-shape // BLOCK) * BLOCK)


def blocks_of_boxes(start: np.ndarray, stop: np.ndarray, coarse_shape: tuple[int, int, int]) -> np.ndarray:
    """Coarse bool mask of the blocks that meet any of the node boxes ``[start, stop)`` (m, 3).

    Boxes are clipped to the grid; each may span any number of blocks.
    """
    mask = np.zeros(coarse_shape, dtype=bool)
    limit = np.asarray(coarse_shape, dtype=np.int64) - 1
    lo = np.clip(start >> _SHIFT, 0, limit)
    hi = np.clip((stop - 1) >> _SHIFT, 0, limit)
    keep = (stop > start).all(axis=1) & (stop > 0).all(axis=1) & (start < (limit + 1) * BLOCK).all(axis=1)
    # Neighbouring boxes mostly cover the same blocks: mark each range of blocks once.
    lo, span = lo[keep], hi[keep] - lo[keep]
    base = int(span.max(initial=0)) + 1
    cx, cy, cz = coarse_shape
    key = ((((lo[:, 0] * cy + lo[:, 1]) * cz + lo[:, 2]) * base + span[:, 0]) * base + span[:, 1]) * base + span[:, 2]
    key = np.unique(key)
    key, sz = np.divmod(key, base)
    key, sy = np.divmod(key, base)
    key, sx = np.divmod(key, base)
    lo = np.stack(np.unravel_index(key, coarse_shape), axis=1)
    span = np.stack([sx, sy, sz], axis=1)
    for d in np.ndindex(*(int(s) + 1 for s in span.max(axis=0, initial=0))):
        ok = (span >= np.asarray(d)).all(axis=1)
        b = lo[ok] + np.asarray(d)
        mask[b[:, 0], b[:, 1], b[:, 2]] = True
    return mask


@dataclass(frozen=True)
class Regions:
    """6-connected components of the free nodes of a block grid.

    Region ids start at 1; 0 marks a node that is not free.

    Attributes
    ----------
    count : int
        Number of regions.
    node : (nb, BLOCK^3) int32
        Region of each band node.
    block : (Cx * Cy * Cz,) int32
        Region of each block outside the band (all its nodes are free), 0 for band blocks.
    """

    count: int
    node: np.ndarray
    block: np.ndarray

    def at(self, blocks: BlockGrid, ijk: np.ndarray) -> np.ndarray:
        """Region (k,) of nodes (k, 3), clipped into the grid."""
        ijk = np.clip(ijk, 0, np.asarray(blocks.grid.shape) - 1)
        bid, position = blocks.locate(ijk)
        inside = position >= 0
        out = self.block[bid]
        out[inside] = self.node.reshape(-1)[position[inside]]
        return out


def label_free(band: BlockGrid, free: np.ndarray) -> Regions:
    """6-connected components of the free nodes; blocks outside the band are all free.

    Parameters
    ----------
    band : BlockGrid
    free : (nb, BLOCK^3) bool
        Which band nodes are free.
    """
    b = BLOCK
    # Only blocks with a blocked node are labelled node by node ("mixed"); every other
    # block, in the band or not, is all free and labelled whole on the coarse grid.
    mixed_rows = np.flatnonzero(~free.all(axis=1))
    slot = np.full(band.slot.shape, -1, dtype=np.int64)
    slot[band.block_id(band.blocks[mixed_rows])] = np.arange(len(mixed_rows))
    mixed = BlockGrid(grid=band.grid, coarse_shape=band.coarse_shape, blocks=band.blocks[mixed_rows], slot=slot)
    coarse, n_coarse = ndimage.label(slot.reshape(band.coarse_shape) < 0, structure=_SIX, output=np.int32)
    coarse = coarse.reshape(-1)
    # Mixed blocks, each on its own: stacked along x with an empty layer between them.
    stacked = np.zeros((mixed.count, b + 1, b, b), dtype=bool)
    stacked[:, :b] = free[mixed_rows].reshape(-1, b, b, b)
    fine, n_fine = ndimage.label(stacked.reshape(-1, b, b), structure=_SIX, output=np.int32)
    fine = fine.reshape(mixed.count, b + 1, b, b)[:, :b]

    # Join labels across block faces. One id space: coarse labels 1..n_coarse, then fine
    # label f as n_coarse + f.
    pairs = []
    for axis in range(3):
        step = np.eye(3, dtype=np.int64)[axis]
        last = fine[(slice(None),) * (axis + 1) + (b - 1,)]    # (k, b, b) views: the far face
        first = fine[(slice(None),) * (axis + 1) + (0,)]       # and the near face
        _, _, up_slot = mixed.neighbours(step)
        # Mixed block -> mixed block above it: face to face.
        both = up_slot >= 0
        near, far = last[both], first[up_slot[both]]
        joined = (near > 0) & (far > 0)
        pairs.append(np.stack([near[joined] + n_coarse, far[joined] + n_coarse], axis=1))
        # Mixed block -> a whole block above it, and the same below.
        for face, offset in ((last, step), (first, -step)):
            inside, other_id, other_slot = mixed.neighbours(offset)
            whole = inside & (other_slot < 0)
            labels = face[whole]                                             # (k, b, b)
            region = np.broadcast_to(coarse[other_id[whole]][:, None, None], labels.shape)
            hit = labels > 0
            pairs.append(np.stack([labels[hit] + n_coarse, region[hit]], axis=1))
    pairs = np.concatenate(pairs)
    # Neighbouring face nodes mostly repeat the previous pair: drop those before the graph.
    if len(pairs) > 1:
        pairs = pairs[np.concatenate([[True], (pairs[1:] != pairs[:-1]).any(axis=1)])]
    count, component = _components(_graph(pairs, n_coarse + n_fine + 1))
    component = component.astype(np.int32)
    fine_component = component[n_coarse:].copy()                # fine label f -> entry f
    fine_component[0] = 0
    node = np.repeat(component[coarse[band.block_id(band.blocks)]][:, None], b ** 3, axis=1)
    node[mixed_rows] = fine_component[fine].reshape(mixed.count, -1)
    return Regions(count=count - 1, node=node, block=np.where(band.slot < 0, component[coarse], 0))


def _graph(pairs: np.ndarray, size: int):
    from scipy.sparse import coo_matrix

    ones = np.ones(len(pairs), dtype=np.int8)
    return coo_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(size, size)).tocsr()


def _components(graph) -> tuple[int, np.ndarray]:
    """Connected components, relabelled so that node 0 (the "not free" id) is component 0."""
    from scipy.sparse.csgraph import connected_components

    count, labels = connected_components(graph, directed=False)
    # Node 0 has no edges, so it is alone in its component; swap that component with 0.
    zero = labels[0]
    labels = np.where(labels == zero, -1, labels)
    labels = np.where(labels == 0, zero, labels)
    labels = np.where(labels == -1, 0, labels)
    return count, labels
