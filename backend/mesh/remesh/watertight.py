"""Watertight remeshing: a closed, manifold, outward-oriented surface hugging any triangle soup.

Method
------
The input is only ever asked "how far is this point from you, and which face is nearest?",
so holes, flipped or duplicate faces, self-intersections, several parts and zero-thickness
sheets do not matter.

1. **Normalize.** :meth:`Normalization.fit` on the vertices the faces use puts the mesh into
   the canonical box; the grid of resolution ``res`` has nodes ``-1 + i * h``, ``h = 2 / res``.
   Only a window of that lattice around the mesh is addressed, and of that window only the
   *band blocks* (:mod:`backend.mesh.remesh.blocks`): the ``8^3``-node blocks within
   ``reach = eps + REACH_VOXELS * h`` of a triangle. Every other block is one value.
2. **Unsigned distance in the shell** (:func:`backend.mesh.remesh.distance.narrow_band_blocks`):
   exact point-triangle distance ``udf`` and a nearest face at the nodes within ``eps`` of
   some triangle (the *shell*, ``eps = SHELL_VOXELS * h``), ``+inf`` at the other band
   nodes. Nothing farther needs a distance: outside the shell only signs matter (step 5).
3. **The shell is a wall.** Since ``eps > h / 2``, any grid edge that crosses the input has
   an end in the shell, so no 6-connected path of non-shell nodes gets through the surface
   whatever the input's defects. Holes and gaps narrower than about ``2 eps`` are sealed.
4. **Regions** (:func:`backend.mesh.remesh.blocks.label_free`): 6-connected components of the
   non-shell nodes, labelled node by node only in blocks that hold a shell node, whole
   blocks elsewhere, joined across block faces. The region of the window's corner (beyond
   the reach) is *outside*. With ``cavities="fill"`` it is the only *empty* region; every
   other region is solid, so hidden inner parts and cavities are filled. With
   ``cavities="keep"`` each region gets a winding number: walls between regions (the pairs
   of regions found on the two sides of a shell node in step 5) step it by +-1 by a
   majority vote on the nearest faces' winding, carried from outside along a breadth-first
   tree; regions of winding 0 are empty (nonzero rule).
5. **Signing the shell, node by node.** A shell node ``x`` at distance ``d`` with nearest
   surface point ``c`` looks along ``n = (x - c) / d``: the probes ``c + n L`` and
   ``c - n L`` (``L = eps + h``, a voxel past the shell, retried one more voxel out when the
   probe lands in the shell) fall in a region on each side of the surface at ``c``. An
   ahead probe still lost in front of its face (by the face's winding; near a concave crease
   the other face's shell is in the way) takes the nearest non-shell node in a cone around
   ``n`` within ``CONE_MAX_VOXELS``: empty space opens diagonally out of a crease, while a
   gap narrower than the shell shows only the solid beyond its other wall. A behind probe
   still lost (it skims the other face of a wedge near an edge) is answered by the nearest
   face: is its other side seen as empty by some node there?
   *Empty ahead, solid behind*: the outer side, ``+d``. *Empty on both sides*: an open sheet
   (or a part thinner than the probe): ``d - tau``, so every sheet becomes a closed slab of
   half-thickness ``tau = SHEET_VOXELS * h`` (which step 7 thins); these nodes are
   remembered. *Otherwise* (solid ahead, or the ahead probe lost in a sealed hole or gap):
   the inner side, ``-d``; this is what caps holes narrower than the shell and fills gaps.
   Non-shell nodes get ``+eps`` in empty regions and ``-eps`` in solid ones. The field is a
   signed distance to the input wherever the input is a clean closed surface, so its zero
   level lies on the input (no dilation), and every grid edge whose sign changes has a shell
   end. Where the level is off the input (sheets, caps) such an edge may end at a non-shell
   node; those few nodes get their distance to their shell neighbours' nearest faces, so the
   crossing lands in the right place.
6. **Dual contouring** (:mod:`backend.mesh.remesh.dual`) of level 0 on each band block that can
   hold a sign change, over its ``9^3`` nodes (its own and the first layers of the blocks
   above it). Every cut cell has a shell corner, so all its corners lie within
   ``eps + sqrt(3) h`` of the input, inside the band blocks. Values within
   ``NUDGE_VOXELS`` of 0 are pushed off it. Each cut cell gets one vertex per patch of
   marching cubes' case table, placed where the input's tangent planes at the cell's
   crossings meet (creases and corners are kept; ``sharp_features=False``: at the mean
   crossing), and each cut grid edge a quad of the four cells around it, facing from its
   negative end to its positive end: outer surfaces face outward, kept cavities inward
   (negative volume). The window's outer layer is positive, so the surface is closed;
   edges where a pinch of the level joins four faces are separated, so it is manifold.
7. **Onto the input; sheets hug it** (:mod:`backend.mesh.remesh.sheets`): the grid cannot hold a
   slab thinner than ``tau`` without pinholes, but its mesh can be thinner. The vertices of
   cells whose negative corners were mostly signed by the sheet rule move along the
   unsigned distance's gradient to ``SHEET_OFFSET_VOXELS`` (0.05 voxel) from the input,
   each held back as far as keeps every triangle from turning over. Every other vertex
   within ``SNAP_VOXELS`` (0.2 voxel) of the input moves onto its nearest input point under
   the same rule (tangent planes meet a little off a curved surface). Only positions change:
   the surface stays closed, manifold and oriented; caps and fills (signed ``-d``) stay.
8. **Parts**: with ``keep="largest"`` the connected surface enclosing the largest volume
   is kept, with the inward-facing cavity surfaces inside it (by winding number); with
   ``cavities="fill"`` no inward-facing surface is kept at all (a pocket of a few voxels
   signed empty in the solid is the only way to get one).
9. **target_faces** (optional): edge-collapse decimation that keeps the surface closed,
   manifold and oriented (:mod:`backend.mesh.remesh.decimate`), in grid index coordinates.
10. **Back** to index -> canonical -> the caller's frame with :meth:`Normalization.invert`.

Cost
----
Every step works on the band blocks, whose node count grows with the surface's area
(``res^2``), plus a coarse grid of ``(res / 8)^3`` block labels: at resolution 512 a typical
mesh has ~2 x 10^4 band blocks (10^7 nodes, ~1 x 10^6 in the shell) in a window of ~7 x 10^7
nodes. The per-node and per-vertex loops (the distance pass, the probes, step 5's exact
crossings, and the mesher's cut cells, quads, tangent planes, vertices and triangles) run
as compiled kernels (:mod:`backend.mesh.native`) that release the GIL; the distance pass
and the probes split over threads (:func:`backend.mesh.parallel.run_threads`,
``MESHSMITH_WORKERS`` of them). Without the compiled kernels the same steps run on numpy,
split over worker processes. ``python -m backend bench watertight`` measures it against
Blender's voxel remesher.

Memory: a band node costs 12 bytes that live through meshing (the field, its nearest face,
and the mesher's int32 first vertex of each cut cell), plus its region label (int32) up
to signing; the per-shell-node arrays of signing live only in :func:`_sign`, the mesher
drops each per-edge array once used, and big lookups and sums run by chunks. At
resolution 512 the whole process peaks at 470-520 MB on the bench meshes (distance pass:
one minimum per thread; mesher: 104 bytes per vertex of QEF sums).

Limits
------
- Parts thinner than about ``2 (eps + h)`` look like sheets from both sides and come back
  ``SHEET_OFFSET_VOXELS`` out on each side (step 7); walls between ``2 tau`` and that may
  come out hollow. A sheet's concave creases keep a chamfer (a chord between the two
  faces' offsets), and small holes in a sheet come back as polygons of few sides.
- Holes wider than about ``2 eps`` (2.2 voxels) are not capped: the part becomes a slab
  around the open surface (still closed). A lower resolution seals wider holes.
- ``cavities="keep"`` trusts the majority winding of each wall; a wall whose faces are
  mostly flipped inverts the winding of what lies behind it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from backend.conventions import Normalization
from backend.mesh import native, parallel
from backend.mesh.remesh.blocks import BLOCK, BlockGrid, Grid, label_free, padded_window
from backend.mesh.remesh.distance import narrow_band_blocks
from backend.mesh.remesh.sheets import SHEET_OFFSET_VOXELS, SNAP_VOXELS, hug_sheets
from backend.mesh.triangles import TriangleFrames, point_triangle_distance, triangle_params
from backend.progress import ProgressFn, null_progress, subrange

log = logging.getLogger(__name__)

#: Shell half-thickness ``eps`` in voxels. It must exceed 0.5 so the shell has no leak along
#: grid edges; larger values seal wider holes and gaps (up to about ``2 eps``) but merge
#: parts that are closer than that and cost a wider band.
SHELL_VOXELS = 1.1

#: Probes start this many voxels past the shell: a probe ``eps + PROBE_VOXELS * h`` from a
#: flat surface has its nearest node at least ``eps + 1 - sqrt(3) / 2 > eps`` away, so it
#: lands outside the shell unless other input is near.
PROBE_VOXELS = 1.0

#: Half-thickness ``tau`` of the slab the field makes of an open sheet, in voxels (step 7
#: then moves its vertices to ``SHEET_OFFSET_VOXELS``). Along a grid edge crossing a
#: flat sheet one end is within ``h / 2``, so above 0.5 the slab has a node on every crossing
#: edge; but a cell face whose diagonal crosses the sheet can have only its two other
#: corners inside the slab, an ambiguous face marching cubes may open: a pinhole. That needs
#: the diagonal (``sqrt(2) h`` long) to span ``2 tau``, so ``tau > sqrt(2) / 2`` rules it
#: out (0.55 gave a curved sheet at resolution 128 genus ~5000; 0.72 and up, none). The
#: margin above 0.707 covers curvature. The result does not keep this thickness (step 7).
SHEET_VOXELS = 0.75

#: An ahead probe lost in the shell (a concave crease, a gap) is retried on the lattice nodes
#: between these distances (voxels) within this cone (cosine) around its direction.
CONE_MIN_VOXELS, CONE_MAX_VOXELS, CONE_COS = 1.5, 3.5, 0.35

#: Nodes closer than this many voxels to the input look along their face's normal (step 5).
ON_SURFACE_VOXELS = 1e-6

#: Field values are kept at least this many voxels away from the level 0, so every
#: marching-cubes vertex lies strictly inside its grid edge (by about this fraction).
NUDGE_VOXELS = 1e-3

#: Allowed ``resolution`` range, as the HTTP schema also states.
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024

#: Band blocks reach this many voxels past the shell: a cell with a shell corner has all
#: corners within ``eps + sqrt(3) h`` of the input, and marching cubes reads all of them.
REACH_VOXELS = 1.75

#: Shell nodes whose nearest point is computed at once (the kernel holds ~30 float64
#: temporaries per node).
PROBE_CHUNK = 1 << 16

#: Shell nodes per worker process below which probing runs in one process
#: (:mod:`backend.mesh.parallel`): a fork costs milliseconds.
PARALLEL_MIN_PROBES = 1 << 18

Keep = Literal["all", "largest"]
Cavities = Literal["fill", "keep"]
Sheets = Literal["hug", "slab"]


@dataclass(frozen=True)
class WatertightResult:
    """A watertight remesh, in the caller's frame and scale.

    Attributes
    ----------
    vertices : (n, 3) float64
    faces : (m, 3) int64
        Every edge in exactly two faces; outer surfaces wind counter-clockwise seen from
        outside (positive volume), kept cavities the other way (negative volume).
    resolution : int
        Grid cells across the canonical cube; the input's longest side spans 0.95 of it.
    voxel_size : float
        Grid spacing ``h`` in the caller's units.
    sheet_half_thickness : float
        Open sheets (and parts thinner than the probes) come back as shells this far out on
        each side of the input (``SHEET_OFFSET_VOXELS`` voxels), but where that would fold
        the surface.
    """

    vertices: np.ndarray
    faces: np.ndarray
    resolution: int
    voxel_size: float
    sheet_half_thickness: float


def watertight(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    resolution: int = 128,
    keep: Keep = "all",
    cavities: Cavities = "fill",
    sheets: Sheets = "hug",
    target_faces: int | None = None,
    sharp_features: bool = True,
    progress: ProgressFn = null_progress,
) -> WatertightResult:
    """Remesh any triangle mesh into a closed, manifold, outward-oriented surface.

    Parameters
    ----------
    vertices : (n, 3) float
        Finite coordinates, any frame and scale.
    faces : (m, 3) int
        Indices into ``vertices``; holes, flips, duplicates, degenerate faces are fine.
    resolution : int
        Grid cells across the canonical cube ``[-1, 1]``, in ``[16, 1024]``. Detail grows
        with it; so do time and memory, about quadratically: the work follows the
        surface's area (see the module doc, "Cost").
    keep : {"all", "largest"}
        Every solid, or only the largest by volume (with its cavities).
    cavities : {"fill", "keep"}
        Fill enclosed empty space (hidden inner parts included), or keep it as inner
        surfaces facing into the cavity.
    sheets : {"hug", "slab"}
        Open sheets and parts thinner than the probes come back as shells ``hug``: 0.05 voxel
        (``SHEET_OFFSET_VOXELS``) off each side of the input, or ``slab``: 0.75 voxel
        (``SHEET_VOXELS``) off, a solid at least 1.5 voxels thick (module doc, steps 5 and 7).
    target_faces : int or None
        Decimate to about this many faces (>= 4) by edge collapses that keep the surface
        closed, manifold and oriented (:func:`backend.mesh.remesh.decimate.decimate`); it may stop
        above the target when no collapse is safe. None keeps marching cubes' output.
    sharp_features : bool
        Place each vertex where the input's tangent planes in its cell meet, so creases and
        corners are kept (:mod:`backend.mesh.remesh.dual`). False puts it at the mean of its
        cell's crossings (smoother, slightly faster).
    progress : ProgressFn
        ``progress(fraction, stage)`` between stages and chunks; it may raise
        :class:`backend.progress.Cancelled`, which propagates.

    Returns
    -------
    WatertightResult
        On the input where it is closed; open sheets become shells ``sheet_half_thickness``
        out on each side (see the module docstring).

    Raises
    ------
    ValueError
        Naming the argument: empty or misshapen arrays, wrong dtypes, non-finite
        coordinates, out-of-range indices, a resolution outside ``[16, 1024]``, a mesh
        whose used vertices all coincide, an unknown ``keep``, ``cavities`` or ``sheets``, or a
        ``target_faces`` that is not an integer >= 4.
    """
    vertices, faces, resolution = _check_inputs(vertices, faces, resolution)
    if keep not in ("all", "largest"):
        raise ValueError(f"keep must be 'all' or 'largest', got {keep!r}")
    if cavities not in ("fill", "keep"):
        raise ValueError(f"cavities must be 'fill' or 'keep', got {cavities!r}")
    if sheets not in ("hug", "slab"):
        raise ValueError(f"sheets must be 'hug' or 'slab', got {sheets!r}")
    if target_faces is not None and (isinstance(target_faces, (bool, np.bool_))
                                     or not isinstance(target_faces, (int, np.integer)) or target_faces < 4):
        raise ValueError(f"target_faces must be None or an integer >= 4, got {target_faces!r}")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        timings[stage] = time.perf_counter() - clock - sum(timings.values())

    progress(0.0, "normalizing")
    used = np.unique(faces)
    # Fit to the vertices the faces use: stray unused vertices must not shrink the mesh.
    norm = Normalization.fit(vertices[used])
    canonical = norm.apply(vertices)
    h = 2.0 / resolution
    eps = SHELL_VOXELS * h
    reach = eps + REACH_VOXELS * h
    window = padded_window(Grid.cube(resolution).covering(canonical[used].min(axis=0),
                                                          canonical[used].max(axis=0), reach))
    # The band is the shell itself: outside it only signs matter, except at the few sign
    # changes off the shell, which _exact_at_crossings handles. Blocks reach further, so
    # that every node those steps look at is stored.
    blocks, udf, nearest = narrow_band_blocks(canonical, faces, window, eps, margin=reach,
                                              progress=subrange(progress, 0.02, 0.55))
    lap("distance")

    progress(0.55, "flood fill")
    regions = label_free(blocks, udf >= eps)
    outside = int(regions.at(blocks, np.zeros((1, 3), dtype=np.int64))[0])
    if outside == 0:
        raise RuntimeError("the grid window's corner is in the shell; the window is too small")
    lap("flood fill")

    progress(0.6, "signing")
    field, block_value, sheet_nodes = _sign(udf, nearest, blocks, regions, outside, canonical, faces, eps, cavities)
    del udf, regions                    # the field took the distances' memory; labels are done
    if sheets == "slab":
        sheet_nodes = None
    specks = _remove_specks(field, blocks)
    _exact_at_crossings(field, nearest, blocks, canonical, faces, eps)
    lap("signing")

    mesh_stop = 0.97 if target_faces is None else 0.8
    index_canonical = (canonical - window.origin) / h
    index_vertices, tris = _mesh(field, nearest, blocks, block_value, NUDGE_VOXELS * h, index_canonical,
                                 faces, sharp_features, subrange(progress, 0.7, mesh_stop))
    # Sheets' vertices to their offset (hug), every other vertex near the input onto it.
    hugged = hug_sheets(index_vertices, tris, field, nearest, blocks, sheet_nodes, index_canonical, faces,
                        snap=SNAP_VOXELS)
    del field
    if keep == "largest" or cavities == "fill":
        index_vertices, tris = _select_parts(index_vertices, tris, largest=keep == "largest",
                                             cavities=cavities == "keep")
    lap("meshing")
    del nearest
    if target_faces is not None and len(tris) > target_faces:
        from backend.mesh.remesh.decimate import decimate

        index_vertices, tris = decimate(index_vertices, tris, target_faces, progress=subrange(progress, 0.8, 0.97))
        lap("decimation")

    progress(0.97, "restoring frame")
    out_vertices = norm.invert(window.origin + index_vertices * h)
    log.info(
        "watertight: %d faces -> %d faces at resolution %d, %d band blocks of %d^3 in a window %s, "
        "%d one-node specks flipped, %d vertices moved onto the input (or a sheet's offset); %s",
        len(faces), len(tris), resolution, blocks.count, BLOCK, window.shape, specks, hugged,
        ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()),
    )
    progress(1.0, "remeshed")
    return WatertightResult(
        vertices=out_vertices,
        faces=np.ascontiguousarray(tris, dtype=np.int64),
        resolution=resolution,
        voxel_size=h / norm.scale,
        sheet_half_thickness=(SHEET_OFFSET_VOXELS if sheets == "hug" else SHEET_VOXELS) * h / norm.scale,
    )


def _check_inputs(vertices: object, faces: object, resolution: object) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated ``vertices`` (n, 3) float64, ``faces`` (m, 3) int64 and ``resolution``."""
    if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"resolution must be an integer, got {resolution!r}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution}")
    return (*check_mesh_arrays(vertices, faces), int(resolution))


def check_mesh_arrays(vertices: object, faces: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``vertices`` (n, 3) float64 and ``faces`` (m, 3) int64; ValueError naming the problem."""
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
    return v, f.astype(np.int64, copy=False)


def _sign(udf: np.ndarray, nearest: np.ndarray, blocks: BlockGrid, regions, outside: int, vertices: np.ndarray,
          faces: np.ndarray, eps: float, cavities: Cavities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 5: the signed field (written over ``udf``), the value of every block outside the
    band (Cx * Cy * Cz,) float32, and the sorted band positions (s,) int64 of the shell nodes
    signed as sheets.

    The per-shell-node arrays live only in here, so that they are gone before the mesher,
    the engine's peak of memory, runs.
    """
    shell = np.flatnonzero(udf.reshape(-1) < eps)                 # band-node positions
    shell_face = nearest.reshape(-1)[shell].astype(np.int64)
    ahead, behind, facing = _probe_regions(vertices, faces, blocks, regions, blocks.node_ijk(shell), shell_face, eps)
    empty = _empty_regions(outside, regions.count, ahead, behind, facing, cavities)
    behind_empty = _behind_empty(empty, ahead, behind, facing, shell_face, len(faces))
    del behind, facing, shell_face
    h = blocks.grid.spacing
    field, sheet = _signed_field(udf, regions.node, empty, shell, udf.reshape(-1)[shell], ahead, behind_empty,
                                 SHEET_VOXELS * h, eps)
    block_value = np.where(empty[regions.block], np.float32(eps), np.float32(-eps))
    return field, block_value, shell[sheet]


def _probe_regions(vertices: np.ndarray, faces: np.ndarray, blocks: BlockGrid, regions, ijk: np.ndarray,
                   face: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regions (k,) int32 ahead of and behind each shell node (module doc, step 5); 0 = lost.

    Also returns ``facing`` (k,) int8: +1 when the node is in front of its nearest face
    (by the face's winding), -1 behind, 0 for a degenerate face or a node on the input.

    Parameters
    ----------
    vertices : (n, 3) float64
        In the grid's coordinates.
    faces : (m, 3) int64
    blocks : BlockGrid
    regions : backend.mesh.remesh.blocks.Regions
        The flood fill's labels.
    ijk : (k, 3) int64
        The shell nodes' grid indices.
    face : (k,) int64
        A nearest face of each.
    """
    grid = blocks.grid
    h = grid.spacing
    if native.available():
        # Threads (the kernel releases the GIL), each writing its own chunks of rows.
        ahead, behind = np.empty(len(ijk), dtype=np.int32), np.empty(len(ijk), dtype=np.int32)
        facing = np.empty(len(ijk), dtype=np.int8)

        def native_part(part: int, parts: int) -> None:
            for i in range(part * PROBE_CHUNK, len(ijk), parts * PROBE_CHUNK):
                rows = slice(i, i + PROBE_CHUNK)
                native.probe_regions(ijk[rows], face[rows], vertices, faces, grid.origin, h, grid.shape,
                                     regions.node, regions.block, blocks.slot, blocks.coarse_shape, eps, PROBE_VOXELS,
                                     ON_SURFACE_VOXELS, _CONE, CONE_COS, ahead[rows], behind[rows], facing[rows])

        parallel.run_threads(native_part, parallel.parts_for(len(ijk), PARALLEL_MIN_PROBES))
        return ahead, behind, facing
    # Written in place by worker processes (chunks dealt round-robin), read here.
    ahead = parallel.shared_array(len(ijk), np.int32)
    behind = parallel.shared_array(len(ijk), np.int32)
    facing = parallel.shared_array(len(ijk), np.int8)

    def region_at(points: np.ndarray) -> np.ndarray:
        return regions.at(blocks, np.rint((points - grid.origin) / h).astype(np.int64))

    x = grid.origin + ijk * h
    # Per-face constants once; each node gathers its face's (no per-node cross products).
    frames = TriangleFrames.from_corners(vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]])
    normal = np.cross(frames.ab, frames.ac)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = np.where(length > 0, normal / np.where(length > 0, length, 1.0), 0.0)

    def probe(part: int, parts: int) -> None:
        for i in range(part * PROBE_CHUNK, len(x), parts * PROBE_CHUNK):
            rows = slice(i, i + PROBE_CHUNK)
            fi = face[rows]
            fr = frames.take(fi)
            ap = x[rows] - fr.a
            s, t = triangle_params(ap, fr)
            away = ap - s[:, None] * fr.ab - t[:, None] * fr.ac                     # x - c
            # The distance from this float64 offset, not the band's float32 one: on a large
            # face that is off by ~1e-6 of the face's size, and the two must agree here.
            di = np.linalg.norm(away, axis=1)
            n = away / np.maximum(di, 1e-12 * h)[:, None]
            # A node on the input (lattice-aligned input) has no direction of its own: it
            # looks along its face's normal, so that on a sheet it still gets -tau, not -0.
            on = di <= ON_SURFACE_VOXELS * h
            n[on] = unit[fi[on]]
            facing[rows] = np.sign(np.einsum("ij,ij->i", n, unit[fi])).astype(np.int8)
            c = x[rows] - away
            for out, sign in ((ahead, 1.0), (behind, -1.0)):
                found = np.zeros(len(fi), dtype=np.int32)
                for reach in (eps + PROBE_VOXELS * h, eps + (PROBE_VOXELS + 1.0) * h):
                    lost = np.flatnonzero(found == 0)
                    found[lost] = region_at(c[lost] + sign * reach * n[lost])
                if sign > 0:
                    lost = np.flatnonzero((found == 0) & (facing[rows] > 0))
                    found[lost] = _cone_search(x[rows][lost], n[lost], region_at, h)
                out[rows] = found

    parallel.run_parts(probe, parallel.parts_for(len(x), PARALLEL_MIN_PROBES))
    return ahead, behind, facing


def _cone_offsets() -> np.ndarray:
    """Lattice offsets (k, 3) with ``CONE_MIN_VOXELS <= |o| <= CONE_MAX_VOXELS``, nearest first."""
    r = int(np.ceil(CONE_MAX_VOXELS))
    o = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    length = np.linalg.norm(o, axis=1)
    keep = (length >= CONE_MIN_VOXELS) & (length <= CONE_MAX_VOXELS)
    order = np.argsort(length[keep], kind="stable")
    return o[keep][order].astype(np.float64)


_CONE = _cone_offsets()


def _cone_search(x: np.ndarray, n: np.ndarray, region_at, h: float) -> np.ndarray:
    """Region (k,) int32 of the nearest non-shell node ahead of each node ``x`` (k, 3), 0 if none.

    "Ahead" is the cone of half-angle ``acos(CONE_COS)`` around ``n``. A node in the corner
    of a concave crease has its ahead probe lost in the other face's shell, but empty space
    opens diagonally; a node in a gap narrower than the shell finds only the solid beyond
    the opposite wall, so gaps stay sealed (see step 5).
    """
    out = np.zeros(len(x), dtype=np.int32)
    if not len(x):
        return out
    unit = _CONE / np.linalg.norm(_CONE, axis=1, keepdims=True)
    node, offset = np.nonzero(n @ unit.T >= CONE_COS)                 # pairs, nearest offsets first per node
    if not len(node):
        return out
    region = region_at(x[node] + _CONE[offset] * h)
    hit = np.flatnonzero(region > 0)
    first = np.unique(node[hit], return_index=True)[1]                 # first hit per node (offsets sorted)
    out[node[hit][first]] = region[hit][first]
    return out


def _empty_regions(outside: int, count: int, ahead: np.ndarray, behind: np.ndarray, facing: np.ndarray,
                   cavities: Cavities) -> np.ndarray:
    """Mask (count + 1,) bool of the empty regions; entry 0 (the shell, a lost probe) is False.

    With ``cavities="keep"``, a region is empty when its winding number is 0. Each wall
    between two regions (seen by the probes of its shell nodes) changes the winding number
    by +-1, decided by a vote of those nodes on their nearest face's winding, so a minority
    of flipped faces does not matter; numbers are carried from outside (0) along a
    breadth-first tree of walls. Hollow shapes whose inner surface faces inward keep their
    cavity; overlapping parts and same-wound nested shells stay solid (nonzero rule).
    Regions no wall connects to outside stay solid.
    """
    empty = np.zeros(count + 1, dtype=bool)
    empty[outside] = True
    if cavities == "fill" or count == 1:
        return empty
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order

    wall = (ahead > 0) & (behind > 0) & (ahead != behind)
    a, b, vote = ahead[wall].astype(np.int64), behind[wall].astype(np.int64), facing[wall].astype(np.float64)
    # In front of a face is its outside: stepping from the region ahead to the one behind
    # enters the solid, +1. Votes are kept for the pair (lo, hi) in that direction.
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    vote = np.where(a == lo, vote, -vote)
    pairs, inverse = np.unique(lo * (count + 1) + hi, return_inverse=True)
    step = np.where(np.bincount(inverse, vote) >= 0, 1, -1)                          # lo -> hi
    lo, hi = pairs // (count + 1), pairs % (count + 1)
    graph = coo_matrix((np.ones(len(pairs)), (lo, hi)), shape=(count + 1, count + 1)).tocsr()
    order, parent = breadth_first_order(graph, outside, directed=False, return_predecessors=True)
    lookup = dict(zip(zip(lo.tolist(), hi.tolist()), step.tolist()))
    winding = np.zeros(count + 1, dtype=np.int64)
    for region in order[1:].tolist():
        up = int(parent[region])
        winding[region] = winding[up] + (lookup[(up, region)] if up < region else -lookup[(region, up)])
    empty[order] = winding[order] == 0
    empty[0] = False
    return empty


def _behind_empty(empty: np.ndarray, ahead: np.ndarray, behind: np.ndarray, facing: np.ndarray,
                  shell_face: np.ndarray, face_count: int) -> np.ndarray:
    """Whether the side of the surface behind each shell node (k,) is empty.

    The behind probe answers when it found a region. It is lost (in the shell) mostly near
    edges, where it skims the other face of a wedge; then the nearest face answers for the
    side the node is not on: that side is empty when some node on it, nearest to the same
    face, saw empty space ahead. This keeps a convex edge of a solid unthickened and an
    edge of an open sheet joined. Nodes of degenerate faces (no side) count as empty behind.
    """
    empty_ahead = empty[ahead]
    front = np.zeros(face_count, dtype=bool)
    back = np.zeros(face_count, dtype=bool)
    front[shell_face[(facing > 0) & empty_ahead]] = True
    back[shell_face[(facing < 0) & empty_ahead]] = True
    other_side = np.where(facing > 0, back[shell_face], np.where(facing < 0, front[shell_face], True))
    return np.where(behind > 0, empty[behind], other_side)


def _signed_field(udf: np.ndarray, regions: np.ndarray, empty: np.ndarray, shell: np.ndarray, d: np.ndarray,
                  ahead: np.ndarray, behind_empty: np.ndarray, tau: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The (nb, BLOCK^3) float32 field of the band nodes, whose level 0 is the result (step 5),
    and which shell nodes (k,) bool were signed as sheets (``d - tau``).

    Non-shell nodes get ``+-eps`` here (the blocks outside the band get the same from their
    region); :func:`_exact_at_crossings` then gives the ones at a sign change their distance.
    ``udf`` is overwritten: it becomes the field.
    """
    # Written over ``udf``, whose shell values were read out already: no new big array. By
    # chunks: np.take converts the int32 labels to int64 first (twice the field's size at
    # once). mode="wrap" (the labels are in range anyway) is the fast one.
    field, value_of = udf, np.where(empty, np.float32(eps), np.float32(-eps))
    flat_field, flat_regions = field.reshape(-1), regions.reshape(-1)
    for start in range(0, len(flat_field), TAKE_CHUNK):
        part = slice(start, start + TAKE_CHUNK)
        np.take(value_of, flat_regions[part], out=flat_field[part], mode="wrap")
    empty_ahead = empty[ahead]
    sheet = empty_ahead & behind_empty
    log.debug("signing: %d of %d shell nodes see empty space on both sides; %d lost ahead",
              np.count_nonzero(sheet), len(d), np.count_nonzero(ahead == 0))
    value = np.where(sheet, d - tau, np.where(empty_ahead, d, -d))
    field.reshape(-1)[shell] = value
    return field, sheet


#: Band nodes per chunk of :func:`_signed_field`'s region lookup.
TAKE_CHUNK = 1 << 20


#: The 6 grid steps, as (6, 3) index offsets.
_STEPS = np.concatenate([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])


def _remove_specks(field: np.ndarray, blocks: BlockGrid) -> int:
    """Flip, in place, nodes whose sign differs from all 6 neighbours; returns how many.

    Such a node is a solid (or a hole) of one node, smaller than the grid can hold: marching
    cubes would make it an 8-face speck. They come from shell nodes whose probes disagree
    with their neighbours' in slots about as wide as the shell. Neighbours in blocks outside
    the band are not counted (such a node is kept: conservative).
    """
    b, nb = BLOCK, blocks.count
    negative = (field < 0).reshape(nb, b, b, b)
    differ = np.zeros((nb, b, b, b), dtype=np.int8)
    for axis in range(3):
        lo = (slice(None),) * (axis + 1) + (slice(0, b - 1),)
        hi = (slice(None),) * (axis + 1) + (slice(1, b),)
        change = (negative[lo] != negative[hi]).view(np.int8)
        differ[lo] += change
        differ[hi] += change
        up_slot = blocks.neighbours(np.eye(3, dtype=np.int64)[axis])[2]
        has = np.flatnonzero(up_slot >= 0)
        far = (slice(None),) * (axis + 1) + (b - 1,)
        near = (slice(None),) * (axis + 1) + (0,)
        change = (negative[far][has] != negative[near][up_slot[has]]).view(np.int8)
        differ[far][has] += change                  # rows are unique: plain fancy += is exact
        differ_near = differ[near]
        differ_near[up_slot[has]] += change
    speck = np.flatnonzero(differ.reshape(-1) == 6)
    field.reshape(-1)[speck] *= -1
    return len(speck)


def _exact_at_crossings(field: np.ndarray, nearest: np.ndarray, blocks: BlockGrid,
                        vertices: np.ndarray, faces: np.ndarray, eps: float) -> None:
    """Give non-shell nodes on a sign-changing grid edge their distance, in place.

    Along a grid edge that crosses a clean surface both ends are within ``h < eps`` of it,
    so both are shell nodes with exact values. Where the level 0 is not on the input
    (sheets offset by ``tau``, capped holes) an edge from a shell node may change sign at a
    non-shell node, whose ``+-eps`` would misplace the marching-cubes vertex. Such a node
    gets its distance to the nearest faces of its shell neighbours on those edges (exact
    where one of them is its nearest face; never below ``eps``, as it is outside the shell).

    Non-shell values are exactly ``+-eps`` and shell values never are, so the edges are found
    by comparing each band block with itself shifted by one node, and its far faces with the
    next block's near faces; that next block is in the band, as the shell end is within
    ``eps + h`` of the input. Two non-shell ends never differ in sign (one region).
    """
    if native.available():
        native.exact_at_crossings(field, nearest, blocks.slot, blocks.coarse_shape, blocks.blocks, vertices, faces,
                                  blocks.grid.origin, blocks.grid.spacing, eps)
        return
    b, nb = BLOCK, blocks.count
    flat = field.reshape(-1)
    # Per node: bit 0 "negative", bit 1 "off the shell" (exactly +-eps). An edge to fix has
    # both bits different at its two ends: code_0 ^ code_1 == 3.
    code = (field < 0).view(np.int8)
    code |= (np.abs(field) == np.float32(eps)).view(np.int8) << 1
    code = code.reshape(nb, b, b, b)
    nodes, candidate = [], []
    for axis in range(3):
        # Within blocks: each node and the next one along the axis.
        lo = (slice(None),) * (axis + 1) + (slice(0, b - 1),)
        hi = (slice(None),) * (axis + 1) + (slice(1, b),)
        step = np.zeros(4, dtype=np.int64)
        step[axis + 1] = 1
        hit = np.argwhere((code[lo] ^ code[hi]) == 3)                                  # (k, 4)
        ends = [np.ravel_multi_index(hit.T, code.shape), np.ravel_multi_index((hit + step).T, code.shape)]
        # Across block seams: a block's far face and the near face of the band block above.
        up_slot = blocks.neighbours(np.eye(3, dtype=np.int64)[axis])[2]
        has = np.flatnonzero(up_slot >= 0)
        far = (slice(None),) * (axis + 1) + (b - 1,)
        near = (slice(None),) * (axis + 1) + (0,)
        seam = np.argwhere((code[far][has] ^ code[near][up_slot[has]]) == 3)             # (k, 3): row, 2 coords
        rows = seam[:, 0]
        far_ijk = np.insert(seam[:, 1:], axis, b - 1, axis=1)
        near_ijk = np.insert(seam[:, 1:], axis, 0, axis=1)
        ends[0] = np.concatenate([ends[0], np.ravel_multi_index((has[rows], *far_ijk.T), code.shape)])
        ends[1] = np.concatenate([ends[1], np.ravel_multi_index((up_slot[has[rows]], *near_ijk.T), code.shape)])
        first_off = (code.reshape(-1)[ends[0]] & 2) > 0
        nodes.append(np.where(first_off, ends[0], ends[1]))
        candidate.append(nearest.reshape(-1)[np.where(first_off, ends[1], ends[0])])
    nodes, candidate = np.concatenate(nodes), np.concatenate(candidate).astype(np.int64)
    if len(nodes) == 0:
        return
    tri = vertices[faces[candidate]]
    x = blocks.grid.origin + blocks.node_ijk(nodes) * blocks.grid.spacing
    d = point_triangle_distance(x, tri[:, 0], tri[:, 1], tri[:, 2])
    unique, inverse = np.unique(nodes, return_inverse=True)
    best = np.full(len(unique), np.inf)
    np.minimum.at(best, inverse, d)
    flat[unique] = np.copysign(np.maximum(best, eps), flat[unique]).astype(np.float32)


def _select_parts(vertices: np.ndarray, faces: np.ndarray, *, largest: bool, cavities: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The outer surfaces (all, or the one of largest enclosed volume), and with ``cavities``
    the inward-facing surfaces inside them.

    Components are joined by shared vertices (the surface is manifold); a component's
    signed volume tells outer (positive) from inward-facing (negative). Without
    ``cavities`` no inward-facing surface stays: with cavities filled, one can only be a
    pocket of a few voxels whose nodes were signed empty (seen on a cartoon head and a
    teapot: closed shells of 20 faces, 2 voxels). With ``cavities`` one stays when its first
    vertex lies inside a kept outer surface, by its winding number.
    """
    from backend.mesh.sampling import winding_number

    count, part = _components(len(vertices), faces)
    if count <= 1:
        return vertices, faces
    # Signed volume per component, a chunk of faces at a time (the mesh has millions).
    volume = np.zeros(count)
    for start in range(0, len(faces), PARTS_CHUNK):
        a, b, c = (vertices[faces[start:start + PARTS_CHUNK, k]] for k in range(3))
        volume += np.bincount(part[start:start + PARTS_CHUNK], np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0,
                              minlength=count)
    keep_part = volume > 0
    if largest:
        keep_part[:] = False
        keep_part[int(volume.argmax())] = True
    inward = np.flatnonzero(volume < 0)
    if cavities and len(inward) and keep_part.any():
        first_face = np.unique(part, return_index=True)[1]       # per component
        probes = vertices[faces[first_face[inward], 0]]
        outer = faces[keep_part[part]]
        keep_part[inward] = np.abs(winding_number(vertices, outer, probes)) > 0.5
    kept = keep_part[part]
    if kept.all():
        return vertices, faces
    faces = faces[kept]
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.reshape(-1)] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


#: Faces per chunk of :func:`_select_parts`' volume sums.
PARTS_CHUNK = 1 << 18


def _components(vertex_count: int, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of a mesh whose vertices are all used: their count and the
    component (m,) int32 of each face. Two edges per face join its corners; int32 indices
    and int8 weights keep the graph at 9 bytes per edge."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    start = np.concatenate([faces[:, 0], faces[:, 1]]).astype(np.int32)
    end = np.concatenate([faces[:, 1], faces[:, 2]]).astype(np.int32)
    graph = coo_matrix((np.ones(len(start), dtype=np.int8), (start, end)), shape=(vertex_count, vertex_count))
    del start, end
    count, labels = connected_components(graph, directed=False)
    return int(count), labels[faces[:, 0]]


#: The 7 blocks above a block that its ``(BLOCK + 1)^3`` window reaches.
_UPPER = [o for o in np.ndindex(2, 2, 2) if any(o)]


def _mesh(field: np.ndarray, nearest: np.ndarray, blocks: BlockGrid, block_value: np.ndarray, nudge: float,
          input_vertices: np.ndarray, faces: np.ndarray, sharp: bool, progress: ProgressFn
          ) -> tuple[np.ndarray, np.ndarray]:
    """The surface ``field == 0`` (module doc, step 6), by :func:`backend.mesh.remesh.dual.dual_contour`.

    Each band block is meshed with its ``(BLOCK + 1)^3`` nodes: its own and the first
    layers of the blocks above it (from their rows, or their one value outside the band).
    Every sign change has a shell end, and every cell with a shell corner has all corners
    within ``eps + sqrt(3) h`` of the input, so in band blocks: cells outside them are
    never cut. Blocks whose nodes, and those of the blocks above them, all have one sign
    are skipped.

    Parameters
    ----------
    field : (nb, BLOCK^3) float32
        Negative inside; nudged in place so that no value is within ``nudge`` of 0.
    nearest : (nb, BLOCK^3) int32
        Nearest input face of each band node, -1 off the shell.
    block_value : (Cx * Cy * Cz,) float32
        The value of every node of each block outside the band; beyond the grid is outside.
    input_vertices : (n, 3) float64
        The input in grid index coordinates.

    Returns
    -------
    vertices : (n, 3) float64
        In grid index coordinates.
    faces : (m, 3) int64
        Outer surfaces counter-clockwise seen from outside.
    """
    from backend.mesh.remesh.dual import dual_contour

    b, nb = BLOCK, blocks.count
    # Nudge (in place): every value at least ``nudge`` from 0, 0 itself counting as inside.
    # Values off the shell are +-eps, so only shell rows can be that close.
    small = np.flatnonzero(np.abs(field.reshape(-1)) < nudge)
    field.reshape(-1)[small] = np.where(field.reshape(-1)[small] <= 0, -nudge, nudge)
    # A block can hold a cut cell only if its nodes, or those of the 7 blocks above it that
    # its cells reach, are not all of one sign.
    negative = np.count_nonzero(field < 0, axis=1)
    state = np.where(negative == 0, 0, np.where(negative == b ** 3, 2, 1))        # all +, mixed, all -
    block_state = np.where(block_value < 0, 2, 0)
    uppers = []
    for offset in _UPPER:
        inside, up_id, up_slot = blocks.neighbours(offset)
        up_state = np.where(up_slot >= 0, state[up_slot], np.where(inside, block_state[up_id], 0))
        uppers.append((offset, inside, up_id, up_slot, up_state))
    varied = (state == 1) | np.any([u[4] != state for u in uppers], axis=0)
    rows = np.flatnonzero(varied)
    outside_value = np.float32(abs(block_value).max(initial=1.0))

    def windows(batch: np.ndarray) -> np.ndarray:
        """(len(batch), BLOCK + 1, BLOCK + 1, BLOCK + 1) field values of band blocks ``rows[batch]``."""
        own = field.reshape(nb, b, b, b)
        ext = np.empty((len(batch), b + 1, b + 1, b + 1), dtype=field.dtype)
        ext[:, :b, :b, :b] = own[rows[batch]]
        for offset, inside, up_id, up_slot, _ in uppers:
            dst = tuple(b if o else slice(0, b) for o in offset)
            src = tuple(0 if o else slice(0, b) for o in offset)
            up_slot, inside, up_id = up_slot[rows[batch]], inside[rows[batch]], up_id[rows[batch]]
            stored = np.flatnonzero(up_slot >= 0)
            ext[(stored,) + dst] = own[(up_slot[stored],) + src]
            other = np.flatnonzero(up_slot < 0)
            value = np.where(inside[other], block_value[up_id[other]], outside_value)
            ext[(other,) + dst] = value.reshape((-1,) + (1,) * (3 - sum(offset)))
        return ext

    return dual_contour(field, nearest, blocks, rows, windows, input_vertices, faces, sharp=sharp,
                        progress=progress, block_value=block_value, outside_value=outside_value)
