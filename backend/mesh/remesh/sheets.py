"""Open sheets: the slab the watertight engine makes around a sheet, pulled onto the sheet's two sides.

The engine signs a shell node that sees empty space on both sides of its nearest surface
point (an open sheet, or a part thinner than the probes) ``d - tau``
(:mod:`backend.mesh.remesh.watertight`, step 5): the level 0 there is the boundary of the
``tau``-offset volume of the sheet, a closed slab ``tau`` (0.75 voxel) out on each side. The
grid cannot hold a thinner slab (a cell diagonal must span it, or marching cubes' ambiguous
faces perforate it), but the mesh can: as in double-covering extraction from unsigned
distance fields (Hou et al., "Robust zero level-set extraction from unsigned distance
fields based on double covering", 2023: mesh the boundary of an offset volume, which is
closed and orientable whatever the sheet, then map it toward the sheet without folding),
the vertices of that slab move along the unsigned distance's gradient to the offset
``SHEET_OFFSET_VOXELS``:

1. **Which vertices.** A vertex of the dual mesh sits in its cut cell (a sheet's vertices
   at the mean of their crossings, which is inside the cell). It came from the sheet rule
   when most negative corners of that cell are shell nodes signed as sheets; caps of holes
   and fills of gaps (their nodes signed ``-d`` or off the shell) keep their vertices where
   they are. A minority is allowed for the odd node inside a sheet's slab whose ahead probe
   was lost on a curved sheet (signed ``-d``): it would pin the vertices of 8 cells.
2. **Where to.** Its nearest input point ``c`` among the nearest faces of its cell's
   corners (the surface within a voxel of it; both walls of a part thinner than the
   probes), at distance ``d``; it moves to
   ``c + r (x - c) / d``, the point at distance ``r`` on the same gradient line. A vertex
   already within ``r`` stays: moves only ever approach the input. (Steps 1 and 2 per
   vertex, and step 3's test per triangle, are compiled kernels of
   :mod:`backend.mesh.native`, with their numpy twins here.)
3. **No folds.** Each triangle with a moved corner must keep its orientation and some area:
   seen along its normal before the move, its area after is above ``MIN_AREA_VOXELS2``. The
   moved corners of a triangle that turns over (or shrinks to a sliver) go back halfway, up to
   ``UNFOLD_ROUNDS`` times, then all the way. Only vertex positions change, so the surface
   stays closed, manifold and oriented.

On a flat sheet every vertex reaches ``r``; around a sheet's border the slab's rounded rim
shrinks to radius ``r``; a concave crease of a sheet keeps a chamfer (a chord between the
two faces' offsets). Where sheets lie closer than ``2 tau`` the slab bridges them and its
vertices go to the nearer one.

**Closed surfaces, onto the input** (``snap``). The same nearest points serve every other
vertex: dual contouring puts a vertex where the tangent planes of its crossings meet, which on
a curved surface is a little off it (mean 0.006 voxel on a cow at resolution 256). A vertex
not made by the sheet rule whose nearest input point is within ``snap`` (``SNAP_VOXELS``)
moves onto it, under the same no-fold rule. Caps of holes and fills, farther away, stay. Measured
as the surface Chamfer to the input (exact distances, 10^5 samples each way) at resolution 256
on the cow: 0.0053 voxel before, 0.0039 after; Blender's voxel remesher, whose vertices lie on
the input, 0.0043.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from backend.mesh import native
from backend.mesh.remesh.blocks import BlockGrid
from backend.mesh.remesh.dual import CORNERS
from backend.mesh.triangles import TriangleFrames, triangle_params

log = logging.getLogger(__name__)

#: Distance (voxels) from the input at which sheet vertices settle, on each side. Far below
#: a voxel, so an open sheet comes back as a shell ``2 r`` thick; above 0, so the two sides
#: stay apart (vertices and faces distinct, normals defined). Surface Chamfer against
#: Blender's voxel remesher at resolution 512 (exact distances): Suzanne, whose eye gaps are
#: open at that scale, 1.78 at 0.1, 0.95 at 0.05, 0.45 at 0.02; the open teapot 1.05, 0.54, 0.23.
SHEET_OFFSET_VOXELS = 0.05

#: Vertices of closed surfaces within this many voxels of the input move onto it (module doc).
#: Dual-contouring vertices of a smooth surface are within a few hundredths; sheets' slab
#: vertices (0.75) and caps stay out of reach. Measured on the cow at 256 (surface Chamfer in
#: voxels): 0.02 -> 0.0048, 0.05 -> 0.0043, 0.2 -> 0.0039.
SNAP_VOXELS = 0.2

#: Candidate faces whose distances differ by less than this fraction are a tie (a vertex
#: on the medial axis of two faces), settled by the lower face index, so that the compiled
#: and numpy kernels pick the same face whatever their rounding.
TIE_RELATIVE = 1e-9

#: Rounds in which the corners of a triangle that a move turned over go back halfway, before
#: they go back all the way.
UNFOLD_ROUNDS = 4

#: A move may not leave a triangle's area, seen along its old normal, below this (squared
#: voxels): a near-zero sliver is as bad as a fold to the tools downstream. Dual contouring
#: leaves a few slivers of ~1e-9 that a snap would thin further (a cartoon head at 256),
#: while a sheet's rim triangles legitimately shrink a hundredfold, to ~1e-2.
MIN_AREA_VOXELS2 = 1e-6


def hug_sheets(vertices: np.ndarray, triangles: np.ndarray, field: np.ndarray, nearest: np.ndarray,
               blocks: BlockGrid, sheet_nodes: np.ndarray | None, input_vertices: np.ndarray, faces: np.ndarray,
               *, offset: float = SHEET_OFFSET_VOXELS, snap: float = 0.0) -> int:
    """Move the vertices the sheet rule made to ``offset`` from the input, and the others within
    ``snap`` of it onto it, in place (module doc).

    Parameters
    ----------
    vertices : (n, 3) float64
        The mesher's vertices in grid index coordinates; changed in place.
    triangles : (m, 3) int64
        A closed, oriented surface over them.
    field : (nb, BLOCK^3) float32
        The signed field that was meshed (negative inside).
    nearest : (nb, BLOCK^3) int32
        Nearest input face of each band node, -1 off the shell.
    blocks : BlockGrid
    sheet_nodes : (s,) int64 or None
        Sorted band positions of the shell nodes signed as sheets (``d - tau``); None: no vertex
        is a sheet's (a slab is kept as it is).
    input_vertices : (v, 3) float64
        The input in grid index coordinates.
    faces : (f, 3) int64
    offset : float
        Target distance from the input, in voxels (> 0).
    snap : float
        Other vertices this near the input (voxels) move onto it; 0: none.

    Returns
    -------
    int
        How many vertices moved (all the way or part of it).
    """
    if not offset > 0:
        raise ValueError(f"offset must be positive, got {offset!r}")
    if not snap >= 0:
        raise ValueError(f"snap must be >= 0, got {snap!r}")
    has_sheets = sheet_nodes is not None and len(sheet_nodes) > 0
    if not (has_sheets or snap > 0) or not len(vertices):
        return 0
    sheet = np.zeros(field.size, dtype=bool)
    if has_sheets:
        sheet[sheet_nodes] = True
    movable, step = _sheet_steps(vertices, field, nearest, sheet, blocks, input_vertices, faces, offset, snap)
    del sheet
    fraction = _unfolded_moves(vertices, triangles, movable, step)
    log.debug("sheets: %d vertices moved (to %.2f voxel from a sheet, or onto the input from within %.2f), "
              "%d of them held back by folds", np.count_nonzero(fraction > 0), offset, snap,
              np.count_nonzero(fraction < 1))
    return int(np.count_nonzero(fraction > 0))


def _sheet_steps(vertices: np.ndarray, field: np.ndarray, nearest: np.ndarray, sheet: np.ndarray, blocks: BlockGrid,
                 input_vertices: np.ndarray, faces: np.ndarray, offset: float, snap: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The vertices (k,) int64 the sheet rule made that are farther than ``offset`` from the
    input, with their steps (k, 3) to ``offset`` (module doc, steps 1 and 2), and the other
    vertices within ``snap`` of it (but not on it), with their steps onto it.

    ``sheet`` (nb * BLOCK^3,) bool marks the band nodes signed as sheets.
    """
    if native.available():
        return native.sheet_steps(vertices, field, nearest, sheet, blocks.slot, blocks.coarse_shape,
                                  blocks.grid.shape, input_vertices, faces, offset, snap, TIE_RELATIVE)
    shape = np.asarray(blocks.grid.shape, dtype=np.int64)
    cell = np.clip(np.floor(vertices).astype(np.int64), 0, shape - 2)            # (n, 3) lower corners
    sheets = np.zeros(len(vertices), dtype=np.int8)
    others = np.zeros(len(vertices), dtype=np.int8)
    off_band = np.zeros(len(vertices), dtype=bool)
    face = np.full((len(vertices), 8), -1, dtype=np.int32)
    flat_field, flat_nearest = field.reshape(-1), nearest.reshape(-1)
    for k, corner in enumerate(CORNERS):
        position = blocks.locate(cell + corner)[1]
        stored = position >= 0
        off_band |= ~stored
        negative = np.zeros(len(vertices), dtype=bool)
        negative[stored] = flat_field[position[stored]] < 0
        signed_sheet = np.zeros(len(vertices), dtype=bool)
        signed_sheet[stored] = sheet[position[stored]]
        sheets += negative & signed_sheet
        others += negative & ~signed_sheet
        face[stored, k] = flat_nearest[position[stored]]
    # A corner off the band: the vertex is not in a cut cell (a QEF vertex that left its own).
    is_sheet = sheets > others
    movable = np.flatnonzero((is_sheet | (snap > 0)) & ~off_band)
    x = vertices[movable]
    c, d = _nearest_points(x, face[movable], input_vertices, faces)
    of_sheet = is_sheet[movable]
    far = np.isfinite(d) & (d > offset) & of_sheet
    near = (d > 0) & (d <= snap) & ~of_sheet
    keep = far | near
    scale = np.where(far, 1.0 - offset / np.where(far, d, 1.0), 1.0)
    return movable[keep], (c[keep] - x[keep]) * scale[keep, None]


def _nearest_points(x: np.ndarray, candidates: np.ndarray, input_vertices: np.ndarray, faces: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point (k, 3) to each ``x`` (k, 3) on its candidate faces (k, c) (-1: none; ties
    within ``TIE_RELATIVE``: the lower face), and its distance (k,); ``inf`` for a point
    without candidates."""
    # Each distinct (vertex, face) pair once: neighbouring corners mostly share a face.
    candidates = np.sort(candidates, axis=1)
    fresh = np.ones(candidates.shape, dtype=bool)
    fresh[:, 1:] = candidates[:, 1:] != candidates[:, :-1]
    row, col = np.nonzero(fresh & (candidates >= 0))
    nearest, distance = np.zeros_like(x), np.full(len(x), np.inf)
    if not len(row):
        return nearest, distance
    face = candidates[row, col]
    t = input_vertices[faces[face]]                                                   # (p, 3, 3)
    frames = TriangleFrames.from_corners(t[:, 0], t[:, 1], t[:, 2])
    s, u = triangle_params(x[row] - frames.a, frames)
    point = frames.a + s[:, None] * frames.ab + u[:, None] * frames.ac
    gap = np.linalg.norm(x[row] - point, axis=1)
    # Per vertex the lowest face among those tied for the least distance. Pairs come grouped
    # by vertex (np.nonzero's order), and a sort by vertex first keeps each group in place.
    start = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))
    least = np.repeat(np.minimum.reduceat(gap, start), np.diff(np.append(start, len(row))))
    tied = gap <= least * (1.0 + TIE_RELATIVE)
    first = np.lexsort((face, ~tied, row))[start]
    nearest[row[first]], distance[row[first]] = point[first], gap[first]
    return nearest, distance


def _unfolded_moves(vertices: np.ndarray, triangles: np.ndarray, movable: np.ndarray, step: np.ndarray
                    ) -> np.ndarray:
    """``vertices[movable] += fraction * step`` in place, each vertex's fraction (k,) (returned) as
    large as keeps every triangle from turning over (module doc, step 3)."""
    fraction = np.ones(len(movable))
    if not len(movable):
        return fraction

    def around(moved: np.ndarray) -> np.ndarray:
        """The triangles with a corner among ``moved`` (vertex ids)."""
        mark = np.zeros(len(vertices), dtype=bool)
        mark[moved] = True
        return triangles[mark[triangles[:, 0]] | mark[triangles[:, 1]] | mark[triangles[:, 2]]]

    home = vertices.copy()
    slot = np.full(len(vertices), -1, dtype=np.int64)
    slot[movable] = np.arange(len(movable))
    vertices[movable] += step
    check = around(movable)
    for round_ in itertools.count():
        folded = check[_turned_over(home, vertices, check, MIN_AREA_VOXELS2)]
        if not len(folded):
            break
        back = slot[folded].reshape(-1)
        back = np.unique(back[back >= 0])
        if not fraction[back].any():
            break                                   # all home: such a triangle was never moved
        # Sending a corner home may turn over a triangle next to it, whose corners follow in
        # the next round; it ends, as every round after the halving ones sends one more home.
        # Only the triangles around the corners that moved back can change: the next round
        # looks at those.
        fraction[back] = 0.5 * fraction[back] if round_ < UNFOLD_ROUNDS else 0.0
        vertices[movable[back]] = home[movable[back]] + fraction[back, None] * step[back]
        check = around(movable[back])
    return fraction


def _turned_over(before: np.ndarray, after: np.ndarray, triangles: np.ndarray, min_area: float = 0.0
                 ) -> np.ndarray:
    """(t,) bool: ``triangles`` (t, 3) whose area over ``after``, seen along their normal ``n`` over
    ``before`` (both (n, 3)), is at most ``min_area``: turned over (<= 0), or shrunk to a sliver;
    ``n`` not zero (a degenerate triangle has no side to turn over)."""
    if native.available():
        return native.turned_over(before, after, triangles, min_area)

    def normals(vertices: np.ndarray) -> np.ndarray:
        a, b, c = (vertices[triangles[:, k]] for k in range(3))
        return np.cross(b - a, c - a)

    was = normals(before)
    size = np.einsum("ij,ij->i", was, was)
    limit = 2.0 * min_area * np.sqrt(size)
    return (np.einsum("ij,ij->i", normals(after), was) <= limit) & (size > 0.0)
