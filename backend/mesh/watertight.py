"""Watertight remeshing: a closed, manifold, outward-oriented surface around any triangle soup.

Method
------
The input is only ever asked "how far is this point from you?", so holes, flipped or
duplicate faces, self-intersections, several parts and zero-thickness sheets do not matter.

1. **Normalize.** :meth:`Normalization.fit` on the vertices the faces use puts the mesh into
   the canonical box; the grid of resolution ``res`` has nodes ``-1 + i * h``, ``h = 2 / res``.
   Only the window of that lattice around the mesh (plus the band and one node) is stored.
2. **Narrow-band unsigned distance** (:func:`backend.mesh.distance.narrow_band_grid`): exact
   point-triangle distances at the nodes within ``band`` of some triangle, ``+inf`` elsewhere.
3. **Shell**: nodes with ``udf < eps``, ``eps = SHELL_VOXELS * h``. Since ``eps > h / 2``,
   any grid edge that crosses the input surface has an end in the shell, so no 6-connected
   path of non-shell nodes gets through the surface: the shell is a closed wall whatever
   the input's defects. Gaps and holes narrower than about ``2 eps`` are sealed by it.
4. **Flood fill** (6-connected ``scipy.ndimage.label``) of the non-shell nodes from the
   window's outer layer, which is always beyond the band: what it reaches is *outside*.
   Everything else is *inside*: the shell, the solid interior, and enclosed cavities —
   hidden inner parts (a sphere inside a sphere, a car's interior) are filled, by design.
5. **Field for marching cubes**: outside nodes keep ``+udf`` (far ones ``+band``); shell
   nodes keep ``+udf`` too, which is below ``eps``; enclosed non-shell nodes get ``-udf``
   (far ones ``-band``). Keeping ``+udf`` on the shell rather than negating it with the rest
   of the inside is deliberate: every edge marching cubes cuts joins a shell node to an
   outside node, both on the same branch of the distance (see ``SHELL_VOXELS``), so linear
   interpolation of the level ``eps`` is exact for locally flat input instead of biased
   outward. Values within ``NUDGE_VOXELS`` of ``eps`` are pushed off it so no vertex lands
   on a grid node (no zero-area or collapsed faces).
6. **Marching cubes** (PyMCubes) at the level ``eps``, only on the blocks of cells that touch
   the shell (every cut edge has a shell end), so its cost follows the surface, not the
   volume, and progress/cancel points come often. Every vertex lies inside a unique grid
   edge; vertices are merged by that edge, which also stitches the blocks. PyMCubes winds
   its triangles inward for "inside = below the level" (checked by a test), so all faces
   are reversed. The window's outer layer is outside, so the surface is closed and
   edge-manifold.
7. **Back** to index -> canonical -> the caller's frame with :meth:`Normalization.invert`.

The result is the outer boundary of the ``eps`` shell: it lies about ``eps`` (``offset``,
about 1.1 voxels) outside the input, and open sheets become thin closed slabs of thickness
about ``2 eps``. Removing that dilation is left to a later version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from backend.conventions import Normalization
from backend.mesh.distance import Grid, narrow_band_grid
from backend.progress import ProgressFn, null_progress, subrange

log = logging.getLogger(__name__)

#: Shell half-thickness ``eps`` in voxels. It must exceed 0.5 so the shell has no leak along
#: grid edges. At >= 1 no edge that marching cubes cuts straddles a flat piece of input (its
#: shell end would need ``udf <= h - eps <= 0``), so interpolation is exact there; the extra
#: 0.1 keeps lattice-aligned input (a plane through a node layer sits exactly 1 voxel from
#: the next layer) off the level. Larger values seal wider holes but dilate the result more.
SHELL_VOXELS = 1.1

#: Distances are computed up to this many voxels. Distance changes by at most ``h`` along a
#: grid edge, so the outside end of every edge marching cubes cuts has ``udf < eps + h``;
#: other nodes only need to be known as ``>= eps``, which "far" (+inf) says. The extra 0.1
#: voxel absorbs rounding; the band's cost grows with its cube, so it is kept tight.
BAND_VOXELS = SHELL_VOXELS + 1.1

#: Field values are kept at least this many voxels away from the level ``eps``, so every
#: marching-cubes vertex lies strictly inside its grid edge (by about this fraction).
NUDGE_VOXELS = 1e-3

#: Allowed ``resolution`` range, as the HTTP schema also states.
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024

#: Marching cubes runs on blocks of this many cells per side that touch the shell. Larger
#: blocks waste time on empty cells, smaller ones on Python overhead per block; 16 was
#: fastest at resolutions 128-512 on the bench meshes.
BLOCK_CELLS = 16

#: PyMCubes (0.1.x, Bourke's tables) marks nodes ``<= level`` as inside and then winds its
#: triangles clockwise seen from outside (negative volume). Fixed for the library, not per mesh.
MCUBES_WINDS_INWARD = True


@dataclass(frozen=True)
class WatertightResult:
    """A watertight remesh, in the caller's frame and scale.

    Attributes
    ----------
    vertices : (n, 3) float64
    faces : (m, 3) int64
        Counter-clockwise seen from outside (positive volume); every edge in exactly two faces.
    resolution : int
        Grid cells across the canonical cube; the input's longest side spans 0.95 of it.
    voxel_size : float
        Grid spacing ``h`` in the caller's units.
    offset : float
        How far outside the input the surface lies, ``SHELL_VOXELS * voxel_size``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    resolution: int
    voxel_size: float
    offset: float


def watertight(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    resolution: int = 128,
    progress: ProgressFn = null_progress,
) -> WatertightResult:
    """Remesh any triangle mesh into a closed, edge-manifold, outward-oriented surface.

    Parameters
    ----------
    vertices : (n, 3) float
        Finite coordinates, any frame and scale.
    faces : (m, 3) int
        Indices into ``vertices``; holes, flips, duplicates, degenerate faces are fine.
    resolution : int
        Grid cells across the canonical cube ``[-1, 1]``, in ``[16, 1024]``. Detail grows
        with it; so do time (about quadratic: distance and marching cubes follow the
        surface) and memory (about 10 bytes per grid node in the mesh's bounding box at
        peak: ~1.3 GB at 512 and ~10 GB at 1024 for a cube-shaped mesh).
    progress : ProgressFn
        ``progress(fraction, stage)`` between stages and chunks; it may raise
        :class:`backend.progress.Cancelled`, which propagates.

    Returns
    -------
    WatertightResult
        About ``offset`` outside the input (see the module docstring).

    Raises
    ------
    ValueError
        Naming the argument: empty or misshapen arrays, wrong dtypes, non-finite
        coordinates, out-of-range indices, a resolution outside ``[16, 1024]``, or a mesh
        whose used vertices all coincide.
    """
    vertices, faces, resolution = _check_inputs(vertices, faces, resolution)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    progress(0.0, "normalizing")
    used = np.unique(faces)
    # Fit to the vertices the faces use: stray unused vertices must not shrink the mesh.
    norm = Normalization.fit(vertices[used])
    canonical = norm.apply(vertices)
    h = 2.0 / resolution
    eps, band, nudge = SHELL_VOXELS * h, BAND_VOXELS * h, NUDGE_VOXELS * h
    grid = Grid.cube(resolution).covering(canonical[used].min(axis=0), canonical[used].max(axis=0), band)

    udf = narrow_band_grid(canonical, faces, grid, band, progress=subrange(progress, 0.02, 0.6))
    timings["distance"] = time.perf_counter() - clock

    progress(0.6, "flood fill")
    outside = _outside(udf >= eps)
    timings["flood fill"] = time.perf_counter() - clock - sum(timings.values())

    index_vertices, tris = _marching_cubes(udf, outside, eps, band, nudge, subrange(progress, 0.7, 0.97))
    del udf, outside
    if MCUBES_WINDS_INWARD:
        tris = tris[:, ::-1]
    timings["marching cubes"] = time.perf_counter() - clock - sum(timings.values())

    progress(0.97, "restoring frame")
    out_vertices = norm.invert(grid.origin + index_vertices * h)
    log.info(
        "watertight: %d faces -> %d faces at resolution %d, window %s; %s",
        len(faces), len(tris), resolution, grid.shape,
        ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()),
    )
    progress(1.0, "done")
    return WatertightResult(
        vertices=out_vertices,
        faces=np.ascontiguousarray(tris, dtype=np.int64),
        resolution=resolution,
        voxel_size=h / norm.scale,
        offset=eps / norm.scale,
    )


def _check_inputs(vertices: object, faces: object, resolution: object) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated ``vertices`` (n, 3) float64, ``faces`` (m, 3) int64 and ``resolution``."""
    if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"resolution must be an integer, got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution}")

    arrays = {}
    for name, value in (("vertices", vertices), ("faces", faces)):
        try:
            array = np.asarray(value)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be an (n, 3) array, got a ragged sequence: {exc}") from exc
        if array.size == 0:
            raise ValueError(f"{name} is empty (shape {array.shape}); a mesh needs at least one triangle")
        if array.ndim != 2 or array.shape[1] != 3:
            raise ValueError(f"{name} must have shape (n, 3), got {array.shape}")
        arrays[name] = array
    v, f = arrays["vertices"], arrays["faces"]

    if v.dtype == np.bool_ or not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
        raise ValueError(f"vertices must hold real numbers, got dtype {v.dtype}")
    v = v.astype(np.float64, copy=False)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise ValueError(
            f"vertices has {int(bad.sum())} of {len(v)} rows with NaN or infinite coordinates "
            f"(first at row {int(np.flatnonzero(bad)[0])})"
        )
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must hold integer indices, got dtype {f.dtype}")
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= len(v):
        raise ValueError(f"faces has indices from {lo} to {hi}, but vertices has {len(v)} rows")
    return v, f.astype(np.int64, copy=False), int(resolution)


def _outside(free: np.ndarray) -> np.ndarray:
    """Nodes of ``free`` (bool grid) 6-connected to its corner node, which must be free.

    ``Grid.covering`` keeps the window's outer layer beyond the band, so that layer is all
    free and connected, and the corner's component is everything reachable from outside.
    """
    if not free[0, 0, 0]:
        raise RuntimeError("the grid window's corner is in the shell; the window is too small")
    # 6-connectivity: a diagonal step could slip between two shell nodes of a thin wall.
    labels, _ = ndimage.label(free, structure=ndimage.generate_binary_structure(3, 1))
    return labels == labels[0, 0, 0]


def _marching_cubes(udf: np.ndarray, outside: np.ndarray, eps: float, band: float, nudge: float,
                    progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
    """Isosurface ``field == eps`` of the field built from ``udf`` and ``outside`` (module doc, 5-6).

    Only blocks of ``BLOCK_CELLS^3`` cells that touch a shell node are polygonized: every
    edge the surface cuts has a shell end, so all other blocks are empty. PyMCubes costs
    about 50 ns per node whether or not a cell is cut, so this turns a cost in the window's
    volume into one in the surface's area (and each block's float64 copy is tiny).

    Parameters
    ----------
    udf : (X, Y, Z) float32
        Unsigned distance, ``+inf`` beyond the band.
    outside : (X, Y, Z) bool
    eps, band, nudge : float
        In the grid's units.

    Returns
    -------
    vertices : (n, 3) float64
        In grid index coordinates of ``udf``.
    faces : (m, 3) int64
        As PyMCubes winds them; vertices merged per grid edge across blocks.
    """
    import mcubes

    shape = np.asarray(udf.shape, dtype=np.int64)
    blocks = _blocks_touching(np.flatnonzero(udf < eps), shape)                        # (b, 3)
    keys, verts, tris = [], [], []
    count = 0
    for n, block in enumerate(blocks):
        if n % 64 == 0:
            progress(n / len(blocks), "marching cubes")
        lo = block * BLOCK_CELLS
        hi = np.minimum(lo + BLOCK_CELLS + 1, shape)  # neighbouring blocks share a node layer
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        out = outside[window]
        if out.all() or not out.any():
            continue  # all on one side: nothing to cut
        u = udf[window].astype(np.float64)
        field = np.where(
            out,
            np.clip(u, eps + nudge, band),                        # far (+inf) -> band
            np.where(u < eps, np.minimum(u, eps - nudge), -np.minimum(u, band)),
        )
        v, t = mcubes.marching_cubes(field, eps)
        if len(t) == 0:
            continue
        v += lo
        keys.append(_edge_keys(v, shape))
        verts.append(v)
        tris.append(t.astype(np.int64) + count)
        count += len(v)
    progress(1.0, "marching cubes")
    if not tris:
        raise RuntimeError("marching cubes found no surface; the shell is empty")

    # PyMCubes shares vertices within a call; the edge key also joins the blocks' seams.
    _, first, inverse = np.unique(np.concatenate(keys), return_index=True, return_inverse=True)
    return np.concatenate(verts)[first], inverse[np.concatenate(tris)]


def _blocks_touching(nodes: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Blocks (b, 3) int64 of ``BLOCK_CELLS^3`` cells that have a corner among flat ``nodes``."""
    cells = shape - 1
    grid = tuple(int(g) for g in -(-cells // BLOCK_CELLS))
    corners = np.indices((2, 2, 2)).reshape(3, -1).T         # the 8 cells around a node
    ids = [np.zeros(0, dtype=np.int64)]
    for i in range(0, len(nodes), 1 << 20):                   # bounded temporaries at any resolution
        ijk = np.stack(np.unravel_index(nodes[i:i + (1 << 20)], tuple(shape)), axis=1)  # (k, 3)
        for corner in corners:
            cell = ijk - corner
            cell = cell[((cell >= 0) & (cell < cells)).all(axis=1)]
            ids.append(np.unique(np.ravel_multi_index((cell // BLOCK_CELLS).T, grid)))
    ids = np.unique(np.concatenate(ids))
    return np.stack(np.unravel_index(ids, grid), axis=1).astype(np.int64)


def _edge_keys(v: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """A unique id per grid edge for vertices ``v`` (n, 3) lying strictly inside grid edges.

    Two coordinates of such a vertex are integers (exactly: PyMCubes converts integer
    node positions) and one is fractional, kept ``NUDGE_VOXELS`` away from integers.
    """
    rounded = np.rint(v)
    axis = np.abs(v - rounded).argmax(axis=1)                 # (n,) the fractional coordinate
    base = rounded.astype(np.int64)
    rows = np.arange(len(v))
    base[rows, axis] = np.floor(v[rows, axis]).astype(np.int64)
    return np.ravel_multi_index(base.T, tuple(shape)) * 3 + axis
