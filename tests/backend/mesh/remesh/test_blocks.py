"""Sparse blocks agree with dense grids: distances, block addressing and the flood fill."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from backend.mesh.remesh.blocks import BLOCK, BlockGrid, Grid, blocks_of_boxes, label_free, padded_window
from backend.mesh.remesh.distance import narrow_band_blocks, narrow_band_grid
from backend.mesh.triangles import point_triangle_distance
from tests import meshes


def _dense(blocks: BlockGrid, rows: np.ndarray, fill) -> np.ndarray:
    """Scatter per-band-node ``rows`` (nb, BLOCK^3) into a dense array of the grid's shape."""
    out = np.full(blocks.grid.size, fill, dtype=rows.dtype)
    out[blocks.flat_index(np.arange(rows.size))] = rows.reshape(-1)
    return out.reshape(blocks.grid.shape)


@pytest.mark.parametrize("resolution", [24, 41])
def test_band_blocks_equal_the_dense_band(resolution, kernels):
    v, f = meshes.broken_mesh()
    v = v / np.abs(v).max() * 0.9
    grid = padded_window(Grid.cube(resolution).covering(v.min(axis=0), v.max(axis=0), 0.3))
    band, margin = 1.1 * grid.spacing, 2.9 * grid.spacing
    blocks, distance, face = narrow_band_blocks(v, f, grid, band, margin=margin, device="cpu")
    dense, dense_face = narrow_band_grid(v, f, grid, band, return_face=True)

    stored = _dense(blocks, np.ones_like(distance, dtype=bool), False)
    assert stored.sum() < 0.8 * stored.size  # sparse: some blocks are left out
    # Every node within the margin of the input is stored, and stored nodes agree: exactly
    # on the numpy kernels (the same arithmetic), to float32 rounding on the compiled ones
    # (float64 throughout, then rounded).
    within_margin = narrow_band_grid(v, f, grid, margin) <= margin
    assert stored[within_margin].all()
    got = _dense(blocks, distance, np.float32(np.inf))
    if kernels == "numpy":
        np.testing.assert_array_equal(got, dense)
    else:
        clear = np.abs(np.where(np.isfinite(dense), dense, 0) - band) > 1e-5 * grid.spacing  # not on the band's edge
        np.testing.assert_array_equal(np.isfinite(got)[clear], np.isfinite(dense)[clear])
        both = np.isfinite(got) & np.isfinite(dense)
        np.testing.assert_allclose(got[both], dense[both], rtol=0, atol=1e-6 * grid.spacing)
        assert both.sum() > 0.99 * np.isfinite(dense).sum()
    # Faces: the same where the band is, and each a nearest one (ties may pick another).
    got_face = _dense(blocks, face, np.int32(-1))
    np.testing.assert_array_equal(got_face == -1, ~np.isfinite(got))
    inside = got_face >= 0
    nodes = grid.points(np.flatnonzero(inside.reshape(-1)))
    t = v[f[got_face[inside]]]
    own = point_triangle_distance(nodes, t[:, 0], t[:, 1], t[:, 2])
    np.testing.assert_allclose(own, got[inside], rtol=0, atol=1e-5 * grid.spacing)


def test_block_addressing_round_trips():
    grid = Grid(np.zeros(3), 1.0, (16, 24, 8))
    mask = np.zeros((2, 3, 1), dtype=bool)
    mask[0, 1, 0] = mask[1, 2, 0] = True
    blocks = BlockGrid.from_mask(grid, mask)
    position = np.arange(blocks.count * BLOCK ** 3)
    ijk = blocks.node_ijk(position)
    assert set(map(tuple, ijk // BLOCK)) == {(0, 1, 0), (1, 2, 0)}
    np.testing.assert_array_equal(blocks.locate(ijk)[1], position)
    np.testing.assert_array_equal(blocks.positions_of_flat(blocks.flat_index(position)), position)
    assert (blocks.locate(np.array([[0, 0, 0], [15, 23, 7]]))[1] == [-1, position[-1]]).all()


def test_blocks_of_boxes_marks_exactly_the_blocks_boxes_meet():
    rng = np.random.default_rng(1)
    start = rng.integers(-5, 60, size=(300, 3))
    stop = start + rng.integers(0, 20, size=(300, 3))
    mask = blocks_of_boxes(start, stop, (8, 8, 8))
    expected = np.zeros((64, 64, 64), dtype=bool)
    for a, b in zip(np.clip(start, 0, 64), np.clip(stop, 0, 64)):
        expected[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
    coarse = expected.reshape(8, 8, 8, 8, 8, 8).any(axis=(1, 3, 5))
    np.testing.assert_array_equal(mask, coarse)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_free_is_the_dense_6_connected_labelling(seed):
    rng = np.random.default_rng(seed)
    shape = (32, 24, 40)
    grid = Grid(np.zeros(3), 1.0, shape)
    coarse = tuple(s // BLOCK for s in shape)
    # Walls of random boxes' surfaces inside some blocks; free everywhere else.
    free = np.ones(shape, dtype=bool)
    for _ in range(6):
        lo = rng.integers(0, 20, size=3)
        hi = lo + rng.integers(3, 16, size=3)
        box = np.zeros(shape, dtype=bool)
        box[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        free &= ~(box & ~ndimage.binary_erosion(box))
    free |= rng.random(shape) < 0.02  # pinholes
    band_mask = (~free).reshape(coarse[0], BLOCK, coarse[1], BLOCK, coarse[2], BLOCK).any(axis=(1, 3, 5))
    band_mask |= rng.random(coarse) < 0.2  # band blocks with no wall at all
    blocks = BlockGrid.from_mask(grid, band_mask)
    rows = free.reshape(-1)[blocks.flat_index(np.arange(blocks.count * BLOCK ** 3))].reshape(blocks.count, -1)

    regions = label_free(blocks, rows)
    expected, count = ndimage.label(free, structure=ndimage.generate_binary_structure(3, 1))
    assert regions.count == count
    ijk = np.stack(np.unravel_index(np.arange(free.size), shape), axis=1)
    got = regions.at(blocks, ijk).reshape(shape)
    assert ((got == 0) == ~free).all()
    # Same partition: each label of one maps to exactly one label of the other.
    pairs = np.unique(np.stack([got[free], expected[free]], axis=1), axis=0)
    assert len(pairs) == count == len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1]))
