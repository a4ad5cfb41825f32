"""Artist topology: any triangle mesh in, a clean quad-dominant (or pure-quad, or triangle) mesh at a face budget out.

Method
------
1. **Normalize and weld.** The mesh goes into the canonical box (``backend.conventions``);
   vertices closer than :data:`WELD_TOLERANCE` are merged (files split vertices along UV
   seams), degenerate and duplicate triangles dropped.
2. **Reference surface.** A welded mesh that is already consistently wound, with every edge
   in at most two faces, is used as it is, open borders included: Instant Meshes follows
   borders, while a watertight slab around an open sheet would be thinner than the quads
   (vertices where two fans touch are split first). A mesh with a few bad edges (fins,
   faces wound backwards: at most :data:`MAX_MENDED_FRACTION` of its faces on them, and
   no finer than the watertight reference would be) is mended in place
   (:func:`backend.mesh.retopo.repair.mend`) and used the same way. Anything else (flips,
   fins, duplicate sheets) is remeshed by the watertight engine
   (:func:`backend.mesh.remesh.watertight.watertight`) at a resolution that fits the face budget: the target edge length is
   ``s = sqrt(area / target_faces)`` and the grid gets :data:`VOXELS_PER_EDGE` voxels per
   ``s`` (clamped to :data:`AUTO_RESOLUTION`), so a 2,000-face result does not pay for a
   512 grid. With sharp edges on, the engine puts vertices on creases
   (``sharp_features=True``) so that they survive as creases of the reference.
3. **Field-aligned quads.** Instant Meshes (Jakob et al. 2015, the ``pyinstantmeshes``
   binding) optimizes a 4-RoSy orientation field and a 4-PoSy position field on the
   reference and extracts a quad-dominant mesh whose edges follow them. With
   ``sharp_angle`` set, reference edges whose dihedral angle exceeds it are creases: the
   field aligns to them and crease vertices are left out of its smoothing.
   It splits every input edge longer than half its edge by longest-edge bisection, which
   leaves a coarse reference with several times the vertices it needs (the teapot at 5,000
   quads: 78,000), and its time and its layout's tidiness follow them: a coarse reference is
   first remeshed isotropically at :data:`ISOTROPIC_EDGE` of its edge, creases and borders kept
   as rows of edges and the input's vertices where they are (:func:`instant_meshes_input`,
   compiled).
   Its crease mode gives up on some meshes (long slivers along creases: it returns a small
   fraction of the faces asked for); it then runs again without it. Separate parts it
   dropped for being smaller than a quad are remeshed alone and added (:class:`_Parts`).
   Parts thinner than an edge (a chair's wire legs) survive it as strips one quad round,
   which step 4 takes apart: after it, a part whose pieces cover less than half its area
   loses them and is remeshed alone with about four quads round its thickness, and pieces
   far smaller than another on the same part are dropped as scraps, so every part comes back
   as one piece (:meth:`_Parts.restore_thin`).
4. **Repair** (:func:`backend.mesh.retopo.repair.repair`): faces of 5+ corners cut into quads
   and a triangle, short edges collapsed, duplicates, fins (edges in 3+ faces), pinched
   vertices, inconsistent winding, holes and valence-2 vertices fixed. On an open
   reference a boundary loop longer than a small hole stays open only where it follows the
   reference's own borders (:class:`_Borders`); elsewhere it is a tear and is closed.
5. **Creases snapped.** Instant Meshes lines its vertex rows up with creases but leaves them
   up to a fraction of an edge off, which bevels every sharp edge. Reference faces are
   grouped into *patches* bounded by sharp edges; each output polygon takes the patch under
   its centroid; a vertex whose polygons see two patches moves to the nearest point of the
   creases between those two; each crease corner (where three or more patches meet) takes
   the nearest vertex that sees only its patches. Strips narrower than
   :data:`THIN_PATCH_EDGES` edges hold no row of vertices, so polygons over them do not
   count; a vertex whose patches share no crease (a strip lies between them) moves to the
   nearest *convex* crease of a patch it sees, which keeps the outline (CesiumMilkTruck's
   lower lip: masked PSNR of its baked 2,000-face mesh 22.9 -> 24.9 dB). Moves longer than
   :data:`MAX_SNAP_EDGES` edge lengths (:data:`MAX_CORNER_SNAP_EDGES` for corners) are
   skipped, and a move that flips or flattens a polygon is undone. Where the creases would add up
   to more than :data:`CREASE_SHARE` of the layout's edge length (a low-poly head faceted at
   30 degrees), only the sharpest count, up to that share (:func:`crease_angle_within`):
   snapped edges stay put when poles are rewired, and a crease every other edge pins the
   layout (suzanne at 2,000 quads: valence-4 share 0.83 -> 0.92).
6. **Mode.** ``quad_dominant``: done. ``quads`` at :data:`SUBDIVIDE_MIN_FACES` faces or
   more: Instant Meshes ran at a quarter of the budget, and every polygon is split into quads
   through its centroid and edge midpoints (:func:`backend.mesh.retopo.quads.subdivide`): a
   quad into four, a triangle into three around one valence-3 vertex. Before that, the coarse
   layout's flat triangles lose their shortest edge, its flat corners on creases are split, a
   vertex on a straight crease or border with a single quad on one side merges along it
   (:func:`_flat_crease_corners_collapsed`: its quads become triangles) and free vertices at flat
   corners are relaxed (each of these would come back as quads folded flat). The new vertices go onto the reference (the
   midpoints of crease edges onto the crease, of border edges onto its border, the rest onto
   its surface), and the whole layout is relaxed. Pairing the triangles
   instead cuts zig-zag seams of valence-3/5 pairs that the pole pass only partly removes
   (Duck at 5,000: 0.959 valence-4 paired, 0.971 split). A coarse lattice cannot follow
   features under two edges across (fingers, a thin handle): when more than
   :data:`MAX_THIN_SHARE` of the reference lies on parts about an edge thick
   (:func:`_thin_share`), or the first split result leaves more than :data:`MAX_LOST_DETAIL` of
   the reference over half an edge away, Instant Meshes runs at the full budget instead and ``quads`` takes the path of smaller budgets:
   the few triangles are paired into quads
   along shortest paths through quads, whose diagonals are re-cut
   (:func:`backend.mesh.retopo.quads.pair_triangles`): no vertex moves, so the surface is that of
   the quad-dominant result, at about the same face count (before pairing, the same merge along
   straight creases and borders). If a triangle finds no partner,
   every polygon is split into quads and the next run aims at a quarter of the budget.
   ``triangles``: no quads at all; the reference is
   decimated by edge collapses (:func:`backend.mesh.remesh.decimate.decimate`).
   For the two quad modes, two last steps make the layout one an artist keeps:
   **poles** (interior vertices of valence other than 4) are rewired away by edge rotations
   and diagonal collapses, alone or after a rotation that walks a pole one edge toward its
   partner (:mod:`backend.mesh.retopo.poles`; crease and border vertices keep their edges):
   a sphere at 2,000 faces goes from 0.89 to 0.96 of its vertices at valence 4; then the
   rewired vertices, and those at quad corners near 180 degrees, are **relaxed**: each moves
   toward its neighbours within its tangent plane and back onto the reference, sliding along
   a crease when it is on one, and no move may fold a polygon
   (:mod:`backend.mesh.retopo.relax`; border vertices and crease corners stay). A quad still
   above 160 degrees has its corners moved to the best of a ring of points (a border vertex
   along the reference's border: the teapot at 5,000 kept a sliver beside its open bottom), its flat corner
   split by a free rotation, and then its own edges rewired where that opens it, at the cost of
   at most two poles (:func:`backend.mesh.retopo.poles.rewire_flat_quads`). What the rewirings
   leave is mostly a vertex on a straight crease with one quad on a side; in ``quads`` it merges
   along the crease, the triangles that makes are paired anew and the layout near them is
   relaxed (up to :data:`FLAT_REPAIR_ROUNDS` times, while that leaves fewer flat quads; on the
   bench meshes 68 such quads over 16 layouts -> 10). The rewiring then runs again on what is
   left (:data:`LAST_RESORT_ROUNDS`); in ``quad_dominant`` a quad still flat is cut into its two
   triangles. In ``quads``, a quad still flat has a diagonal or an edge collapsed, and a
   collapse that passes a fold on to a quad beside it, less folded, is kept and the fold
   followed (:data:`FLAT_FOLD_STEPS`); then the pole pass runs once more on the cleaned layout
   (the clean-up moved vertices and made poles of its own), kept only if it leaves fewer poles
   and no more flat quads (valence-4 share on the bench: fandisk at 2,000 0.954 -> 0.956, suzanne
   0.932 -> 0.939, the teapot at 5,000 0.954 -> 0.959; about 0.1-0.5 s).
   Last, a **best fit** (:func:`_fitted`): every vertex off creases and borders moves along its
   normal so that the polygons straddle the reference rather than lie under it as chords
   (about half a sagitta out): surface Chamfer to the input a fifth to two fifths lower.
7. **Face budget.** The polygon count after steps 3-6 is measured; when it is more than
   :data:`AIM_TOLERANCE` off the target, Instant Meshes runs again with its target scaled by
   the miss of the polygons that scale with it (those of parts remeshed alone keep a floor)
   (at most :data:`MAX_ATTEMPTS` runs), and the closest manifold result is kept.
   When the input as it is gives far fewer polygons than asked for
   (:data:`FALLBACK_FRACTION`: intersecting parts, slivers), its watertight remesh is used
   instead.

Limits
------
- Features smaller than about one target edge length collapse: the face budget sets the
  smallest feature the result can hold. Separate parts that Instant Meshes drops are
  remeshed on their own with at least :data:`MIN_PART_FACES` faces (:class:`_Parts`), unless
  they are specks under :data:`MIN_PART_AREA` of the surface or thinner than Instant Meshes
  can mesh (CesiumMilkTruck's rear plate, a slab 0.01 thick, still vanishes).
- Crease snapping needs creases that close into loops (a box's edges, fandisk's patches); a
  crease that fades out on a smooth surface bounds no patch and keeps Instant Meshes' own
  placement.
- Instant Meshes' output changes with the number of threads; ``deterministic`` mode is used
  so that one machine repeats itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from backend.conventions import Normalization
from backend.mesh import polygons as poly
from backend.mesh.parallel import worker_count
from backend.mesh.remesh.watertight import check_mesh_arrays, watertight
from backend.mesh.retopo import poles, quads, relax, repair
from backend.progress import ProgressFn, null_progress, subrange

log = logging.getLogger(__name__)

Mode = Literal["quads", "quad_dominant", "triangles"]
MODES: tuple[str, ...] = ("quads", "quad_dominant", "triangles")

#: Allowed face budgets.
MIN_FACES, MAX_FACES = 50, 200_000

#: Results are promised within this fraction of the target face count.
FACE_TOLERANCE = 0.10

#: Instant Meshes runs again when the result is farther than this from the target: the
#: promise (:data:`FACE_TOLERANCE`), as nothing after the count changes it. A run costs about as
#: much as everything else together; at 0.08, suzanne at 2,000 quads (-8.2%) and the truck
#: (+9.0%) took a second full run for two points of face count.
AIM_TOLERANCE = FACE_TOLERANCE

#: Instant Meshes runs per result at most.
MAX_ATTEMPTS = 3

#: A run's target is corrected by the last run's miss, by at most this factor either way.
MAX_AIM_STEP = 2.0

#: Polygons per Instant Meshes target face, as measured on the bench meshes after repair
#: (pentagons cut in two add a few; pairing triangles into quads removes half the
#: triangles; extrinsic mode gives 0.92-1.01 in ``quads``, median 0.99); the first run aims
#: at ``target / ratio``. Subdivided quads (:data:`SUBDIVIDE_MIN_FACES`): 3.97-4.14, median 4.07
#: (a triangle splits into three quads, a pentagon cut in two into seven).
EXPECTED_RATIO = {"quad_dominant": 1.04, "quads": 0.98, "subdivided": 4.07}

#: ``quads`` at this many faces or more: Instant Meshes meshes a quarter of the budget, and every
#: polygon is split into four quads (a triangle into three). Pairing its triangles along paths
#: through quads instead cuts zig-zag seams of valence-3/5 pairs (Duck at 5,000: 292 poles before
#: pairing, 862 after, 206 after the pole pass); split, a triangle leaves one valence-3 vertex.
SUBDIVIDE_MIN_FACES = 1000
#: ... unless the subdivided result leaves more than this share of the reference farther than
#: half an edge (by DETAIL_SAMPLES samples): the quarter-budget lattice missed features under two
#: edges across (beast's fingers, the teapot's handle at 2,000 faces), and Instant Meshes runs
#: at the full budget with its triangles paired instead.
MAX_LOST_DETAIL = 0.005
DETAIL_SAMPLES = 10_000
#: Before the quarter-budget run: the share of the reference on parts about an edge thick
#: (:func:`_thin_share`) above which ``quads`` goes to the full budget at once. Measured on the
#: bench meshes at 2,000 / 5,000 faces: those the split loses detail on 4.5 / 4.9% (the truck),
#: 4.7 / 2.0% (beast), 5.0 / 3.2% (the teapot), 1.6% (suzanne at 2,000); those it keeps 0.0-0.1%
#: (Duck, busted, fandisk, spot), 0.5% (suzanne at 5,000). The check after the split stays, for
#: what this misses.
MAX_THIN_SHARE = 0.01
#: Its samples, and how far inside (target edges) each is probed.
THIN_PROBE_SAMPLES = 4000
THIN_PROBE_DEPTH = 0.5

#: A triangle of the coarse layout with a corner above this (degrees) is collapsed before splitting.
FLAT_TRIANGLE_DEGREES = 150.0
#: A quad corner above this (degrees) between two crease or border edges of that quad is merged away
#: along them before splitting or pairing.
FLAT_CREASE_DEGREES = 155.0
#: Pairings of a full-budget layout's triangles at most: the repair after one can leave a
#: triangle or two (a hole its border collapses closed off, filled), which the next pairs.
PAIR_ROUNDS = 3
#: Rounds of merging and pairing anew for the flat quads the tidying leaves (``quads``), each
#: followed by relaxing the layout within :data:`FLAT_REPAIR_REACH_EDGES` edges of them and kept
#: only if it leaves fewer flat quads.
FLAT_REPAIR_ROUNDS = 3
FLAT_REPAIR_REACH_EDGES = 3.0
#: Rounds of the last-resort rewiring again for the flat quads all that leaves, each kept only if
#: it leaves fewer.
LAST_RESORT_ROUNDS = 3
#: Quads left with a corner above this (degrees) are cut into two triangles in ``quad_dominant`` mode.
FLAT_QUAD_DEGREES = 160.0
#: Flat quads the last clean-up step collapses (:func:`_flat_quad_collapsed`), one by one, at most
#: (each step following a fold counts).
MAX_FLAT_COLLAPSES = 32
#: Collapses at most that follow one fold from quad to quad (each kept only if it leaves fewer
#: flat quads, or as many and less flat: :func:`_flatness`).
FLAT_FOLD_STEPS = 4
#: Rounds of the best fit of the vertices to the reference (:func:`_fitted`), and the most it moves
#: a vertex, in its mean edge length. 2 and 3 rounds gave the same surface Chamfer to two digits
#: (Duck, busted, fandisk at 2,000 quads; spot at 5,000).
FIT_ROUNDS = 2
FIT_MAX_MOVE = 0.05

#: Vertices closer than this (canonical units, the box spans 1.9) are welded.
WELD_TOLERANCE = 1e-6

#: An input whose bad edges (in three or more faces, or in two wound the same way) touch at
#: most this fraction of its faces is mended in place (:func:`backend.mesh.retopo.repair.mend`)
#: and remeshed as it is, if it has at most ``VOXELS_PER_EDGE ** 2`` vertices per target
#: face; otherwise the watertight engine makes the reference. suzanne.obj (one fin) keeps
#: its flat faces and sharp edges this way: Chamfer to it at 2,000 quads 0.0030 -> 0.0021.
MAX_MENDED_FRACTION = 0.01

#: Watertight grid voxels per target edge length when the resolution is automatic: the
#: coarsest grid whose triangles (a voxel's side, its diagonal sqrt(2) voxels) keep most
#: sides under half a target edge, the longest Instant Meshes takes without subdividing its
#: input. Finer grids only cost time (beast.obj at 2,000 quads, 3 voxels per edge: 0.71 s
#: -> 0.64 s, Chamfer 1.5% lower).
VOXELS_PER_EDGE = 2.0 * 2.0 ** 0.5

#: Automatic watertight resolutions stay within this range (multiples of 8).
AUTO_RESOLUTION = (48, 320)

#: Edges shorter than this fraction of the target edge length are collapsed in repair.
MIN_EDGE_FRACTION = 0.05

#: A long boundary loop of a remesh of an open surface stays open when it runs within this
#: many target edge lengths of the surface's own borders; otherwise it is a tear the remesher
#: made (CesiumMilkTruck's body, open at one seam, came back with four strips missing) and
#: is closed.
BORDER_REACH_EDGES = 1.0

#: Parts of the reference with at least this share of its area come back even when smaller
#: than a quad, with at least MIN_PART_FACES faces each (at most MAX_RESTORED_PARTS parts).
MIN_PART_AREA = 5e-4
MIN_PART_FACES = 24
MAX_RESTORED_PARTS = 64
#: ... unless that many parts at MIN_PART_FACES would take more than this share of the budget (a
#: laptop's 64 keys at 24 faces each are 1,536 of 2,000): then each gets its part of that share,
#: and at least MIN_SMALL_PART_FACES (a box's six).
SMALL_PARTS_SHARE = 0.25
MIN_SMALL_PART_FACES = 12
#: The shortest edge a thin part remeshed alone asks for, in target edges (:func:`_thin_edge`).
THIN_MIN_EDGE = 0.25
#: Parts thinner than an edge remeshed alone ask for four quads round their thickness; beyond their
#: share of the budget they get, together, at most this share of it more.
THIN_PARTS_SHARE = 0.5
#: ... and, when the rest of the result is within the promised face count, no more than keeps the
#: whole within :data:`THIN_FIT` of it (the truck at 5,000: 4,880 polygons without its three rods,
#: 5,523 with them at four quads round, and a second Instant Meshes run for 0.5% over the promise),
#: as long as that leaves them at least :data:`THIN_MIN_SCALE` of what they asked beyond their share
#: (the edge at most about 1.2 times longer: three quads and more round a rod); below it the caller
#: runs again with a smaller aim.
THIN_FIT = 0.08
THIN_MIN_SCALE = 0.7
#: A part whose result pieces cover less than this share of its area is remeshed alone (:meth:`_Parts.restore_thin`).
THIN_COVERAGE = 0.5
#: Beside a larger piece on the same part, pieces under this share of the part's area are scraps.
SCRAP_AREA = 0.1
#: Of a reference in one part, only pieces under this share of its area are scraps: a piece that
#: broke off at a thin neck (a hand at the wrist) is kept, a speck of a few polygons goes.
SPECK_AREA = 0.01

#: A quad layout follows a crease with a row of its own edges, and those edges stay put when poles
#: are rewired. Creases longer in all than this share of the layout's edge length (about two
#: edges per quad) pin it in place: a low-poly head faceted at 30 degrees (suzanne: 0.30 of it at
#: 2,000 quads; valence-4 share 0.83 against QuadriFlow's 0.95), a crowd of small boxes (the
#: truck: 0.40). Above it, only the sharpest creases count, up to this share
#: (:func:`crease_angle_within`); fandisk's 0.10 at 2,000 loses only its edges under 33 degrees.
CREASE_SHARE = 0.1

#: Crease snapping moves a vertex at most this many target edge lengths.
MAX_SNAP_EDGES = 0.75

#: A crease corner takes a vertex at most this many target edge lengths away: Instant
#: Meshes' lattice may sit up to half an edge off a corner along each crease.
MAX_CORNER_SNAP_EDGES = 0.8

#: A vertex this near (target edges) a crease counts as on it when open corners are relaxed:
#: it slides along the crease (snapped vertices lie on it to rounding).
CREASE_ON_EDGES = 0.01

#: A patch between creases narrower than this many target edge lengths (its area over half
#: its crease length) is a strip no row of vertices fits on; see ``_Creases.snap``.
THIN_PATCH_EDGES = 0.5

#: A snapped polygon whose area falls below this fraction of its old area is undone.
MIN_SNAP_AREA_RATIO = 0.1

#: A result from the input as it is with fewer polygons than this fraction of what Instant
#: Meshes was asked for means it lost part of the surface: the watertight path takes over.
FALLBACK_FRACTION = 0.6

#: The triangle mode decimates a reference with at least this many times the target faces.
DECIMATE_HEADROOM = 4


@dataclass(frozen=True)
class RetopoResult:
    """A retopologized mesh, in the caller's frame and scale.

    Attributes
    ----------
    vertices : (n, 3) float64
    polygons : (k, 4) int64
        Triangles and quads, ``-1`` in the last column of a triangle
        (:mod:`backend.mesh.polygons`); :meth:`mesh_arrays` gives triangles + face sizes.
    mode : str
    source : str
        ``"input"`` (the welded input, clean or mended in place) or ``"watertight"``.
    resolution : int or None
        Watertight grid resolution, when that step ran.
    remesher_targets : list of int
        Instant Meshes' face target on each run (empty in the triangle mode).
    repair : dict
        What :func:`backend.mesh.retopo.repair.repair` changed on the kept result.
    creases_snapped : int
        Vertices moved onto creases.
    mended : dict
        What mending the input in place changed (:func:`backend.mesh.retopo.repair.mend`'s
        counts); empty when it was clean or went to the watertight engine.
    timings : dict
        Seconds per stage.
    """

    vertices: np.ndarray
    polygons: np.ndarray
    mode: str
    source: str
    resolution: int | None
    remesher_targets: list[int] = field(default_factory=list)
    repair: dict = field(default_factory=dict)
    creases_snapped: int = 0
    mended: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def mesh_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Triangles ``(m, 3)`` and face sizes ``(k,)`` uint8, as :class:`backend.mesh.types.Mesh` holds them."""
        return poly.to_mesh(self.vertices, self.polygons)


def retopo(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    target_faces: int = 2000,
    mode: Mode = "quad_dominant",
    sharp_angle: float | None = 30.0,
    resolution: int | None = None,
    progress: ProgressFn = null_progress,
) -> RetopoResult:
    """Remesh any triangle mesh into clean artist topology with about ``target_faces`` faces.

    Parameters
    ----------
    vertices : (n, 3) float
        Finite coordinates, any frame and scale.
    faces : (m, 3) int
        Indices into ``vertices``; holes, flips, duplicates and several parts are fine.
    target_faces : int
        Faces (polygons) wanted, in ``[MIN_FACES, MAX_FACES]``; the result is within
        :data:`FACE_TOLERANCE` of it unless the mesh cannot hold that many or that few.
    mode : {"quad_dominant", "quads", "triangles"}
        Mostly quads with a few triangles; quads only; or triangles only (decimation).
    sharp_angle : float or None
        Dihedral angle in degrees, in ``(0, 180)``, above which an edge of the reference is
        a crease to keep; None ignores creases.
    resolution : int or None
        Grid of the watertight step, in ``[16, 1024]``. None: chosen from the face budget,
        and the step is skipped for a welded input that is already consistently wound with
        every edge in at most two faces (open borders allowed; for ``"triangles"``: closed).
        Given: the step always runs, at that resolution.
    progress : ProgressFn
        ``progress(fraction, stage)``; it may raise :class:`backend.progress.Cancelled`,
        which propagates.

    Returns
    -------
    RetopoResult
        Closed when the reference is, every edge in at most two polygons, consistently
        wound (outward for a closed input), one fan per vertex, no degenerate polygon and
        no unused vertex.

    Raises
    ------
    ValueError
        Naming the argument: misshapen or non-finite arrays, out-of-range indices, a
        target, mode, angle or resolution outside its range; or a result with no faces.
    """
    from backend.mesh.metrics import is_manifold

    vertices, faces = check_mesh_arrays(vertices, faces)
    target_faces = _check_target(target_faces)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if sharp_angle is not None and not (isinstance(sharp_angle, (int, float)) and 0.0 < sharp_angle < 180.0):
        raise ValueError(f"sharp_angle must be None or a number of degrees in (0, 180), got {sharp_angle!r}")
    if resolution is not None:
        from backend.mesh.remesh.watertight import MAX_RESOLUTION, MIN_RESOLUTION

        if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution, (int, np.integer)) \
                or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise ValueError(f"resolution must be None or an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
                             f"got {resolution!r}")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - clock - sum(timings.values()), 4)

    progress(0.0, "welding")
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    norm = Normalization.fit(vertices[used])
    wv, wf = weld(norm.apply(vertices), faces)
    if len(wf) == 0:
        raise ValueError("faces are all degenerate (every triangle has a repeated or coincident corner); "
                         "there is no surface to remesh")
    area = float(_triangle_areas(wv, wf).sum())
    edge = float(np.sqrt(area / target_faces))                           # target edge length, canonical
    lap("weld")

    welded, closed, mended_counts = poly.pad(wf), False, {}
    if mode == "triangles":
        # Decimation needs a closed mesh, and enough faces to decimate from.
        direct = resolution is None and is_manifold(wf) and len(wf) >= DECIMATE_HEADROOM * target_faces
    else:
        # Instant Meshes handles open borders well, so an open surface is remeshed as it is
        # (a watertight slab around it would be thinner than the quads); two fans touching
        # at a vertex are pulled apart first. A few bad edges are mended in place, unless
        # the mesh is finer than the watertight reference would be: Instant Meshes' time
        # grows with its input's vertices, and the voxel remesh is as faithful at that scale.
        light = len(wv) <= VOXELS_PER_EDGE ** 2 * target_faces
        mended = repair.mend(wv, welded, max_faces=int(MAX_MENDED_FRACTION * len(wf)) if light else 0) \
            if resolution is None else None
        direct = mended is not None
        if direct:
            welded, mend_report, closed = mended
            mended_counts = {k: v for k, v in mend_report.as_dict().items() if k != "passes"}
            if mended_counts:
                log.info("retopo: input mended in place: %s", mended_counts)

    def watertight_reference() -> tuple[np.ndarray, np.ndarray, int]:

        res = resolution or auto_resolution(area, target_faces, triangles=(mode == "triangles"))
        progress(0.02, "watertight")
        # sheets="slab": Instant Meshes cannot tell apart two sides 0.2 voxel apart (a hugging
        # shell); the slab's sides are 1.5 voxels apart.
        wt = watertight(wv, wf, resolution=res, sharp_features=sharp_angle is not None, sheets="slab",
                        progress=subrange(progress, 0.02, 0.3))
        lap("watertight")
        return wt.vertices, wt.faces, res

    if direct:
        sv, sf, _ = repair.split_pinched(wv, welded)
        ref_v, ref_f, used_res = sv, sf[:, :3], None
    else:
        ref_v, ref_f, used_res = watertight_reference()

    if mode == "triangles":
        from backend.mesh.remesh.decimate import decimate

        progress(0.3, "decimating")
        dv, df = decimate(ref_v, ref_f, target_faces, progress=subrange(progress, 0.3, 0.97))
        lap("decimate")
        progress(0.97, "restoring frame")
        return RetopoResult(vertices=norm.invert(dv), polygons=poly.pad(df), mode=mode,
                            source="input" if direct else "watertight", resolution=used_res, timings=timings)

    def remesh(ref_v: np.ndarray, ref_f: np.ndarray, open_reference: bool, can_fall_back: bool
               ) -> tuple[list, list[int], bool]:
        log.info("retopo: %d faces, reference %s (%d faces), target %d %s, edge %.4f", len(faces),
                 "input" if used_res is None else f"watertight at {used_res}", len(ref_f), target_faces, mode, edge)
        ahead = None
        if subdivide and ISOTROPIC_INPUT and ISOTROPIC_AHEAD and used_res is None and worker_count() > 1:
            # Whether the quarter budget or the full one is run is known only after the thin-part
            # check below; the full budget's isotropic input, the longer to make, is made
            # meanwhile on the other core, and stopped if the quarter budget is run.
            full_aim = max(int(round(target_faces / EXPECTED_RATIO[mode])), 8)
            ahead = _Ahead(instant_meshes_input, (ref_v, ref_f, full_aim, sharp_angle))
        try:
            return remesh_from(ref_v, ref_f, open_reference, can_fall_back, ahead)
        finally:
            if ahead is not None:
                ahead.drop()

    def remesh_from(ref_v: np.ndarray, ref_f: np.ndarray, open_reference: bool, can_fall_back: bool,
                    ahead: "_Ahead | None") -> tuple[list, list[int], bool]:
        ref = _Faces(ref_v, ref_f)
        surface = _Surface(ref, spacing=edge / 4)
        parts = _Parts(ref)
        creases = None
        if sharp_angle is not None:
            from backend.mesh.tangents import smoothing_groups

            groups = smoothing_groups(ref.normal, ref.faces, sharp_angle)
            crease_angle = crease_angle_within(ref, sharp_angle, CREASE_SHARE * 2 * target_faces * edge, groups=groups)
            if crease_angle > sharp_angle:
                log.info("retopo: creases of %.1f degrees or more only (more would pin the layout)", crease_angle)
            creases = _Creases(ref, crease_angle, surface, groups=groups if crease_angle == sharp_angle else None)
        # Loops longer than a small hole stay open only along the reference's own borders.
        borders = _Borders(ref_v, ref_f, reach=BORDER_REACH_EDGES * edge) if open_reference else None
        holes = {"max_hole": repair.MAX_CUT_RING, "is_border": borders.follows} if borders is not None \
            else {"max_hole": None}
        lap("reference index")
        targets: list[int] = []

        def attempts(subdivide: bool) -> tuple[list, str]:
            """Instant Meshes runs until the face count is near the target. Returns the results and
            ``"done"``; ``"lost surface"`` when it lost most of the surface (the caller may start
            from a watertight reference); ``"lost detail"`` when the first subdivided result
            leaves more than :data:`MAX_LOST_DETAIL` of the reference out (:func:`_lost_detail`)."""
            per_polygon = 4 if subdivide else 1
            split = subdivide
            results = []
            aim = max(int(round(target_faces / EXPECTED_RATIO["subdivided" if subdivide else mode])), 8)
            # Instant Meshes aligns its field to every crease the user asked for (that costs the
            # layout nothing: what pins it is snapping and locking; the raised angle there too
            # left the truck's crease coverage below QuadriFlow's at 5,000).
            crease = sharp_angle
            for attempt in range(MAX_ATTEMPTS + 1):
                lo = 0.3 + 0.65 * min(attempt, MAX_ATTEMPTS - 1) / MAX_ATTEMPTS
                progress(lo, "remeshing" if attempt == 0 else f"remeshing again ({attempt + 1})")
                targets.append(aim)
                try:
                    # (a watertight reference is even already, at about the edge it needs)
                    isotropic = ISOTROPIC_INPUT and used_res is None
                    if ahead is not None and not ahead.dropped and ahead.args[2:] == (aim, crease):
                        im_v, im_f = ahead.result()
                    elif isotropic:
                        im_v, im_f = instant_meshes_input(ref_v, ref_f, aim, crease)
                    else:
                        im_v, im_f = ref_v, ref_f
                    lap("isotropic input")
                    rv, raw = instant_meshes(im_v, im_f, target_faces=aim, crease_angle=crease,
                                             align_to_boundaries=open_reference)
                except RuntimeError as exc:
                    # Instant Meshes runs out of memory on some meshes much thinner than an edge
                    # (a closed plate 0.001 thick: 8 GB, then std::bad_alloc): the input as it is
                    # goes to its watertight remesh; a run after others keeps the best of them.
                    if can_fall_back:
                        log.info("retopo: %s; trying a watertight version", exc)
                        return results, "lost surface"
                    if results:
                        log.info("retopo: %s; keeping the closest of the runs before", exc)
                        return results, "done"
                    raise
                rv, raw, lost_parts = parts.restore_lost(rv, raw, surface, edge=edge, target_faces=aim,
                                                         crease_angle=crease)
                lap("instant meshes")
                progress(lo + 0.4 * 0.65 / MAX_ATTEMPTS, "cleaning up")
                # The first split layout is checked for lost detail before it is tidied: a layout
                # that goes back to the full budget costs no more than it must.
                check = (lambda v, p: _lost_detail(ref_v, ref_f, v, p, edge)) if subdivide and attempt == 0 else None
                finished = _finish(rv, raw, mode, edge * per_polygon ** 0.5, surface, creases, holes,
                                   subdivide=split, borders=borders, lost_detail=check)
                if finished is None:
                    lap("clean up")
                    return results, "lost detail"
                v, p, report, snapped = finished
                v, p, report.thin_parts, thin_parts = parts.restore_thin(
                    v, p, surface, edge=edge, target_faces=aim * per_polygon, budget=target_faces,
                    remesh_part=lambda pv, pf, faces, part_edge: _finish(
                        *instant_meshes(pv, pf, target_faces=faces), mode, part_edge, surface, None, holes)[:2])
                v = _fitted(v, p, surface, creases.lines(CREASE_ON_EDGES * edge) if creases is not None else None)
                lap("clean up")
                count = len(p)
                miss = count / target_faces - 1.0
                clean = poly.topology(p).manifold
                results.append(((not clean, abs(miss), attempt), v, p, report, snapped))
                log.info("retopo: run %d aimed at %d, got %d polygons (%+.1f%%), manifold %s",
                         attempt + 1, aim, count, 100 * miss, clean)
                if count < FALLBACK_FRACTION * aim * per_polygon:
                    if crease is not None:
                        # Instant Meshes' crease mode gives up on some meshes (long sliver
                        # triangles along creases); the creases are still snapped afterwards.
                        log.info("retopo: Instant Meshes lost most faces with creases on; again without")
                        crease = None
                        continue
                    if can_fall_back:
                        return results, "lost surface"
                # In whole faces: 5,500 of 5,000 is 10% over (as a ratio, 1e-16 more; the truck at
                # 5,000 quads ran twice for that).
                near = abs(count - target_faces) <= AIM_TOLERANCE * target_faces
                if (near and clean) or len(results) >= MAX_ATTEMPTS + (crease != sharp_angle):
                    break
                # Parts remeshed alone keep a floor of faces whatever the aim (the truck at 600 faces
                # got 852, 730 and 672 polygons from aims of 577, 406 and 334 when all of the
                # count was scaled): only the rest of it scales with the aim.
                alone = min(thin_parts + lost_parts * per_polygon, count - 1)
                # At most MAX_AIM_STEP either way: a run that lost most of a thin slab must not send
                # the next to a budget forty times the target (a 1 x 1 x 0.001 plate did, and took
                # gigabytes at 4,000 faces).
                step = min(max((target_faces - alone) / max(count - alone, 1), 1.0 / MAX_AIM_STEP), MAX_AIM_STEP)
                if report.split_unpaired and not split:
                    # The pairing left triangles and the layout was split, four polygons to one:
                    # the next runs split a quarter budget on purpose (the pairing might
                    # succeed at the lower aim and give a quarter of the target instead).
                    split, per_polygon = True, 4
                    step = target_faces / max(count, 1)
                aim = max(int(round(aim * step)), 8)
            return results, "done"

        split = subdivide
        if split:
            thin = _thin_share(ref, surface, edge)
            lap("thin parts")
            if thin > MAX_THIN_SHARE:
                # Parts about an edge thick (fingers, a handle, small parts) that a quarter-budget
                # lattice would lose: the full budget at once, without the quarter run to find out.
                log.info("retopo: %.1f%% of the surface on parts about an edge thick; pairing at the full budget",
                         100 * thin)
                split = False
        if split and ahead is not None:
            ahead.drop()                              # the other core is Instant Meshes' now
        results, outcome = attempts(split)
        if outcome == "lost detail":
            # Features under two edges across (fingers, a thin handle) that a quarter-budget
            # lattice cannot follow: Instant Meshes at the full budget, its triangles paired.
            results, outcome = attempts(False)
        return results, targets, outcome == "lost surface"

    # Pure quads: Instant Meshes at a quarter of the budget, every polygon then split into quads.
    subdivide = mode == "quads" and target_faces >= SUBDIVIDE_MIN_FACES
    results, targets, gave_up = remesh(ref_v, ref_f, direct and not closed, can_fall_back=direct)
    if direct and gave_up:
        # Instant Meshes lost most of the surface (intersecting parts, slivers): start again
        # from a watertight remesh.
        log.info("retopo: %d polygons from the input as it is; remeshing a watertight version instead",
                 len(results[-1][2]) if results else 0)
        direct = False
        ref_v, ref_f, used_res = watertight_reference()
        results, more, _ = remesh(ref_v, ref_f, False, can_fall_back=False)
        targets += more
    _, v, p, report, snapped = min(results, key=lambda r: r[0])
    if len(p) == 0:
        raise ValueError(f"target_faces={target_faces} is too few for this mesh: the remesher returned no faces. "
                         "Ask for more faces.")
    progress(0.97, "restoring frame")
    return RetopoResult(vertices=norm.invert(v), polygons=p, mode=mode, source="input" if direct else "watertight",
                        resolution=used_res, remesher_targets=targets, repair=report.as_dict(),
                        creases_snapped=snapped, mended=mended_counts if direct else {}, timings=timings)


def crease_angle_within(ref: "_Faces", angle: float, length: float, *,
                        groups: "backend.mesh.tangents.SmoothingGroups | None" = None) -> float:
    """The crease angle (degrees, at least ``angle``) at which the reference's creases add up to at
    most ``length``, the sharpest kept first (see :data:`CREASE_SHARE`).

    Edges at the returned angle are kept whole even if that goes over ``length``: a box's edges are
    all at 90 degrees and either all count or none does. ``groups``: the reference's smoothing
    groups at ``angle``, when the caller has them.
    """
    from backend.mesh.tangents import smoothing_groups

    if groups is None:
        groups = smoothing_groups(ref.normal, ref.faces, angle)
    hard = groups.hard
    edges = groups.edges[hard]
    lengths = np.linalg.norm(ref.vertices[edges[:, 0]] - ref.vertices[edges[:, 1]], axis=1)
    if lengths.sum() <= length:
        return angle
    cos = np.einsum("ij,ij->i", ref.normal[groups.f0[hard]], ref.normal[groups.f1[hard]])
    order = np.argsort(cos, kind="stable")                       # sharpest first
    kept = max(int((np.cumsum(lengths[order]) <= length).sum()), 1)
    # Just below the softest kept edge's angle: it and every edge at least as sharp stay creases.
    softest = float(np.degrees(np.arccos(np.clip(cos[order[kept - 1]], -1.0, 1.0))))
    return max(angle, softest - 1e-6)


def auto_resolution(area: float, target_faces: int, *, triangles: bool = False) -> int:
    """Watertight resolution for a face budget: :data:`VOXELS_PER_EDGE` voxels per target edge.

    Parameters
    ----------
    area : float
        Surface area in canonical units (the box spans ``[-1, 1]``).
    target_faces : int
    triangles : bool
        For the triangle mode: a grid fine enough that marching cubes gives at least
        :data:`DECIMATE_HEADROOM` times the target faces to decimate from (about
        ``3 area / h^2`` triangles for voxel size ``h``).

    Returns
    -------
    int
        A multiple of 8 in :data:`AUTO_RESOLUTION`.
    """
    edge = np.sqrt(area / target_faces)
    h = edge / VOXELS_PER_EDGE
    if triangles:
        h = min(h, np.sqrt(3.0 * area / (DECIMATE_HEADROOM * target_faces)))
    res = int(np.ceil(2.0 / h / 8.0) * 8)
    return int(np.clip(res, *AUTO_RESOLUTION))


def weld(vertices: np.ndarray, faces: np.ndarray, tolerance: float = WELD_TOLERANCE
         ) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices within ``tolerance`` (on a grid of that spacing), drop degenerate and duplicate triangles.

    Returns
    -------
    vertices : (n', 3) float64
        Only the vertices faces use.
    faces : (m', 3) int64
        In their original order, windings kept; a triangle listed twice (in either winding)
        is kept once.
    """
    q = np.round(vertices / tolerance).astype(np.int64)
    first, inverse = _unique_rows(q)
    f = inverse[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[ok]
    keep, _ = _unique_rows(np.sort(f, axis=1))
    f = f[np.sort(keep)]
    used = np.zeros(len(first), dtype=bool)
    used[f] = True
    remap = np.cumsum(used) - 1
    return vertices[first[used]], remap[f].astype(np.int64)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_index=True, return_inverse=True)[1:]`` for int64 rows.

    Rows pack into one int64 key when their value ranges allow (almost always here), which
    makes the sort 1-D: 3-5x faster than numpy's row-wise unique.
    """
    lo = rows.min(axis=0) if len(rows) else np.zeros(rows.shape[1], dtype=np.int64)
    span = (rows.max(axis=0) - lo + 1) if len(rows) else np.ones(rows.shape[1], dtype=np.int64)
    if float(np.prod(span.astype(np.float64))) >= 2.0 ** 62:
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1)
    key = np.zeros(len(rows), dtype=np.int64)
    for column, size in zip((rows - lo).T, span.tolist()):
        key = key * size + column
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


# -- Instant Meshes -------------------------------------------------------------------------

#: Whether Instant Meshes gets :func:`instant_meshes_input` instead of the reference as it is.
#: Measured on the 16 artist bench pairs (``quads``, 2 runs each, best time, one command): the
#: coarse inputs ran faster (the truck at 5,000 9.8 -> 8.2 s, the teapot at 5,000 4.0 -> 2.9 s,
#: suzanne at 5,000 2.1 -> 1.7 s: Instant Meshes' own layout is cleaner, its clean-up shorter),
#: valence-4 share up (the truck 0.901 -> 0.905 and 0.939 -> 0.943, the teapot at 5,000 0.954 ->
#: 0.959) and its crease coverage 0.49 -> 0.52; inputs about as fine as the remesh would be
#: (beast, spot and fandisk at 2,000) only slower: see :data:`ISOTROPIC_MAX_INPUT_SHARE`.
ISOTROPIC_INPUT = True
#: Whether the full budget's isotropic input is made on the other core while the thin-part check
#: runs (:class:`_Ahead`; not with one worker, ``MESHSMITH_WORKERS=1``); the layouts are the same
#: either way.
ISOTROPIC_AHEAD = True

#: ... when the reference has fewer vertices than this share of an isotropic mesh's at
#: :data:`ISOTROPIC_EDGE`: a finer one gains little from it and pays for it (beast at 5,000 quads:
#: 3.5 -> 4.6 s, its 32,000 vertices against 48,000; spot at 2,000: 0.6 -> 1.3 s, 2,900
#: against 4,800), and gets a lighter round (:data:`FINE_ISOTROPIC_EDGE`).
ISOTROPIC_MAX_INPUT_SHARE = 0.5

#: ... nor when the remesh would have more vertices than this: it costs about as much per
#: vertex as Instant Meshes itself (0.56 s for the teapot's 48,000 at 5,000 quads), and a budget
#: that large is a job that must stay cancellable between its steps.
ISOTROPIC_MAX_VERTICES = 250_000

#: Instant Meshes' input is remeshed to edges of this fraction of its edge length
#: (``sqrt(area / target faces)``): it splits every edge longer than half its edge by
#: longest-edge bisection, which leaves a coarse mesh with several times the vertices an even one
#: needs at that length (the teapot at 5,000 quads: 78,000), and its time grows with them.
#: Edges come out between 0.8 and 1.33 of this, all under :data:`INSTANT_MESHES_MAX_EDGE`.
ISOTROPIC_EDGE = 0.35

#: The longest edge of the isotropic input, as a fraction of Instant Meshes' edge length: under
#: the half at which it would split them again.
INSTANT_MESHES_MAX_EDGE = 0.48

#: Rounds of splits, collapses, flips and smoothing of the isotropic input.
ISOTROPIC_ITERATIONS = 3

#: A reference already as fine as that (:data:`ISOTROPIC_MAX_INPUT_SHARE`) gets one light round
#: instead, at this edge: the remesher keeps the input's vertices, so it only splits the long
#: edges (under :data:`INSTANT_MESHES_MAX_EDGE`) and evens out what it added, where Instant Meshes
#: would bisect them (beast at 5,000 quads: a third of its edges, 32,000 vertices -> 78,000 by
#: Instant Meshes' split, 68,000 by this round). Measured best of three, one command: beast at
#: 5,000 2.52 -> 2.37 s (valence-4 0.945 -> 0.949), fandisk at 2,000 0.59 -> 0.47 s and at 5,000
#: 1.07 -> 0.85 s, spot at 2,000 0.40 -> 0.35 s, valence-4 as before or higher; at 0.35 or 0.45,
#: or two rounds, beast at 5,000 took as long as without it or longer. Only where more than
#: :data:`FINE_LONG_EDGES` of its edges are long enough for Instant Meshes to split (beast at
#: 5,000, spot at 2,000, fandisk at 5,000: 0.33-0.39 of their face sides; fandisk at 2,000:
#: 0.009): a mesh about even goes as it is (a UV sphere of 48 rings, whose quads' diagonals are
#: 0.17 of its sides, split at 2,000 quads: valence-4 0.981, with the round 0.976).
FINE_ISOTROPIC_EDGE = 0.42
FINE_ISOTROPIC_ITERATIONS = 1
FINE_LONG_EDGES = 0.25


def instant_meshes_input(vertices: np.ndarray, faces: np.ndarray, target_faces: int,
                         crease_angle: float | None, *, cancel: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The triangle mesh Instant Meshes gets for ``target_faces``: an isotropic remesh of
    ``vertices``, ``faces`` (:data:`ISOTROPIC_EDGE`; creases above ``crease_angle`` and open borders
    kept as rows of edges, the input's own vertices kept where they are, so nothing thinner than
    the edge is lost; one light round, :data:`FINE_ISOTROPIC_EDGE`, when it is already fine,
    :data:`ISOTROPIC_MAX_INPUT_SHARE`, but has long edges), or the mesh as it is when it is
    fine and even (:data:`FINE_LONG_EDGES`), the remesh would be too large
    (:data:`ISOTROPIC_MAX_VERTICES`), the compiled kernels are not built, or the remesher
    cannot hold it (not manifold, or not consistently oriented). ``cancel``: a (1,) uint8 array
    another thread may set to stop the remesh early (the mesh as it is comes back, to drop)."""
    from backend.mesh import native

    if not native.available():
        return vertices, faces
    area = float(_triangle_areas(vertices, faces).sum())
    scale = float(np.sqrt(area / max(target_faces, 1)))
    if not scale > 0.0:
        return vertices, faces
    even = area / (np.sqrt(3.0) / 2.0 * (ISOTROPIC_EDGE * scale) ** 2)     # vertices of an even mesh
    if even > ISOTROPIC_MAX_VERTICES:
        return vertices, faces
    edge, rounds = ISOTROPIC_EDGE, ISOTROPIC_ITERATIONS
    if len(vertices) >= ISOTROPIC_MAX_INPUT_SHARE * even:
        corners = vertices[faces]
        long = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2) > 0.5 * scale
        if long.mean() <= FINE_LONG_EDGES:
            return vertices, faces
        edge, rounds = FINE_ISOTROPIC_EDGE, FINE_ISOTROPIC_ITERATIONS
    out = native.isotropic_remesh(vertices, faces, length=edge * scale, crease_angle=crease_angle,
                                  iterations=rounds, max_length=INSTANT_MESHES_MAX_EDGE * scale, cancel=cancel)
    if out is None and cancel is not None and cancel[0]:
        return vertices, faces                   # stopped: the caller drops it
    if out is None:
        log.info("retopo: the reference is not one the isotropic remesher can hold; Instant Meshes takes it as it is")
        return vertices, faces
    log.info("retopo: Instant Meshes' input remeshed isotropically: %d -> %d vertices", len(vertices), len(out[0]))
    return out


class _Ahead:
    """``fn(*args, cancel=flag)`` started on another thread, for a result the caller may or may
    not need: :meth:`result` waits for it (and raises what it raised); :meth:`drop` sets the
    (1,) uint8 ``flag``, which ``fn`` polls, and waits for it to stop. ``fn``'s work is compiled
    code that releases the GIL, so it runs on the other core while this thread goes on.

    Used for Instant Meshes' full-budget input (:func:`instant_meshes_input`), made while the
    reference is indexed and the thin-part check decides between it and the quarter budget's
    (best of five, two processes each, the same layouts): suzanne at 2,000 quads, which runs at
    the full budget, waits 0.046-0.057 s for it instead of 0.073-0.080 s, the teapot 0.051 s
    instead of 0.093-0.109 s; a mesh split at the quarter budget stops it at once (Duck at 2,000:
    0.449-0.457 s in all against 0.441-0.453 s, within the noise).
    """

    def __init__(self, fn: Callable, args: tuple):
        self.args = args
        self.cancel = np.zeros(1, dtype=np.uint8)
        self._out = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="meshsmith-ahead", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable) -> None:
        try:
            self._out = fn(*self.args, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out

    @property
    def dropped(self) -> bool:
        return bool(self.cancel[0])

    def drop(self) -> None:
        self.cancel[0] = 1
        self._thread.join()


_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _stdout_to_log():
    """Send what native code prints on file descriptor 1 to the debug log instead.

    Instant Meshes reports every step on C++'s ``cout``. The descriptor is process-wide,
    so the swap holds a lock; whatever else the process prints meanwhile lands in the same
    debug log, not lost.
    """
    libc = ctypes.CDLL(None)
    with _STDOUT_LOCK, tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        libc.fflush(None)
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if text.strip():
                log.debug("instant meshes:\n%s", text.rstrip())


def instant_meshes(vertices: np.ndarray, faces: np.ndarray, *, target_faces: int,
                   crease_angle: float | None = None, align_to_boundaries: bool = False,
                   smooth_iterations: int = 2, extrinsic: bool = True) -> tuple[np.ndarray, list[list[int]]]:
    """Run Instant Meshes (4-RoSy, 4-PoSy, quad-dominant) on a triangle mesh.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    target_faces : int
        Instant Meshes' own face target (it sets the edge length ``sqrt(area / target)``).
    crease_angle : float or None
        Dihedral angle in degrees above which edges are creases; None: no creases.
    align_to_boundaries : bool
        Constrain the field to follow the mesh's open borders.
    smooth_iterations : int
        Its smoothing-and-reprojection passes on the extracted mesh.
    extrinsic : bool
        Instant Meshes' extrinsic smoothing (fields compared in 3D, not through the
        surface's parametrization), which follows the edges of man-made shapes better.
        Measured with ``quads`` at 2,000 faces (Chamfer, 3 x 10^5 samples): the truck
        0.00524 -> 0.00441, fandisk 0.00283 -> 0.00269, suzanne 0.00413 -> 0.00386, the
        other bench meshes 1-2% lower.

    Returns
    -------
    vertices : (n', 3) float64
        Possibly with unused ones (the centroids it adds to build irregular faces).
    polygons : list of lists of int
        Triangles, quads and a few pentagons, as Instant Meshes writes them.

    Raises
    ------
    ImportError
        ``pyinstantmeshes`` is not installed (with the pip command).
    RuntimeError
        Instant Meshes failed.
    """
    try:
        import pyinstantmeshes
    except ImportError as exc:
        raise ImportError("The artist pipeline needs Instant Meshes: pip install pyinstantmeshes==1.0.0") from exc
    with tempfile.TemporaryDirectory(prefix="meshsmith-im-") as tmp:
        src, dst = Path(tmp) / "in.ply", Path(tmp) / "out.ply"
        _write_ply(src, vertices, faces)
        # remesh_file, not remesh: remesh reads its result back through a loader that
        # triangulates it, and the quads are what we want. Binary PLY both ways: writing its
        # result as OBJ text took Instant Meshes about 30 ms more at 2,000 faces (suzanne:
        # 0.34 -> 0.31 s), and our reading of it 9 ms instead of 3.
        with _stdout_to_log():
            try:
                pyinstantmeshes.remesh_file(str(src), str(dst), target_face_count=int(target_faces),
                                            crease_angle=-1.0 if crease_angle is None else float(crease_angle),
                                            align_to_boundaries=bool(align_to_boundaries),
                                            smooth_iterations=int(smooth_iterations), deterministic=True,
                                            extrinsic=bool(extrinsic))
            except Exception as exc:  # the binding raises RuntimeError or std::exception subclasses
                # The binding reads its result back after writing it, and that reader rejects a
                # PLY with quads and the NaN vertices Instant Meshes occasionally writes; ours
                # takes the quads and drops those vertices' polygons.
                if not dst.exists() or not any(k in str(exc) for k in ("vertex data", "triangle faces")):
                    raise RuntimeError(f"Instant Meshes failed on a {len(faces)}-face mesh: {exc}") from exc
                log.debug("instant meshes: its own reader failed (%s); reading the result ourselves", exc)
        return _read_ply_polygons(dst)


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY: much faster than OBJ text both to write and for Instant Meshes to read."""
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")
    rows = np.empty(len(faces), dtype=np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    rows["n"] = 3
    rows["i"] = faces
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(vertices, dtype="<f4").tobytes())
        f.write(rows.tobytes())


#: Byte sizes of the PLY property types Instant Meshes writes.
_PLY_SIZES = {"float": 4, "float32": 4, "double": 8, "float64": 8, "int": 4, "int32": 4, "uint": 4, "uint32": 4,
              "uchar": 1, "uint8": 1, "char": 1, "int8": 1}


def _read_ply_polygons(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices and polygons of the binary little-endian PLY Instant Meshes writes (float x, y, z
    first per vertex; per face a uint8-counted int list, then whatever properties its header
    lists after it); polygons on non-finite vertices are left out.

    The vertices are rounded to six significant digits, as Instant Meshes prints them in an OBJ:
    the result is then exactly what its OBJ gave, and the clean-up's layouts (measured and
    tested from OBJ results) stay as they were. They are that sensitive: float32 coordinates
    instead, a change of 1e-7 relative, sent suzanne at 5,000 quads to a slower, less regular
    layout (1.25 -> 2.48 s, valence-4 0.951 -> 0.938)."""
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\nformat binary_little_endian 1.0\n") or end < 0:
        raise RuntimeError(f"unexpected PLY from Instant Meshes: {data[:200]!r}")
    end += len(b"end_header\n")
    header = data[:end].decode("ascii", "replace").splitlines()
    elements: list[tuple[str, int, list[list[str]]]] = []
    for line in header:
        words = line.split()
        if words[:1] == ["element"] and len(words) == 3:
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            elements[-1][2].append(words[1:])
    try:
        (vertex, nv, vprops), (face, nf, fprops) = elements
        vstride = sum(_PLY_SIZES[p[0]] for p in vprops)
        after = sum(_PLY_SIZES[p[0]] for p in fprops[1:])
    except (ValueError, KeyError) as exc:
        raise RuntimeError(f"unexpected PLY from Instant Meshes: {header}") from exc
    if (vertex, face) != ("vertex", "face") or [p[:2] for p in vprops[:3]] != [["float", "x"], ["float", "y"], ["float", "z"]] \
            or fprops[0][:3] != ["list", "uint8", "int"]:
        raise RuntimeError(f"unexpected PLY from Instant Meshes: {header}")
    rows = np.frombuffer(data, dtype=np.uint8, count=nv * vstride, offset=end).reshape(nv, vstride)
    xyz = rows[:, :12].copy().view("<f4").reshape(nv, 3)
    vertices = np.array([float(f"{x:.6g}") for x in xyz.ravel().tolist()], dtype=np.float64).reshape(nv, 3)
    polys, at = [], end + nv * vstride
    for _ in range(nf):
        k = data[at]
        polys.append(np.frombuffer(data, dtype="<i4", count=k, offset=at + 1).tolist())
        at += 1 + 4 * k + after
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        vertices[bad] = 0.0
        polys = [p for p in polys if not bad[p].any()]
    return vertices, polys


# -- after the remesher ---------------------------------------------------------------------


def _fitted(v: np.ndarray, p: np.ndarray, surface: "_Surface", lines: "relax.CreaseLines | None") -> np.ndarray:
    """The vertices moved along their normals so that the polygons straddle the reference instead
    of lying under its convex parts (and over its concave ones) as chords do, border and crease
    vertices kept.

    Each round measures, along the vertex normals, how far the reference lies from each vertex,
    edge midpoint and polygon centre, and moves every free vertex by half the least-squares step
    that would close those gaps (a midpoint follows its two ends by halves, a centre its corners
    by their share). Half a sagitta out, a polygon's centre sits as far inside the surface as its
    corners sit outside. Surface Chamfer to the input at 2,000 quads, as a share of QuadriFlow's:
    Duck 1.10 -> 0.78, busted 1.09 -> 0.73, fandisk 0.33 -> 0.24. Vertices move by about a
    sagitta, a small part of an edge; a move of more than :data:`FIT_MAX_MOVE` of the vertex's
    edges is cut back to that (a fold, a part thinner than an edge), and a quad the moves would
    leave with a corner above :data:`FLAT_QUAD_DEGREES` keeps its corners where they were.
    """
    if len(p) == 0:
        return v
    fixed = np.zeros(len(v), dtype=bool)
    edges, counts, _ = poly.edge_counts(p)
    fixed[edges[counts == 1].ravel()] = True
    if lines is not None:
        fixed |= lines.on(v)
    src, _, face, _ = poly.halfedges(p)
    sizes = poly.polygon_sizes(p).astype(np.float64)
    share = 1.0 / sizes[face]                                   # a corner's share of its polygon's centre
    weight = np.ones(len(v))                                    # sum of squared shares, per vertex
    np.add.at(weight, edges.ravel(), 0.25)
    np.add.at(weight, src, share * share)
    start, v = v, v.copy()
    for _ in range(FIT_ROUNDS):
        normal = np.zeros_like(v)
        np.add.at(normal, src, poly.polygon_normals(v, p)[face])
        normal /= np.maximum(np.linalg.norm(normal, axis=1), 1e-300)[:, None]
        centre = np.zeros((len(p), 3))
        np.add.at(centre, face, v[src])
        centre /= sizes[:, None]
        points = np.vstack([v, 0.5 * (v[edges[:, 0]] + v[edges[:, 1]]), centre])
        gap = surface.closest(points) - points
        at_vertex, at_mid, at_centre = np.split(gap, [len(v), len(v) + len(edges)])
        pull = (at_vertex * normal).sum(axis=1)
        for end in (0, 1):
            np.add.at(pull, edges[:, end], 0.5 * (at_mid * normal[edges[:, end]]).sum(axis=1))
        np.add.at(pull, src, share * (at_centre[face] * normal[src]).sum(axis=1))
        step = np.where(fixed, 0.0, 0.5 * pull / weight)
        v += step[:, None] * normal
    length = np.linalg.norm(start[edges[:, 0]] - start[edges[:, 1]], axis=1)
    reach = np.zeros(len(v))
    np.add.at(reach, edges.ravel(), np.repeat(length, 2))
    reach *= FIT_MAX_MOVE / np.maximum(np.bincount(edges.ravel(), minlength=len(v)), 1)
    move = v - start
    far = np.linalg.norm(move, axis=1)
    v = start + move * np.minimum(1.0, reach / np.maximum(far, 1e-300))[:, None]
    rows, was_flat = _flat_mask(start, p)
    while True:                                # each pass puts back at least one moved vertex
        flat = _flat_mask(v, p)[1] & ~was_flat
        if not flat.any():
            break
        back = p[rows[flat]].ravel()
        v[back] = start[back]
    return v


def _relaxed_near(v: np.ndarray, p: np.ndarray, points: np.ndarray, reach: float, surface: "_Surface",
                  lines: "relax.CreaseLines | None", *, also: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Relax and widen the open corners of the polygons within ``reach`` of ``points`` (the rest of
    the layout held: the border of that patch stays where it is), and the ``also`` vertices
    ((n,) bool; as :func:`backend.mesh.retopo.relax.relax_open_corners`'s). Returns the vertices
    and the corners widened."""
    from scipy.spatial import cKDTree

    near = cKDTree(points).query(v, distance_upper_bound=reach)[0] <= reach
    rows = np.flatnonzero((near[np.maximum(p, 0)] & (p >= 0)).any(axis=1))
    if len(rows) == 0:
        return v, 0
    used, local = np.unique(p[rows][p[rows] >= 0], return_inverse=True)
    patch = np.full((len(rows), 4), poly.NO_CORNER, dtype=np.int64)
    patch[p[rows] >= 0] = local
    pv, _ = relax.relax_open_corners(v[used], patch, surface.closest, creases=lines,
                                     also=also[used] if also is not None else None)
    pv, widened = relax.widen_flat_corners(pv, patch, surface.closest, creases=lines)
    v = v.copy()
    v[used] = pv
    return v, widened


def _flat_mask(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The quads' rows of ``p`` and which of them have a corner above :data:`FLAT_QUAD_DEGREES`."""
    rows, angles = poly.quad_corner_angles(v, p)
    return rows, angles.max(axis=1, initial=0.0) > FLAT_QUAD_DEGREES


def _pole_count(p: np.ndarray) -> int:
    """Interior vertices of the layout ``p`` not of valence 4."""
    interior, valence = poly.interior_valences(p)
    return int((interior & (valence != 4)).sum())


def _flat_count(v: np.ndarray, p: np.ndarray) -> int:
    """How many quads have a corner above :data:`FLAT_QUAD_DEGREES`."""
    return int(_flat_mask(v, p)[1].sum())


def _flatness(v: np.ndarray, p: np.ndarray) -> tuple[int, float]:
    """The flat quads' count, then the sum of their largest corners' excess over
    :data:`FLAT_QUAD_DEGREES` in degrees (a fold's quads measure above 180), to compare layouts by."""
    rows, angles = poly.quad_corner_angles(v, p)
    excess = angles.max(axis=1, initial=0.0) - FLAT_QUAD_DEGREES
    return int((excess > 0).sum()), float(excess[excess > 0].sum())


def _flat_quads_cut(v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each quad with a corner above :data:`FLAT_QUAD_DEGREES` cut into two triangles through that
    corner (geometrically it is a triangle; in a quad-dominant layout it may be one)."""
    rows, angles = poly.quad_corner_angles(v, p)
    flat = angles.max(axis=1, initial=0.0) > FLAT_QUAD_DEGREES
    if not flat.any():
        return p
    quad, k = p[rows[flat]], angles[flat].argmax(axis=1)
    i = np.arange(len(quad))
    corner = [quad[i, (k + j) % 4] for j in range(4)]
    first = np.stack([corner[0], corner[1], corner[2], np.full(len(quad), poly.NO_CORNER)], axis=1)
    second = np.stack([corner[0], corner[2], corner[3], np.full(len(quad), poly.NO_CORNER)], axis=1)
    out = p.copy()
    out[rows[flat]] = first
    return np.vstack([out, second])


def _finish(vertices: np.ndarray, raw: list[list[int]], mode: str, edge: float, surface: "_Surface",
            creases: "_Creases | None", holes: dict, *, subdivide: bool = False, borders: "_Borders | None" = None,
            lost_detail: Callable[[np.ndarray, np.ndarray], float] | None = None
            ) -> tuple[np.ndarray, np.ndarray, repair.RepairReport, int] | None:
    """Repair, snap creases, make pure quads (subdivide, or pair triangles), remove poles and relax
    one remesher output (module doc, steps 4-6).

    ``edge`` is the remesher's edge length; ``holes`` holds
    :func:`backend.mesh.retopo.repair.repair`'s ``max_hole`` and ``is_border``. With ``subdivide``
    (``quads`` only), every polygon is split into quads, halving the edge length; new vertices on
    the border go onto ``borders``; then, if ``lost_detail(vertices, polygons)`` (the share of the
    reference the split layout misses) is above :data:`MAX_LOST_DETAIL`, None is returned.
    """
    v, p, report = repair.repair(vertices, raw, min_edge=MIN_EDGE_FRACTION * edge, **holes)
    if report.hole_faces:
        v = surface.closest(v)                       # fans around holes add centroids off the surface

    def snap(v: np.ndarray, p: np.ndarray, edge: float) -> tuple[np.ndarray, np.ndarray, int]:
        if creases is None or len(p) == 0:
            return v, p, 0
        v, snapped = creases.snap(v, p, edge=edge)
        src, dst, _, _ = poly.halfedges(p)
        if snapped and (np.linalg.norm(v[src] - v[dst], axis=1) < MIN_EDGE_FRACTION * edge).any():
            v, p, again = repair.repair(v, p, min_edge=MIN_EDGE_FRACTION * edge, **holes)
            for key, value in again.as_dict().items():
                if key != "passes":
                    setattr(report, key, getattr(report, key) + value)
        return v, p, snapped

    def add(counts: dict[str, int]) -> None:
        for key, value in counts.items():
            setattr(report, key, getattr(report, key) + value)

    def tidy(v: np.ndarray, p: np.ndarray, edge: float, relax_all: bool) -> tuple[np.ndarray, np.ndarray]:
        lines = creases.lines(CREASE_ON_EDGES * edge) if creases is not None else None
        border_lines = borders.lines if borders is not None else None

        def last_resort(v: np.ndarray, p: np.ndarray, *, local: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
            v, p, rewired = poles.rewire_flat_quads(v, p, crease_edges=lines.edges_on(v, p) if lines is not None else None)
            if not (rewired.rotations or rewired.collapses):
                return v, p, {}
            v[rewired.touched] = surface.closest(v[rewired.touched])
            if local:
                # The rest of the layout is relaxed already: only around what the rewiring touched.
                v, widened = _relaxed_near(v, p, v[rewired.touched], FLAT_REPAIR_REACH_EDGES * edge, surface,
                                           lines, also=rewired.touched)
            else:
                v, _ = relax.relax_open_corners(v, p, surface.closest, creases=lines, also=rewired.touched)
                v, widened = relax.widen_flat_corners(v, p, surface.closest, creases=lines, borders=border_lines)
            return v, p, {"rotated_edges": rewired.rotations, "collapsed_diagonals": rewired.collapses,
                          "widened_corners": widened}

        def merged_rounds(v: np.ndarray, p: np.ndarray, merge: Callable, rounds: int = FLAT_REPAIR_ROUNDS,
                          near: np.ndarray | None = None, measure: Callable = _flat_count
                          ) -> tuple[np.ndarray, np.ndarray]:
            # Vertices of flat quads merged by ``merge(v, p, lines, holes)``, the triangles that
            # makes paired anew and the layout near them relaxed (near the point ``near`` only,
            # when the merge is of one quad there); each round kept only if it leaves no triangle
            # and lowers ``measure`` (by default, the flat quads' count).
            now_flat = measure(v, p)
            for _ in range(rounds):
                if not now_flat:
                    break
                if near is None:
                    rows, angles = poly.quad_corner_angles(v, p)
                    flat = angles.max(axis=1, initial=0.0) > FLAT_CREASE_DEGREES
                    where = v[p[rows[flat]]].mean(axis=1)
                else:
                    where = np.asarray(near, dtype=np.float64).reshape(1, 3)
                merged_v, merged_p, merged = merge(v, p, lines, holes)
                if not merged:
                    break
                merged_v, merged_p, left = quads.pair_triangles(merged_v, merged_p)
                merged_v, merged_p, _ = repair.repair(merged_v, merged_p, **holes)
                if left or (merged_p[:, 3] == poly.NO_CORNER).any():
                    break                                    # a triangle left unpaired: keep the quads
                merged_v, widened = _relaxed_near(merged_v, merged_p, where, FLAT_REPAIR_REACH_EDGES * edge,
                                                  surface, lines)
                merged_flat = measure(merged_v, merged_p)
                if merged_flat >= now_flat:
                    break                                    # no better: keep the layout as it was
                v, p, now_flat = merged_v, merged_p, merged_flat
                add({"merged_corners": merged, "widened_corners": widened})
            return v, p

        def last_resort_again(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # A rewiring changes the quads around the ones it opened, and what the relaxing
            # after it moves: a quad it could not open may open in the next round (each kept
            # only while it leaves fewer flat quads).
            now_flat = _flat_count(v, p)
            for _ in range(LAST_RESORT_ROUNDS):
                if now_flat == 0:
                    break
                again_v, again_p, counts = last_resort(v.copy(), p, local=True)
                again_flat = _flat_count(again_v, again_p)
                if not counts or again_flat >= now_flat:
                    break
                v, p, now_flat = again_v, again_p, again_flat
                add(counts)
            return v, p
        # Poles the field left (zig-zag seams, 3-3 pairs across a quad, flat corners on borders
        # and creases): rewire toward valence 4; crease edges stay.
        v, p, rewired = poles.reduce_poles(v, p, crease_edges=lines.edges_on(v, p) if lines is not None else None)
        report.rotated_edges += rewired.rotations
        report.collapsed_diagonals += rewired.collapses
        v[rewired.touched] = surface.closest(v[rewired.touched])
        # Rewired vertices, and quads with a corner near 180 degrees (triangles with an extra
        # vertex): relax them in their tangent planes (a split layout everywhere: its new
        # vertices sit where the coarse polygons put them).
        also = np.ones(len(v), dtype=bool) if relax_all else rewired.touched
        v, opened = relax.relax_open_corners(v, p, surface.closest, creases=lines, also=also)
        report.open_corners += opened
        # Corners the relaxing could not open (T-junctions, corners on a crease): the best of a
        # ring of positions around their vertex.
        v, widened = relax.widen_flat_corners(v, p, surface.closest, creases=lines, borders=border_lines)
        report.widened_corners += widened
        # What is still open sits on a border or on a crease straight through the corner: split the
        # corner with an edge where the layout allows it, then open what that leaves.
        p, split = poles.split_flat_corners(v, p, crease_edges=lines.edges_on(v, p) if lines is not None else None)
        if split.rotations:
            report.split_corners += split.rotations
            v, _ = relax.relax_open_corners(v, p, surface.closest, creases=lines, also=split.touched)
            v, widened = relax.widen_flat_corners(v, p, surface.closest, creases=lines, borders=border_lines)
            report.widened_corners += widened
        # The last resort for what is left (slivers, quads with a doubled corner): rewire each at
        # the cost of a pole or two.
        v, p, counts = last_resort(v, p)
        add(counts)

        def settle(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Still flat: mostly a vertex on a straight crease with one quad on a side, made by
            # the rewiring; it merges along the crease and its triangles pair anew, near it.
            v, p = merged_rounds(v, p, _flat_crease_corners_collapsed)
            v, p = last_resort_again(v, p)
            # Then a quad with a doubled corner no rewiring could take apart (folded, as on the
            # truck at 5,000): its next-to-nothing edge collapses, the same way.
            v, p = merged_rounds(v, p, _short_flat_edges_collapsed)
            # Last, what no move opens (a quad folded flat: four corners in a row on a crease,
            # or folded onto its neighbour; a quad in a fold of the surface): one quad at a
            # time, its shorter diagonal collapses, or else an edge at its flat corner. A
            # collapse in a fold can pass the fold on to a quad beside it, less folded (the
            # teapot at 2,000: corners up to 321 degrees, then 169): kept when it leaves fewer
            # flat quads or as many, less flat, and the next quad is followed.
            rows, flat = _flat_mask(v, p)
            budget = MAX_FLAT_COLLAPSES
            after = _flatness(v, p)
            for centre in v[p[rows[flat]]].mean(axis=1):
                for _ in range(FLAT_FOLD_STEPS):
                    if budget == 0:
                        break
                    budget -= 1
                    now = after
                    for how in ("diagonal", "before", "after"):
                        v, p = merged_rounds(v, p, partial(_flat_quad_collapsed, near=centre, how=how), rounds=1,
                                             near=centre, measure=_flatness)
                        after = _flatness(v, p)
                        if after < now:
                            break
                    if after == now or after[0] < now[0]:
                        break                            # no collapse helped, or that quad is open
                    rows, flat = _flat_mask(v, p)        # the fold moved on: to the flat quad nearest
                    centres = v[p[rows[flat]]].mean(axis=1)
                    centre = centres[np.linalg.norm(centres - centre, axis=1).argmin()]
            return v, p

        def fewer_poles(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # The clean-up moved vertices and made poles of its own: one more pole pass, relaxed
            # near what it touched and settled again, kept if it leaves fewer poles and no more
            # flat quads.
            again_v, again_p, rewired = poles.reduce_poles(v, p, crease_edges=lines.edges_on(v, p)
                                                           if lines is not None else None)
            if not (rewired.rotations or rewired.collapses):
                return v, p
            counts_before = dataclasses.replace(report)
            again_v[rewired.touched] = surface.closest(again_v[rewired.touched])
            again_v, widened = _relaxed_near(again_v, again_p, again_v[rewired.touched],
                                             FLAT_REPAIR_REACH_EDGES * edge, surface, lines, also=rewired.touched)
            again_v, again_p = settle(again_v, again_p)
            if _flat_count(again_v, again_p) <= _flat_count(v, p) and _pole_count(again_p) < _pole_count(p):
                add({"rotated_edges": rewired.rotations, "collapsed_diagonals": rewired.collapses,
                     "widened_corners": widened})
                return again_v, again_p
            for key, value in vars(counts_before).items():
                setattr(report, key, value)          # the settling's counts went with its layout
            return v, p

        if mode == "quads":
            v, p = fewer_poles(*settle(v, p))
        else:
            v, p = last_resort_again(v, p)
            p = _flat_quads_cut(v, p)
        return v, p

    v, p, snapped = snap(v, p, edge)
    if mode == "quads" and len(p) and subdivide:
        lines = creases.lines(CREASE_ON_EDGES * edge) if creases is not None else None
        # A flat triangle (Instant Meshes leaves a few along creases) would split into three
        # quads folded flat: its shortest edge is collapsed first.
        v, p, flat = _flat_triangles_collapsed(v, p, lines, holes)
        report.merged_corners += flat
        # Flat corners of the coarse layout on a crease or border (three crease vertices in a row
        # around one quad) would come back as flat corners of the split one: split them first.
        p, split = poles.split_flat_corners(v, p, crease_edges=lines.edges_on(v, p) if lines is not None else None)
        report.split_corners += split.rotations
        # Those no rotation could split: the vertex merges along the crease (its quads become
        # triangles, which split well).
        v, p, merged = _flat_crease_corners_collapsed(v, p, lines, holes)
        report.merged_corners += merged
        # Free vertices at flat corners: opened now, as each would leave a flat sub-quad.
        v, opened = relax.relax_open_corners(v, p, surface.closest, creases=lines)
        report.open_corners += opened
        v, p = _subdivided(v, p, surface, borders, lines, reach=BORDER_REACH_EDGES * edge)
        edge *= 0.5
        if lost_detail is not None:
            lost = lost_detail(v, p)
            if lost > MAX_LOST_DETAIL:
                log.info("retopo: %.2f%% of the surface lies over half an edge from the split quads", 100 * lost)
                return None
    if mode == "quads" and len(p) and not subdivide:
        # A vertex on a straight crease or border with a single quad on one side: merged along it
        # (its quads become triangles, which the pairing pairs).
        lines = creases.lines(CREASE_ON_EDGES * edge) if creases is not None else None
        v, p, merged = _flat_crease_corners_collapsed(v, p, lines, holes)
        report.merged_corners += merged
    if mode == "quads" and len(p) and (p[:, 3] == poly.NO_CORNER).any():
        # Instant Meshes' triangles; after subdividing, the few a short edge's collapse left.
        # The repair after a pairing (valence-2 vertices it may leave, holes its border
        # collapses may close off) can make a triangle or two again: paired in turn.
        for _ in range(PAIR_ROUNDS):
            v, p, left = quads.pair_triangles(v, p)
            v, p, _ = repair.repair(v, p, **holes)
            if left or not (p[:, 3] == poly.NO_CORNER).any():
                break
        if not subdivide and (left or (p[:, 3] == poly.NO_CORNER).any()):
            # Unpaired triangles (rare): split every polygon into quads instead; the face
            # count then grows about fourfold, and the caller's next runs split a quarter budget.
            v, p = _subdivided(v, p, surface, borders, None, reach=BORDER_REACH_EDGES * edge)
            edge *= 0.5
            report.split_unpaired += 1
    if len(p) and (p[:, 3] != poly.NO_CORNER).any():
        v, p = tidy(v, p, edge, relax_all=subdivide)
    return v, p, report, snapped


def _thin_share(ref: "_Faces", surface: "_Surface", edge: float) -> float:
    """Share of the reference's area (by :data:`THIN_PROBE_SAMPLES` samples) on parts thinner than
    about an edge: a point :data:`THIN_PROBE_DEPTH` edges inside the surface, along its normal, lies
    nearer (within 0.7 of that depth) to a face turned the other way than to the sample it came from.
    The turn keeps a concave crease (the face across it is near too, but at right angles) from
    counting."""
    from backend.mesh.metrics import sample_surface

    points, ids = sample_surface(ref.vertices, ref.faces, THIN_PROBE_SAMPLES, seed=0)
    if len(points) == 0:
        return 0.0
    depth = THIN_PROBE_DEPTH * edge
    inside = points - depth * ref.normal[ids]
    near, face = surface.nearest(inside)
    close = np.linalg.norm(near - inside, axis=1) < 0.7 * depth
    facing_away = (ref.normal[face] * ref.normal[ids]).sum(axis=1) < -0.5
    return float(np.mean(close & facing_away))


def _lost_detail(ref_v: np.ndarray, ref_f: np.ndarray, vertices: np.ndarray, polygons: np.ndarray,
                 edge: float) -> float:
    """Share of the reference's area (by :data:`DETAIL_SAMPLES` samples) farther than half of
    ``edge`` from a remesh of it: the parts the remesh rounded off or lost."""
    from scipy.spatial import cKDTree

    from backend.mesh.sampling import sample_surface, unsigned_distance

    if len(polygons) == 0:
        return 1.0
    points, _, _ = sample_surface(ref_v, ref_f, DETAIL_SAMPLES, seed=0)
    tris, _ = poly.to_mesh(vertices, polygons)
    # A point near a point of the remesh (a vertex, edge midpoint or triangle centre) is near it:
    # only the others are measured.
    edges, _, _ = poly.edge_counts(polygons)
    on_remesh = np.vstack([vertices, vertices[edges].mean(axis=1), vertices[tris].mean(axis=1)])
    near = cKDTree(on_remesh).query(points, distance_upper_bound=0.5 * edge)[0] <= 0.5 * edge
    far = points[~near]
    return float(np.sum(unsigned_distance(vertices, tris, far) > 0.5 * edge) / len(points)) if len(far) else 0.0


def _flat_triangles_collapsed(vertices: np.ndarray, polygons: np.ndarray, lines: "relax.CreaseLines | None",
                              holes: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Collapse the shortest edge of each triangle with a corner above :data:`FLAT_TRIANGLE_DEGREES`
    (both ends to the one on a crease or border, if one is, else to their midpoint), then repair;
    returns the vertices, polygons and the edges collapsed."""
    from backend.mesh.tangents import corner_angles

    tri = np.flatnonzero(polygons[:, 3] == poly.NO_CORNER)
    if len(tri) == 0:
        return vertices, polygons, 0
    flat = tri[np.degrees(corner_angles(vertices, polygons[tri, :3])).max(axis=1) > FLAT_TRIANGLE_DEGREES]
    if len(flat) == 0:
        return vertices, polygons, 0
    ends = polygons[flat][:, [[0, 1], [1, 2], [2, 0]]]                       # (t, 3 sides, 2 ends)
    length = np.linalg.norm(vertices[ends[..., 0]] - vertices[ends[..., 1]], axis=2)
    a, b = ends[np.arange(len(flat)), length.argmin(axis=1)].T
    edges, counts, _ = poly.edge_counts(polygons)
    fixed = np.zeros(len(vertices), dtype=bool)
    fixed[edges[counts == 1].ravel()] = True
    if lines is not None:
        fixed |= lines.on(vertices)
    return _merged(vertices, polygons, a, b, fixed, holes)


def _short_flat_edges_collapsed(vertices: np.ndarray, polygons: np.ndarray, lines: "relax.CreaseLines | None",
                                holes: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Collapse the shortest edge of each quad with a corner above :data:`FLAT_QUAD_DEGREES` when it
    is under :data:`backend.mesh.retopo.poles.DOUBLED_CORNER_EDGE` of the quad's longest (a triangle
    with a doubled corner); both ends go to the one on a crease or border, if one is. Returns the
    vertices, polygons and the vertices merged away."""
    rows, flat = _flat_mask(vertices, polygons)
    if not flat.any():
        return vertices, polygons, 0
    quad = polygons[rows[flat]]
    length = np.linalg.norm(vertices[quad] - vertices[np.roll(quad, -1, axis=1)], axis=2)
    k = length.argmin(axis=1)
    short = length[np.arange(len(quad)), k] < poles.DOUBLED_CORNER_EDGE * length.max(axis=1)
    if not short.any():
        return vertices, polygons, 0
    i = np.flatnonzero(short)
    a, b = quad[i, k[i]], quad[i, (k[i] + 1) % 4]
    edges, counts, _ = poly.edge_counts(polygons)
    fixed = np.zeros(len(vertices), dtype=bool)
    fixed[edges[counts == 1].ravel()] = True
    if lines is not None:
        fixed |= lines.on(vertices)
    return _merged(vertices, polygons, a, b, fixed, holes)


def _flat_quad_collapsed(vertices: np.ndarray, polygons: np.ndarray, lines: "relax.CreaseLines | None",
                         holes: dict, *, near: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Of the quads with a corner above :data:`FLAT_QUAD_DEGREES`, the one whose centre is nearest to
    the point ``near`` collapses: ``how="diagonal"``, its shorter diagonal (the quad goes, the quads
    across its sides meet); ``"before"`` or ``"after"``, the edge from its flattest corner to the
    corner before or after it (the quad and the polygon across that edge become triangles). For
    quads no move, rotation or short edge's collapse opens: folded flat (four corners in a row
    along a crease, or folded onto a neighbour) or in a fold of the surface where every move
    turns a polygon over. Vertices on a crease or border keep their place (two such: their
    midpoint); an edge's far end keeps its place. Returns the vertices, polygons and the
    vertices merged away (nothing when no quad is flat)."""
    rows, angles = poly.quad_corner_angles(vertices, polygons)
    flat = angles.max(axis=1, initial=0.0) > FLAT_QUAD_DEGREES
    if not flat.any():
        return vertices, polygons, 0
    centres = vertices[polygons[rows[flat]]].mean(axis=1)
    pick = np.flatnonzero(flat)[np.linalg.norm(centres - near, axis=1).argmin()]
    quad, k = polygons[rows[pick]], int(angles[pick].argmax())
    edges, counts, _ = poly.edge_counts(polygons)
    fixed = np.zeros(len(vertices), dtype=bool)
    fixed[edges[counts == 1].ravel()] = True
    if lines is not None:
        fixed |= lines.on(vertices)
    if how == "diagonal":
        diagonals = np.linalg.norm(vertices[quad[:2]] - vertices[quad[2:]], axis=1)       # 0 - 2, 1 - 3
        d = int(diagonals[1] < diagonals[0])
        a, b = quad[d], quad[d + 2]
    elif how in ("before", "after"):
        a, b = quad[k], quad[(k + (3 if how == "before" else 1)) % 4]
        fixed[b] |= not fixed[a]
    else:
        raise ValueError(f"how must be 'diagonal', 'before' or 'after', got {how!r}")
    return _merged(vertices, polygons, np.array([a]), np.array([b]), fixed, holes)


def _flat_crease_corners_collapsed(vertices: np.ndarray, polygons: np.ndarray, lines: "relax.CreaseLines | None",
                                   holes: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge the vertex at each quad corner above :data:`FLAT_CREASE_DEGREES` whose two edges in that
    quad both run along a crease or the border into the nearer of its two neighbours there; returns
    the vertices, polygons and the vertices merged away.

    Such a vertex sits on a straight crease with a single quad on one side, or on a straight
    border with a single quad (a triangle with an extra corner): splitting would give that quad's
    corner to a sub-quad still at 180 degrees, and no move along the crease or border opens it.
    Merged, the crease or border runs straight from one neighbour to the other (no length of it is
    lost) and the quads on the vertex's merged edge become triangles, which the split turns into
    quads around one valence-3 vertex each (and the pairing pairs). A crease corner, or a vertex
    merging into one that merges itself, stays.
    """
    if not (polygons[:, 3] != poly.NO_CORNER).any():
        return vertices, polygons, 0
    rows, angles = poly.quad_corner_angles(vertices, polygons)
    flat = angles.max(axis=1) > FLAT_CREASE_DEGREES
    if not flat.any():
        return vertices, polygons, 0
    quad, k = polygons[rows[flat]], angles[flat].argmax(axis=1)
    i = np.arange(len(quad))
    at, before, after = quad[i, k], quad[i, (k + 3) % 4], quad[i, (k + 1) % 4]
    n = len(vertices)
    edges, counts, _ = poly.edge_counts(polygons)
    along = edges[counts == 1]
    if lines is not None:
        along = np.vstack([along, lines.edges_on(vertices, polygons)])
    kept = along[:, 0] * n + along[:, 1]                      # rows of edge_counts: (lo, hi)

    def on(x, y):
        return np.isin(np.minimum(x, y) * n + np.maximum(x, y), kept)

    stays = lines.at_corner(vertices) if lines is not None else np.zeros(n, dtype=bool)
    ok = on(at, before) & on(at, after) & ~stays[at]
    into = np.where(np.linalg.norm(vertices[before] - vertices[at], axis=1)
                    <= np.linalg.norm(vertices[after] - vertices[at], axis=1), before, after)
    pairs, used = [], set()
    for x, y in zip(at[ok].tolist(), into[ok].tolist()):
        if x not in used and y not in used:               # one merge per vertex: no chains along a crease
            pairs.append((x, y))
            used.update((x, y))
    if not pairs:
        return vertices, polygons, 0
    a, b = np.array(pairs).T
    fixed = np.zeros(n, dtype=bool)
    fixed[b] = True                                       # the neighbour keeps its place
    return _merged(vertices, polygons, a, b, fixed, holes)


def _merged(vertices: np.ndarray, polygons: np.ndarray, a: np.ndarray, b: np.ndarray, fixed: np.ndarray,
            holes: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge the vertices joined by edges ``a[i] - b[i]`` (:func:`backend.mesh.polygons.merged_positions`:
    chains merge whole, a ``fixed`` vertex keeps its place), then repair. Returns the vertices,
    polygons and the vertices merged away."""
    merged, label = poly.merged_positions(vertices, a, b, fixed)
    rows = np.where(polygons >= 0, label[np.maximum(polygons, 0)], poly.NO_CORNER)
    v, p, _ = repair.repair(merged, rows, **holes)
    return v, p, int(len(vertices) - len(merged))


def _subdivided(vertices: np.ndarray, polygons: np.ndarray, surface: "_Surface", borders: "_Borders | None",
                lines: "relax.CreaseLines | None", *, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Every polygon split into quads (:func:`backend.mesh.retopo.quads.subdivide`), the new vertices
    put on the reference: the midpoint of an edge along a crease (``lines``) on the crease, of a
    border edge on the reference's nearest border (within ``reach``), the others on its surface.
    Only crease edges give crease vertices: snapping the split layout again would also pull
    centroids and midpoints beside a crease onto it, leaving quads with three corners in a row."""
    edges, counts, _ = poly.edge_counts(polygons)
    sub = quads.subdivide(vertices, polygons)
    v = sub.vertices.copy()
    v[sub.new] = surface.closest(v[sub.new])
    mid = len(vertices) + np.arange(len(edges))                        # subdivide's midpoints follow edge_counts' order
    if borders is not None and borders.lines is not None:
        rim = mid[counts == 1]
        near = borders.nearest(sub.vertices[rim])
        close = np.linalg.norm(near - sub.vertices[rim], axis=1) <= reach
        v[rim[close]] = near[close]
    if lines is not None:
        along = lines.edges_on(vertices, polygons)                       # rows of the same (lo, hi) edges
        on = np.isin(edges[:, 0] * len(vertices) + edges[:, 1], along[:, 0] * len(vertices) + along[:, 1])
        if on.any():
            v[mid[on]] = lines.nearest(sub.vertices[mid[on]])[0]
    return v, sub.polygons


class _Faces:
    """A triangle mesh with the per-face figures its indexes share, computed once.

    Attributes
    ----------
    vertices : (n, 3) float64
    faces : (m, 3) int64
    area : (m,) float64
    normal : (m, 3) float64
        Unit normals, zero for degenerate faces (as :func:`backend.mesh.tangents.face_normals`).
    centroid : (m, 3) float64
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        from backend.mesh.tangents import EPS

        self.vertices, self.faces = vertices, faces
        a, b, c = (vertices[faces[:, i]] for i in range(3))
        cross = np.cross(b - a, c - a)
        length = np.linalg.norm(cross, axis=1)
        self.area = 0.5 * length
        ok = length > EPS
        self.normal = np.where(ok[:, None], cross / np.where(ok, length, 1.0)[:, None], 0.0)
        self.centroid = (a + b + c) / 3.0


class _Parts:
    """Connected parts of a reference, to give back those a remesh lost.

    Instant Meshes spaces its vertices one target edge apart everywhere, so a part smaller
    than about one edge (CesiumMilkTruck's mirrors at 2,000 faces) comes back with no
    polygon at all. Each part of at least :data:`MIN_PART_AREA` of the surface that the
    remesh missed is remeshed on its own, with :data:`MIN_PART_FACES` faces or its share of
    the budget if that is more, and added to the result (at most :data:`MAX_RESTORED_PARTS`
    of them, largest first); smaller specks still vanish.
    """

    def __init__(self, ref: "_Faces"):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        vertices, faces = ref.vertices, ref.faces
        n = len(vertices)
        rows = np.repeat(np.arange(len(faces)), 3)
        graph = coo_matrix((np.ones(len(rows)), (faces.reshape(-1), rows + n)), shape=(n + len(faces),) * 2)
        _, label = connected_components(graph, directed=False)
        _, self.of_face = np.unique(label[n:], return_inverse=True)
        self.vertices, self.faces = vertices, faces
        self.area = np.bincount(self.of_face, ref.area)
        share = self.area / max(self.area.sum(), 1e-300)
        big = np.flatnonzero(share >= MIN_PART_AREA)
        self.candidates = big[np.argsort(-self.area[big], kind="stable")]             # largest first

    def restore_lost(self, vertices: np.ndarray, polygons: list[list[int]], surface: "_Surface", *, edge: float,
                     target_faces: int, crease_angle: float | None) -> tuple[np.ndarray, list[list[int]], int]:
        """``vertices, polygons`` of a remesh with its lost parts remeshed and appended, and how many
        polygons those parts added."""
        if len(self.area) < 2 or len(self.candidates) == 0:
            return vertices, polygons, 0
        used = np.unique([a for p in polygons for a in p]) if polygons else np.zeros(0, dtype=np.int64)
        near, face = surface.nearest(vertices[used]) if len(used) else (np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
        close = np.linalg.norm(near - vertices[used], axis=1) < 0.5 * edge
        hits = np.bincount(self.of_face[face[close]], minlength=len(self.area))
        # Fewer vertices than a cube has: a scrap, not the part.
        lost = [int(c) for c in self.candidates if hits[c] < 8][:MAX_RESTORED_PARTS]
        if not lost:
            return vertices, polygons, 0
        # The scraps go (the repair keeps a closed one, an extra piece beside the part remeshed).
        on_lost = np.zeros(len(vertices), dtype=bool)
        on_lost[used[close][np.isin(self.of_face[face[close]], lost)]] = True
        polygons = [p for p in polygons if not on_lost[p].all()]
        total = float(self.area.sum())
        vertices, polygons, before = [vertices], list(polygons), len(polygons)
        offset = len(vertices[0])
        floor = _part_floor(len(lost), target_faces)
        for c in lost:
            sub = self.faces[self.of_face == c]
            keep, sub = np.unique(sub, return_inverse=True)
            faces = max(floor, int(round(target_faces * self.area[c] / total)))
            try:
                pv, pp = instant_meshes(self.vertices[keep], sub.reshape(-1, 3), target_faces=faces,
                                        crease_angle=crease_angle)
            except RuntimeError as exc:
                log.info("retopo: a lost part (%.2g of the area) could not be remeshed: %s", self.area[c] / total, exc)
                continue
            if not pp:
                continue
            vertices.append(pv)
            polygons.extend([a + offset for a in p] for p in pp)
            offset += len(pv)
        log.info("retopo: %d small parts the remesh lost were remeshed on their own", len(vertices) - 1)
        return np.concatenate(vertices), polygons, len(polygons) - before


    def restore_thin(self, vertices: np.ndarray, polygons: np.ndarray, surface: "_Surface", *, edge: float,
                     target_faces: int, budget: int, remesh_part) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Give back parts the clean-up lost, and drop the scraps it left of them.

        A part thinner than an edge (a chair's wire leg) comes out of Instant Meshes as a strip
        one or two quads round, which the repair takes apart: the result keeps a few scraps of
        it, or nothing. Each result piece is assigned to the reference part under most of its
        vertices; a part of at least :data:`MIN_PART_AREA` of the surface whose pieces cover
        less than :data:`THIN_COVERAGE` of its area loses them and is remeshed alone by
        ``remesh_part(vertices, faces, target_faces, edge)`` with an edge fitted to its
        thickness (:func:`_thin_edge`; beyond their share of ``target_faces``, such parts together
        get at most :data:`THIN_PARTS_SHARE` of ``budget``, the caller's target, and less where
        that keeps the result within :data:`THIN_FIT` of ``budget``), and added. Of
        the pieces on one part, those under :data:`SCRAP_AREA` of its area are dropped when a
        larger piece is there: a connected part comes back as one piece (a reference of one part
        keeps pieces over :data:`SPECK_AREA`: five polygons beside beast at 2,000 quad-dominant
        faces went). Returns the vertices, polygons, the parts remeshed and the polygons they
        have.
        """
        from backend.mesh.metrics import connected_components

        if len(polygons) == 0:
            return vertices, polygons, 0, 0
        tris, sizes = poly.to_mesh(vertices, polygons)
        first = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) - 2)[:-1]])
        count, labels = connected_components(tris)
        single = len(self.area) < 2
        if single and count < 2:
            return vertices, polygons, 0, 0
        piece = labels[first]                                                  # per polygon
        _, near_face = surface.nearest(vertices)
        vertex_part = self.of_face[near_face]
        corners = polygons[:, 0]
        on_part = np.array([np.bincount(vertex_part[corners[piece == k]]).argmax() for k in range(count)])
        piece_area = np.bincount(piece, poly.polygon_areas(vertices, polygons), minlength=count)
        covered = np.bincount(on_part, piece_area, minlength=len(self.area))
        total = float(self.area.sum())
        # A reference of one part is not remeshed again here (a first run that lost most of it
        # is the caller's to run again); its scraps still go.
        lost = [] if single else \
            [int(c) for c in self.candidates if covered[c] < THIN_COVERAGE * self.area[c]][:MAX_RESTORED_PARTS]
        drop = np.isin(on_part, lost)
        for c in np.unique(on_part):
            mine = np.flatnonzero((on_part == c) & ~drop)
            if len(mine) > 1:
                biggest = mine[np.argmax(piece_area[mine])]
                scrap = (SPECK_AREA if single else SCRAP_AREA) * self.area[c]
                drop[mine[(mine != biggest) & (piece_area[mine] < scrap)]] = True
        if not drop.any() and not lost:
            return vertices, polygons, 0, 0
        out_v, out_p = poly.unused_removed(vertices, polygons[~drop[piece]])
        pieces_v, pieces_p, restored = [out_v], [out_p], 0
        offset = len(out_v)
        floor = _part_floor(len(lost), target_faces)
        jobs = []
        for c in lost:
            sub = self.faces[self.of_face == c]
            keep, sub = np.unique(sub, return_inverse=True)
            sub = sub.reshape(-1, 3)
            fair = max(floor, int(round(target_faces * self.area[c] / total)))
            thin = _thin_edge(self.vertices[keep], sub, edge)
            jobs.append((c, keep, sub, thin, fair, max(fair, int(round(self.area[c] / thin ** 2)))))
        # Four quads round a strip or a plate (a tape measure's coiled tape) is far finer than the
        # budget's edge over its whole area: beyond their share of the budget, the parts together
        # get at most THIN_PARTS_SHARE of it (the tape alone asked for 3,552 faces of 2,000), and
        # a little less where that keeps the result within the promised count (THIN_FIT).
        extra = sum(want - fair for *_, fair, want in jobs)
        room = THIN_PARTS_SHARE * budget
        rest = len(out_p) + sum(fair for *_, fair, _ in jobs)
        if abs(rest - budget) <= THIN_FIT * budget:
            fit = (1.0 + THIN_FIT) * budget - rest
            if fit >= THIN_MIN_SCALE * extra:
                room = min(room, fit)
        scale = min(1.0, room / extra) if extra > 0 else 1.0
        for c, keep, sub, part_edge, fair, want in jobs:
            faces = fair + int(round(scale * (want - fair)))
            if scale < 1.0:
                part_edge = max(part_edge, float(np.sqrt(self.area[c] / faces)))
            try:
                pv, pp = remesh_part(self.vertices[keep], sub, faces, part_edge)
            except RuntimeError as exc:
                log.info("retopo: a thin part (%.2g of the area) could not be remeshed: %s", self.area[c] / total, exc)
                continue
            if len(pp) == 0:
                continue
            pv, pp = _largest_piece(pv, pp)               # a part remeshed alone comes back as one piece
            pieces_v.append(pv)
            pieces_p.append(np.where(pp >= 0, pp + offset, poly.NO_CORNER))
            offset += len(pv)
            restored += 1
        log.info("retopo: %d pieces dropped as scraps of lost parts, %d thin parts remeshed alone",
                 int(drop.sum()), restored)
        return np.concatenate(pieces_v), np.concatenate(pieces_p), restored, sum(map(len, pieces_p[1:]))


def _largest_piece(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The piece of ``polygons`` (connected through shared edges) with the largest area, its unused
    vertices removed."""
    from backend.mesh.metrics import connected_components

    tris, sizes = poly.to_mesh(vertices, polygons)
    count, labels = connected_components(tris)
    if count < 2:
        return vertices, polygons
    piece = labels[np.concatenate([[0], np.cumsum(sizes.astype(np.int64) - 2)[:-1]])]
    area = np.bincount(piece, poly.polygon_areas(vertices, polygons), minlength=count)
    return poly.unused_removed(vertices, polygons[piece == np.argmax(area)])


def _part_floor(parts: int, target_faces: int) -> int:
    """The fewest faces each of ``parts`` parts remeshed alone gets: :data:`MIN_PART_FACES`, or less
    when that many would take more than :data:`SMALL_PARTS_SHARE` of ``target_faces`` (down to
    :data:`MIN_SMALL_PART_FACES`)."""
    if parts * MIN_PART_FACES <= SMALL_PARTS_SHARE * target_faces:
        return MIN_PART_FACES
    return max(MIN_SMALL_PART_FACES, int(SMALL_PARTS_SHARE * target_faces / max(parts, 1)))


def _thin_edge(vertices: np.ndarray, faces: np.ndarray, edge: float) -> float:
    """An edge length for remeshing a thin closed part alone: a quarter of a rod's circumference
    (four quads round it, the fewest that keep a tube), ``(pi / 2) 2 V / A`` since ``2 V / A`` is a
    cylinder's radius (and a plate's thickness), between :data:`THIN_MIN_EDGE` of the target edge
    and the target edge; half the target edge for an open part (no volume)."""
    from backend.mesh.metrics import is_watertight, signed_volume

    area = float(_triangle_areas(vertices, faces).sum())
    if not is_watertight(faces) or area <= 0.0:
        return 0.5 * edge
    return float(np.clip(np.pi * abs(signed_volume(vertices, faces)) / area, THIN_MIN_EDGE * edge, edge))


class _Borders:
    """The open borders of a reference surface, to tell them from tears in a remesh of it.

    Points along every border edge (a quarter of ``reach`` apart) in a k-d tree; a loop of
    the remesh *follows* the borders when at least half of its vertices lie within ``reach``
    of one.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, reach: float):
        from scipy.spatial import cKDTree

        _, counts, edge_of = poly.edge_counts(poly.pad(faces))
        src, dst, _, _ = poly.halfedges(poly.pad(faces))
        border = counts[edge_of] == 1
        a, b = vertices[src[border]], vertices[dst[border]]
        steps = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / (reach / 4)), 1).astype(np.int64)
        t = np.concatenate([np.arange(k) / k for k in steps.tolist()]) if len(steps) else np.zeros(0)
        owner = np.repeat(np.arange(len(a)), steps)
        points = a[owner] + t[:, None] * (b - a)[owner]
        self.reach = reach
        self.tree = cKDTree(points) if len(points) else None
        self.lines = relax.CreaseLines(a, b, reach / 4) if len(a) else None

    def nearest(self, points: np.ndarray) -> np.ndarray:
        """The nearest point on the reference's borders to each of ``points`` (a new vertex on a
        remesh's border edge goes there, not to the surface beside the border)."""
        return self.lines.nearest(points)[0] if self.lines is not None else points

    def follows(self, loop: np.ndarray) -> bool:
        if self.tree is None:
            return False
        distance, _ = self.tree.query(loop, distance_upper_bound=self.reach)
        return bool(np.mean(distance <= self.reach) >= 0.5)


class _Surface:
    """Closest points on a triangle mesh, for points near it (within a few ``spacing``).

    Candidates are the faces of the nearest sample points: every face's centroid, plus, on
    a mesh with a side longer than :data:`SAMPLED_SIDE` spacings, area-uniform samples about
    ``spacing`` apart, so that long thin faces (CAD meshes) are found too. The small, even
    faces of a dense remesh are found by their centroids alone. The exact closest point on
    each candidate decides.
    """

    CANDIDATES = 8
    SAMPLED_SIDE = 4.0
    #: Queries of at least this many points use every core.
    THREADED_FROM = 4096

    def __init__(self, ref: "_Faces", spacing: float):
        from scipy.spatial import cKDTree

        from backend.mesh.metrics import sample_surface

        vertices, faces = ref.vertices, ref.faces
        # Contiguous once, so the compiled closest-point kernel copies nothing per query.
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float64)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        spacing = max(spacing, 1e-12)
        points, self.owner = ref.centroid, np.arange(len(faces))
        corners = vertices[faces]
        longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1, initial=0.0)
        if longest.max(initial=0.0) > self.SAMPLED_SIDE * spacing:
            extra = int(min(ref.area.sum() / spacing ** 2, 20 * len(faces), 2_000_000))
            pts, ids = sample_surface(vertices, faces, extra, seed=0)
            points = np.vstack([points, pts])
            self.owner = np.concatenate([self.owner, ids])
        self.tree = cKDTree(points)

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closest points ``(k, 3)`` and their faces ``(k,)``."""
        from backend.mesh import native
        from backend.mesh.triangles import closest_point_on_triangle

        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        k = min(self.CANDIDATES, len(self.owner))
        # Both cores for big batches; a thread per call costs more than a small query.
        _, idx = self.tree.query(points, k=k, workers=-1 if len(points) >= self.THREADED_FROM else 1)
        idx = idx.reshape(len(points), k)
        cand = self.owner[idx]                                                   # (p, k)
        if native.available():
            return native.closest_of_candidates(points, cand, self.vertices, self.faces)
        tri = self.vertices[self.faces[cand.reshape(-1)]]
        rep = np.repeat(points, k, axis=0)
        near = closest_point_on_triangle(rep, tri[:, 0], tri[:, 1], tri[:, 2]).reshape(len(points), k, 3)
        d = np.linalg.norm(near - points[:, None, :], axis=2)
        best = np.argmin(d, axis=1)
        rows = np.arange(len(points))
        return near[rows, best], cand[rows, best]

    def closest(self, points: np.ndarray) -> np.ndarray:
        return self.nearest(points)[0]


class _Creases:
    """Sharp edges of the reference, the patches they bound, and snapping onto them (module doc, step 5)."""

    def __init__(self, ref: "_Faces", angle_deg: float, surface: _Surface, *,
                 groups: "backend.mesh.tangents.SmoothingGroups | None" = None):
        """``groups``: the reference's smoothing groups at ``angle_deg``, when the caller has them."""
        from backend.mesh.tangents import smoothing_groups

        vertices, faces, normal = ref.vertices, ref.faces, ref.normal
        self.vertices, self.faces, self.surface = vertices, faces, surface
        m = len(faces)
        if groups is None:
            groups = smoothing_groups(normal, faces, angle_deg)
        self.patch, f0, f1, sharp = groups.group, groups.f0, groups.f1, groups.hard
        # Crease segments between two different patches, keyed by the (lo, hi) patch pair.
        seg = groups.edges[sharp]
        p0, p1 = self.patch[f0[sharp]], self.patch[f1[sharp]]
        between = p0 != p1
        self.seg = seg[between]
        self._lines: dict[float, relax.CreaseLines] = {}
        self.seg_pair = np.minimum(p0, p1)[between] * (m + 1) + np.maximum(p0, p1)[between]
        self.span = m + 1
        # Convex creases (the far face bends away from the near one's normal) make outlines;
        # a strip narrower than THIN_PATCH_EDGES quads (area over half its crease length)
        # cannot hold a row of vertices (see snap).
        centroid, area = ref.centroid, ref.area
        f0s, f1s = f0[sharp][between], f1[sharp][between]
        self.convex = np.einsum("ij,ij->i", normal[f0s], centroid[f1s] - centroid[f0s]) < 0
        patches = int(self.patch.max()) + 1 if m else 0
        length = np.linalg.norm(vertices[self.seg[:, 0]] - vertices[self.seg[:, 1]], axis=1)
        rim = np.bincount(p0[between], length, patches) + np.bincount(p1[between], length, patches)
        # Patch widths; a patch with a crease rim narrower than THIN_PATCH_EDGES edges is thin
        # (see snap, which is given the edge: a split layout is snapped at twice its own).
        self.width = np.where(rim > 0, np.bincount(self.patch, area, patches) / np.maximum(0.5 * rim, 1e-300), np.inf)
        # Corners: reference vertices on creases of three or more patches.
        corner_patches: dict[int, set[int]] = {}
        for (a, b), x, y in zip(self.seg.tolist(), p0[between].tolist(), p1[between].tolist()):
            for vtx in (a, b):
                corner_patches.setdefault(vtx, set()).update((x, y))
        self.corners = {vtx: s for vtx, s in corner_patches.items() if len(s) >= 3}
        if len(self.seg):
            from scipy.spatial import cKDTree

            self.seg_tree = cKDTree(0.5 * (vertices[self.seg[:, 0]] + vertices[self.seg[:, 1]]))
        log.debug("creases: %d segments between %d patches, %d corners", len(self.seg),
                  len(np.unique(self.patch)), len(self.corners))

    def lines(self, tolerance: float) -> "relax.CreaseLines | None":
        """The crease segments for sliding vertices along them (None without creases)."""
        if len(self.seg) == 0:
            return None
        if tolerance not in self._lines:                      # built once per remesh, asked once per attempt
            self._lines[tolerance] = relax.CreaseLines(self.vertices[self.seg[:, 0]], self.vertices[self.seg[:, 1]],
                                                       tolerance, ends=self.seg)
        return self._lines[tolerance]

    def snap(self, vertices: np.ndarray, polygons: np.ndarray, *, edge: float) -> tuple[np.ndarray, int]:
        """Move crease vertices of a polygon mesh whose edges are about ``edge`` long onto the reference's
        creases; returns ``(vertices, moved)``."""
        max_move, max_corner_move = MAX_SNAP_EDGES * edge, MAX_CORNER_SNAP_EDGES * edge
        thin = self.width < THIN_PATCH_EDGES * edge
        from scipy.spatial import cKDTree

        if len(self.seg) == 0:
            return vertices, 0
        centroid = np.zeros((len(polygons), 3))
        sizes = poly.polygon_sizes(polygons)
        src, _, face, _ = poly.halfedges(polygons)
        np.add.at(centroid, face, vertices[src])
        centroid /= sizes[:, None]
        label = self.patch[self.surface.nearest(centroid)[1]]
        # The patches around each vertex; polygons over a thin strip do not count, and
        # their vertices may go to an outline of the patches beside the strip instead.
        on_thin = thin[label[face]]
        beside_thin = np.unique(src[on_thin])
        pairs = np.unique(np.stack([src[~on_thin], label[face[~on_thin]]], axis=1), axis=0)
        count = np.bincount(pairs[:, 0], minlength=len(vertices))
        target = vertices.copy()
        moved = np.zeros(len(vertices), dtype=bool)

        def move_to_nearest(rows: np.ndarray, point: np.ndarray, dist: np.ndarray) -> None:
            # Candidate points per vertex (rows): the nearest wins if within max_move.
            order = np.lexsort((dist, rows))
            rows, point, dist = rows[order], point[order], dist[order]
            best = np.concatenate([[True], rows[1:] != rows[:-1]]) & (dist <= max_move)
            target[rows[best]] = point[best]
            moved[rows[best]] = True

        # A vertex that sees two patches goes to the creases between them; one that sees
        # more (near a corner) to the nearest crease between any two of them.
        several = np.flatnonzero(count >= 2)
        if len(several):
            first = np.searchsorted(pairs[:, 0], several)
            rows, keys = [], []
            for v, a, c in zip(several.tolist(), first.tolist(), count[several].tolist()):
                seen = pairs[a:a + c, 1].tolist()
                for i in range(c):
                    for j in range(i + 1, c):
                        rows.append(v)
                        keys.append(seen[i] * self.span + seen[j])
            rows, keys = np.asarray(rows, dtype=np.int64), np.asarray(keys, dtype=np.int64)
            move_to_nearest(rows, *self._nearest_on_crease(vertices[rows], keys, max_move))
        # Patches that share no crease: a strip narrower than a quad lies between them
        # (CesiumMilkTruck's side panel ends in a lip a fifth of a quad wide, then the floor).
        # The vertex goes to the nearest convex crease of a patch it sees, which keeps the
        # outline (the concave one behind the strip would pull the silhouette in).
        lost = np.union1d(beside_thin[count[beside_thin] >= 1], np.flatnonzero(count >= 2))
        lost = lost[~moved[lost]]
        if len(lost):
            first = np.searchsorted(pairs[:, 0], lost)
            c = count[lost]
            rows = np.repeat(lost, c)
            patches = pairs[np.repeat(first, c) + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c), 1]
            move_to_nearest(rows, *self._nearest_on_crease(vertices[rows], patches, max_move, of_patch=True))
        if self.corners:
            # Each crease corner takes the nearest vertex that sees only patches of that corner
            # (and at least two of them): the vertex where the corner's creases meet in the
            # output is often cut off by a triangle, so it may see just two.
            near = np.flatnonzero(count >= 2)
            first = np.searchsorted(pairs[:, 0], near)
            seen = {int(v): set(pairs[a:a + c, 1].tolist()) for v, a, c in
                    zip(near.tolist(), first.tolist(), count[near].tolist())}
            taken: set[int] = set()
            corners = list(self.corners.items())
            position = self.vertices[[c for c, _ in corners]]
            balls = cKDTree(vertices[near]).query_ball_point(position, r=max_corner_move) if len(near) else \
                [[] for _ in corners]
            for (corner, patches), pos, ball in zip(corners, position, balls):
                ball = np.sort(np.asarray(ball, dtype=np.int64))
                d = np.linalg.norm(vertices[near[ball]] - pos, axis=1)
                for vtx in near[ball[np.argsort(d, kind="stable")]].tolist():
                    if vtx not in taken and seen[vtx] <= patches:
                        target[vtx] = pos
                        moved[vtx] = True
                        taken.add(vtx)
                        break
        out, kept = poly.guarded_moves(vertices, target, moved, polygons, min_area_ratio=MIN_SNAP_AREA_RATIO)
        return out, int(kept.sum())

    def _nearest_on_crease(self, points: np.ndarray, key: np.ndarray, radius: float, of_patch: bool = False
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest point on the crease segments of patch pair ``key`` (per point); inf when none is near.

        With ``of_patch``, ``key`` is one patch, and any convex crease bounding it counts.
        """
        k = min(16, len(self.seg))
        _, idx = self.seg_tree.query(points, k=k)
        idx = idx.reshape(len(points), k)
        a = self.vertices[self.seg[idx, 0]]                                      # (p, k, 3)
        b = self.vertices[self.seg[idx, 1]]
        ab = b - a
        t = np.clip(np.einsum("pkj,pkj->pk", points[:, None, :] - a, ab)
                    / np.maximum(np.einsum("pkj,pkj->pk", ab, ab), 1e-300), 0.0, 1.0)
        near = a + t[..., None] * ab
        d = np.linalg.norm(near - points[:, None, :], axis=2)
        if of_patch:
            pair = self.seg_pair[idx]
            d[((pair // self.span != key[:, None]) & (pair % self.span != key[:, None])) | ~self.convex[idx]] = np.inf
        else:
            d[self.seg_pair[idx] != key[:, None]] = np.inf
        best = np.argmin(d, axis=1)
        rows = np.arange(len(points))
        return near[rows, best], d[rows, best]


# -- input checks ---------------------------------------------------------------------------


def _triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def _check_target(target_faces: object) -> int:
    if isinstance(target_faces, (bool, np.bool_)) or not isinstance(target_faces, (int, np.integer)):
        raise ValueError(f"target_faces must be an integer, got {target_faces!r}")
    if not MIN_FACES <= target_faces <= MAX_FACES:
        raise ValueError(f"target_faces must be in [{MIN_FACES}, {MAX_FACES}], got {target_faces}")
    return int(target_faces)

