"""Fewer poles: local rewiring of a quad layout toward valence 4 (edge rotations and diagonal collapses).

An interior vertex of a quad mesh is regular at valence 4; every other valence is a *pole*
(singularity), and a field-aligned remesher leaves far more of them than the surface needs:
zig-zag seams of valence-3/5 pairs where its position field jumps, and valence-3 pairs across
one quad where it could not decide. Two local operations, as in Tarini et al. 2010 ("Practical
quad mesh simplification"), remove most of them:

- **Edge rotation.** The edge between two quads is turned to the other diagonal of the hexagon
  they form: its two ends lose an edge each, two opposite hexagon corners gain one. A 5-5 edge
  between two 3s becomes four regular vertices.
- **Diagonal collapse.** A quad whose opposite corners ``a``, ``c`` merge: the merged vertex has
  valence ``a + c - 2`` and the two other corners lose an edge. Two 3s across a quad whose
  other corners are 5s become four regular vertices (and one quad fewer).

Each operation is taken only when it lowers the layout's *excess*, the sum over the vertices
it touches of ``(faces - ideal)^2``, so the loop ends. Rotations that leave the excess as it
is move a pole by one edge; a chain of up to :data:`SHIFT_DEPTH` of them is kept when it ends in
an operation that lowers the excess (a 3-5 pair walking to the partner it cancels with).

The search runs compiled (``reduce_poles`` of ``backend/mesh/_native.c``, about 30x faster)
when the extension is built; :class:`_Rewiring` is its Python twin, which visits faces and
sets in the same (ascending) order, so both give the same layout (a test compares them).

:func:`split_flat_corners`, run after relaxing, uses the same rotations for another end: a quad
corner still near 180 degrees on a border or a straight crease gets an edge, where that costs
the layout nothing. :func:`rewire_flat_quads`, the last resort, rotates or collapses a quad still
open at the cost of a pole or two, judging each option by what relaxing would leave of it.

A free interior vertex's ideal is 4 faces.
Around a vertex on the border or on a crease, the border and crease edges cut its faces into
*sectors*, and each sector's ideal is what its corner angles ask for,
``round(angle sum / 90 degrees)``: 2 faces on each side of a straight crease or along a straight
border, 1 at a sheet's corner. So a border vertex with a single quad (whose corner there is flat,
180 degrees: a triangle with an extra vertex) gets a second one, and a crease vertex with all its
edges on one side of the crease gets one on the other. Border and crease vertices never move (a collapse
merges a free vertex into them, never two of them), and crease and border edges are never
rotated away or merged. An operation whose new quads would fold against the surface they
replace is skipped. Vertices are not moved except a merged one (to the midpoint of the diagonal,
or onto the border or crease vertex it merges into); the caller puts the touched vertices back
on the surface and relaxes them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from backend.mesh import native
from backend.mesh import polygons as poly

log = logging.getLogger(__name__)

#: A new quad must face the same way as the surface it replaces: the cosine of its normal with
#: the replaced quads' mean normal at least this.
MIN_NORMAL_COSINE = 0.3
#: Zero-cost rotations a search may chain before the step that lowers the excess (how far a 3-5
#: pair may walk to its partner). Measured on the pole pass's inputs in ``quads`` mode, bench
#: meshes at 2,000 / 5,000 faces, valence-4 share at depth 3 / 4 / 5 (compiled seconds at 4):
#: spot 0.946 / 0.953 / 0.955 and 0.959 / 0.963 / 0.966 (0.03, 0.10 s), Duck 0.951 / 0.953 / 0.956
#: and 0.956 / 0.959 / 0.963 (0.03, 0.08 s), beast 0.922 / 0.929 / 0.933 and 0.928 / 0.933 / 0.936,
#: busted 0.956 / 0.964 / 0.966 and 0.970 / 0.974 / 0.976. The search grows about threefold per
#: step (suzanne at 5,000 faces: 0.20 / 0.41 / 1.39 s); in Python it is about 30x slower.
SHIFT_DEPTH = 4
#: Changes one sweep may make, per face and in all: each change lowers the summed squared excess,
#: so a sweep ends, but a gain counted on a sector that the change itself reshapes can be off,
#: and two such changes can undo each other for ever (a bookcase's remesh cycled through two
#: rotations of one hexagon). A sweep stops at this budget; on the bench meshes a whole pole
#: pass (all sweeps) makes 0.01-0.21 changes per face (0.5 on a 42-face part of the truck).
SWEEP_CHANGES_PER_FACE = 1
SWEEP_CHANGES_EXTRA = 64
#: Most :func:`rewire_flat_quads` may add to the layout's excess for one quad: a 3-5 pair of poles
#: costs 2.
FLAT_REWIRE_COST = 4
#: A quad whose diagonals' cross product (twice its area) is under this share of its longest edge
#: squared is degenerate, as is one whose two opposite corners are both within 10 degrees of the
#: flat limit: :func:`rewire_flat_quads` collapses it whatever the cost.
DEGENERATE_AREA = 0.1
#: A quad with an edge under this share of its longest is a triangle with a doubled corner, and one
#: with a corner under FORK_DEGREES between two crease or border edges sits in a fork of crease lines
#: that no quad can fill: :func:`rewire_flat_quads` treats both as degenerate. With these two, flat
#: quads left on the bench meshes (16 layouts, before the artist pipeline's merges) 68 -> 58.
DOUBLED_CORNER_EDGE = 0.15
FORK_DEGREES = 20.0
#: Rings around the flat quads whose vertices :func:`split_flat_corners` and
#: :func:`rewire_flat_quads` give sector ideals: their operations reach two rings out (a rotation's
#: hexagon, a collapse's merged neighbours), and the rewiring of one quad may shift the next by one.
LOCAL_RINGS = 3
#: Fewest faces an interior vertex may be left with.
MIN_INTERIOR_FACES = 3


@dataclass
class PoleReport:
    """What :func:`reduce_poles` did: ``rotations`` and ``collapses`` applied; ``touched``: (n,) bool,
    the vertices whose neighbourhood changed (to relax)."""

    rotations: int
    collapses: int
    touched: np.ndarray


def reduce_poles(vertices: np.ndarray, polygons: np.ndarray, *, crease_edges: np.ndarray | None = None,
                 pinned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, PoleReport]:
    """Rotate edges and collapse quad diagonals while they bring face counts closer to their ideals
    (module doc).

    Parameters
    ----------
    vertices : (n, 3) float
    polygons : (k, 4) int
        Triangles and quads (``-1`` in the last column for a triangle), manifold and consistently
        wound. Triangles are kept as they are and never rewired.
    crease_edges : (e, 2) int or None
        Edges on the surface's creases: they stay, and their vertices stay where they are.
    pinned : (n,) bool or None
        Vertices left exactly as they are (no operation touches their faces).

    Returns
    -------
    vertices : (n', 3) float64
        Unused vertices (merged away) removed.
    polygons : (k', 4) int64
    report : PoleReport
        ``touched`` indexes the returned vertices.
    """
    v = np.asarray(vertices, dtype=np.float64).copy()
    p = np.asarray(polygons, dtype=np.int64)
    if len(p) == 0:
        return v, p.copy(), PoleReport(0, 0, np.zeros(len(v), dtype=bool))
    if native.available():
        special, frozen, border, locked = _layout(v, p, crease_edges, pinned)
        out = p.copy()
        touched = np.zeros(len(v), dtype=bool)
        rotations, collapses = native.reduce_poles(v, out, special, frozen, border, locked,
                                                   _sector_ideals(v, p, special, locked),
                                                   SHIFT_DEPTH, MIN_NORMAL_COSINE, touched,
                                                   changes_per_face=SWEEP_CHANGES_PER_FACE,
                                                   changes_extra=SWEEP_CHANGES_EXTRA)
        return _compacted(v, out[out[:, 0] >= 0], PoleReport(rotations, collapses, touched))
    rewire = _rewiring(v, p, crease_edges, pinned)
    rewire.run()
    return rewire.result()


def split_flat_corners(vertices: np.ndarray, polygons: np.ndarray, *, crease_edges: np.ndarray | None = None,
                       above_degrees: float = 160.0) -> tuple[np.ndarray, PoleReport]:
    """Give the vertex at each quad corner above ``above_degrees`` an edge into that quad, where
    the layout's excess does not grow.

    A corner near 180 degrees (or concave) that relaxing could not open sits on a border or on a
    crease that runs straight through it: no move opens it, but turning one of the quad's two far
    edges to end at that vertex splits its corner in two. Of those two rotations (and only
    those whose excess change is at most 0, whose new quads face the surface's way and whose
    edge is not a border or crease edge) the cheaper is taken, the one whose new quads' largest
    angle is least on a tie. Vertices do not move: the caller relaxes ``touched``.

    Returns the rewired ``(k, 4)`` polygons (the same faces, in the same order) and the report.
    """
    v = np.asarray(vertices, dtype=np.float64)
    p = np.asarray(polygons, dtype=np.int64)
    touched = np.zeros(len(v), dtype=bool)
    if len(p) == 0 or not (p[:, 3] != poly.NO_CORNER).any():
        return p.copy(), PoleReport(0, 0, touched)
    rows, angles = poly.quad_corner_angles(v, p)
    open_ = angles.max(axis=1) > above_degrees
    if not open_.any():
        return p.copy(), PoleReport(0, 0, touched)
    rewire = _rewiring(v, p, crease_edges, None, around=rows[open_])
    for f, k in zip(rows[open_].tolist(), angles[open_].argmax(axis=1).tolist()):
        quad = rewire.faces[f]
        if len(quad) != 4 or rewire.faces[f] != p[f].tolist():
            continue                                          # rewired already by an earlier split
        x = quad[k]
        options = []
        for edge, s in (((k + 1) % 4, 2), ((k + 2) % 4, 1)):   # the far edges: x is ring[s] after it
            found = rewire.rotation(f, edge, s)
            if found is not None and found[0] <= 0 and found[3][s] == x:
                g, new = found[1], found[2]
                worst = max(poly.corner_angles(v[np.array(n)][None])[0].max() for n in new)
                options.append((found[0], worst, g, new, found[3]))
        if options:
            _, _, g, new, ring = min(options, key=lambda o: o[:2])
            rewire._rotate(f, g, new, ring)
    out = np.array([rewire.faces[f] + [poly.NO_CORNER] * (4 - len(rewire.faces[f])) for f in range(len(p))],
                   dtype=np.int64).reshape(-1, 4)
    return out, PoleReport(rewire.rotations, 0, rewire.touched)


def rewire_flat_quads(vertices: np.ndarray, polygons: np.ndarray, *, crease_edges: np.ndarray | None = None,
                      above_degrees: float = 160.0, max_cost: int = FLAT_REWIRE_COST) -> tuple[np.ndarray, np.ndarray, PoleReport]:
    """The last resort for quads with a corner above ``above_degrees`` that neither relaxing nor
    :func:`split_flat_corners` opened: rewire each one at the cost of a pole or two.

    What is left at that point is mostly degenerate: slivers whose four corners lie nearly on a
    line, and quads with one edge far shorter than the others (a triangle with a doubled corner),
    often folded against their neighbours, so no move of one vertex opens them. Each of the quad's
    four edge rotations (both ways) and two diagonal collapses that keeps the mesh manifold and
    unfolded and adds at most ``max_cost`` to the layout's excess is tried, and judged by the
    largest quad corner angle around it once its free vertices are smoothed (as the relaxing
    after it would): of those that open the quad the one with the smallest such angle is taken
    (then the cheapest), and none if none opens it. A degenerate quad (area under
    :data:`DEGENERATE_AREA` of its longest edge squared: its corners on one line, as where several
    vertices landed on one crease) may also collapse across crease and border edges, whatever the
    cost, and takes its best option even if that does not open it; so does a quad squashed along a
    diagonal (two opposite corners near the limit), one with an edge next to nothing
    (:data:`DOUBLED_CORNER_EDGE`) and one in the fork of two crease lines (:data:`FORK_DEGREES`).
    Crease and border edges stay otherwise. The caller puts ``touched`` back on the surface and
    relaxes it.

    Returns the vertices (unused ones removed), the polygons and the report.
    """
    v = np.asarray(vertices, dtype=np.float64).copy()
    p = np.asarray(polygons, dtype=np.int64).reshape(-1, 4)
    rows, angles = poly.quad_corner_angles(v, p)
    flat = angles.max(axis=1, initial=0.0) > above_degrees
    if not flat.any():
        return v, p.copy(), PoleReport(0, 0, np.zeros(len(v), dtype=bool))
    rewire = _rewiring(v, p, crease_edges, None, around=rows[flat])
    for f in rows[flat][np.argsort(-angles[flat].max(axis=1), kind="stable")].tolist():
        if len(rewire.faces.get(f, ())) != 4:
            continue
        q = rewire.faces[f]
        if rewire.largest_angle([f]) <= above_degrees:
            continue                                        # opened by an earlier rewiring nearby
        corners = v[np.array(q)]
        lengths = np.linalg.norm(corners - corners[[1, 2, 3, 0]], axis=1)
        span = lengths.max()
        inner = poly.corner_angles(corners[None])[0]
        doubled_area = np.linalg.norm(poly.cross(corners[2] - corners[0], corners[3] - corners[1]))
        # No area (its corners on one line), squashed along a diagonal (both ends of it flat), a
        # triangle with a doubled corner (one edge next to nothing), or wedged into the fork of
        # two crease lines.
        fork = any(inner[k] < FORK_DEGREES and rewire.is_locked(q[k - 1], q[k]) and rewire.is_locked(q[k], q[(k + 1) % 4])
                   for k in range(4))
        degenerate = bool(doubled_area < DEGENERATE_AREA * span * span
                          or np.minimum(inner[:2], inner[2:]).max() > above_degrees - 10.0
                          or lengths.min() < DOUBLED_CORNER_EDGE * span or fork)
        # Each option as the relaxing after it would leave it: its free vertices smoothed.
        options = []
        for k in range(4):
            for s in (1, 2):
                found = rewire.rotation(f, k, s)
                if found is not None and found[0] <= max_cost:
                    gain, g, new, ring = found
                    options.append((rewire.relaxed_worst(ring, {f: new[0], g: new[1]}, set()), gain,
                                    ("rotate", g, new, ring)))
        for gain, a, c in list(rewire.collapses_of(f, degenerate=degenerate)):
            if gain <= max_cost or degenerate:
                merged = {g: [a if x == c else x for x in rewire.faces[g]] for g in rewire.around[c] - {f}}
                at = None if rewire.special[a] else (rewire.v[a] + rewire.v[c]) / 2.0
                options.append((rewire.relaxed_worst([a] + [x for x in q if x not in (a, c)], {f: None, **merged},
                                                     {c}, moved={a: at} if at is not None else {}),
                                gain, ("collapse", a, c)))
        # Of those that open the quad, the one leaving the smallest angle (then the cheapest); a
        # degenerate quad takes its best option whatever it leaves.
        opened = [o for o in options if o[0] <= above_degrees]
        if not opened and not (degenerate and options):
            continue
        _, _, op = min(opened or options, key=lambda o: o[:2])
        if op[0] == "rotate":
            rewire._rotate(f, *op[1:])
        else:
            rewire.collapse(f, *op[1:])
    return rewire.result()


def _compacted(v: np.ndarray, polygons: np.ndarray, report: PoleReport) -> tuple[np.ndarray, np.ndarray, PoleReport]:
    """``v`` and ``polygons`` without the vertices no polygon uses (merged away), ``report.touched`` with them."""
    used = np.unique(polygons[polygons != poly.NO_CORNER])
    v, polygons = poly.unused_removed(v, polygons)
    return v, polygons, PoleReport(report.rotations, report.collapses, report.touched[used])


def _layout(v: np.ndarray, p: np.ndarray, crease_edges: np.ndarray | None, pinned: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the rewiring holds fixed: ``special`` (n,) bool, vertices on a locked edge; ``frozen``,
    the ``pinned`` ones; ``border``, those on a border; and the ``locked`` (e, 2) edges: border
    edges, then ``crease_edges`` (each sorted)."""
    edges, counts, _ = poly.edge_counts(p)
    locked = edges[counts == 1]
    if crease_edges is not None and len(crease_edges):
        locked = np.vstack([locked, np.sort(np.asarray(crease_edges, dtype=np.int64).reshape(-1, 2), axis=1)])
    special = np.zeros(len(v), dtype=bool)
    special[locked.ravel()] = True
    frozen = np.zeros(len(v), dtype=bool) if pinned is None else np.asarray(pinned, dtype=bool)
    border = np.zeros(len(v), dtype=bool)
    border[edges[counts == 1].ravel()] = True
    return special, frozen, border, locked


def _rewiring(v: np.ndarray, p: np.ndarray, crease_edges: np.ndarray | None, pinned: np.ndarray | None, *,
              around: np.ndarray | None = None) -> "_Rewiring":
    """The layout :func:`reduce_poles` and :func:`split_flat_corners` rewire: border and crease edges
    locked, ``pinned`` vertices frozen. With ``around`` (rows of ``p``), only the vertices within
    :data:`LOCAL_RINGS` rings of those polygons get their sector ideals (all an operation on
    them asks for; the rest of a large layout costs time for nothing)."""
    special, frozen, border, locked = _layout(v, p, crease_edges, pinned)
    near = special
    if around is not None:
        near = np.zeros(len(v), dtype=bool)
        near[p[around][p[around] >= 0]] = True
        for _ in range(LOCAL_RINGS):
            rows = (near[np.maximum(p, 0)] & (p >= 0)).any(axis=1)
            near[p[rows][p[rows] >= 0]] = True
        near &= special
    return _Rewiring(v, p, special, frozen, locked, border, _sector_ideals(v, p, near, locked))


def _sector_ideals(v: np.ndarray, p: np.ndarray, of: np.ndarray, locked: np.ndarray) -> dict[tuple[int, int], int]:
    """Ideal face counts of the sectors of the vertices ``of`` ((n,) bool; border and crease
    vertices), keyed as :meth:`_Rewiring.sector` keys them.

    A sector is a vertex's faces between two locked edges (or borders), walking round it; its key is
    ``(x, y)`` for the locked edge ``x-y`` that ends the walk in the polygons' winding direction
    (``(x, -2)``: no locked edge at ``x``, one sector all round). Its ideal is its share of
    ``round(angle sum / 90)`` faces (:func:`_share_faces`). In numpy: each corner at such a vertex
    is joined to the corner across its outgoing edge unless that edge is locked, and the sectors
    are the connected sets of corners.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    valid = p >= 0
    rows, slots = np.nonzero(valid & of[np.maximum(p, 0)])
    if len(rows) == 0:
        return {}
    k = valid.sum(axis=1)[rows]
    x = p[rows, slots]
    after, before = p[rows, (slots + 1) % k], p[rows, (slots - 1) % k]
    # Corner angles in degrees (plain arc cosines: a sector's angle sum only rounds to quarter turns).
    to_before, to_after = v[before] - v[x], v[after] - v[x]
    to_before /= np.maximum(np.sqrt(np.einsum("ij,ij->i", to_before, to_before)), 1e-300)[:, None]
    to_after /= np.maximum(np.sqrt(np.einsum("ij,ij->i", to_after, to_after)), 1e-300)[:, None]
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", to_before, to_after), -1.0, 1.0)))
    # The corner across the edge x -> after is the one at x whose edge before it comes from ``after``
    # (consistent winding); exactly one, or the walk stops there (a border or a tangle).
    span = np.int64(len(v) + 1)
    out_key, in_key = x * span + after, x * span + before
    order = np.argsort(in_key, kind="stable")
    ordered = in_key[order]
    m = len(rows)
    at = np.searchsorted(ordered, out_key)
    found = (at < m) & (ordered[np.minimum(at, m - 1)] == out_key)
    found &= ~((at + 1 < m) & (ordered[np.minimum(at + 1, m - 1)] == out_key))
    lo, hi = np.minimum(x, after), np.maximum(x, after)
    sorted_locked = np.sort(np.asarray(locked, dtype=np.int64).reshape(-1, 2), axis=1)
    is_locked = np.isin(lo * span + hi, sorted_locked[:, 0] * span + sorted_locked[:, 1])
    joined = found & ~is_locked
    src = np.flatnonzero(joined)
    count, sector = connected_components(coo_matrix((np.ones(len(src)), (src, order[at[joined]])), shape=(m, m)),
                                         directed=False)
    end = np.full(count, -2, dtype=np.int64)
    end[sector[~joined]] = after[~joined]
    owner = np.zeros(count, dtype=np.int64)
    owner[sector] = x
    total = np.bincount(sector, angle, count)
    by_vertex: dict[int, dict[tuple[int, int], float]] = {}
    for c in np.argsort(owner, kind="stable").tolist():
        o = int(owner[c])
        by_vertex.setdefault(o, {})[(o, int(end[c]))] = float(total[c])
    ideals: dict[tuple[int, int], int] = {}
    for sectors in by_vertex.values():
        ideals.update(_share_faces(sectors))
    return ideals


def _share_faces(sectors: dict[tuple[int, int], float]) -> dict[tuple[int, int], int]:
    """Ideal face counts of one vertex's sectors from their angle sums (degrees): the vertex's total,
    ``round(sum / 90)`` (4 inside a smooth or creased surface, 2 on a straight border, 3 at a box's
    corner), shared in proportion to the angles by largest remainder, at least 1 each."""
    total = max(int(round(sum(sectors.values()) / 90.0)), len(sectors))
    angle = max(sum(sectors.values()), 1e-9)
    quota = {k: total * a / angle for k, a in sectors.items()}
    share = {k: max(int(q), 1) for k, q in quota.items()}
    by_remainder = sorted(sectors, key=lambda k: quota[k] - share[k], reverse=True)
    i = 0
    while sum(share.values()) < total:
        share[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    for k in reversed(by_remainder):
        if sum(share.values()) <= total:
            break
        if share[k] > 1:
            share[k] -= 1
    return share


class _Rewiring:
    """The mutable quad layout the operations work on: faces by id, faces per vertex, and a queue of
    quads next to a pole."""

    def __init__(self, v: np.ndarray, p: np.ndarray, special: np.ndarray, frozen: np.ndarray, locked: np.ndarray,
                 border: np.ndarray, sector_ideal: dict[tuple[int, int], int]):
        self.v, self.border = v, border.tolist()
        self.xyz = [tuple(row) for row in v.tolist()]
        self.special, self.frozen = special.tolist(), frozen.tolist()
        self.locked = {(int(a), int(b)) for a, b in np.sort(locked, axis=1).tolist()}
        self.faces: dict[int, list[int]] = {i: [c for c in row if c >= 0] for i, row in enumerate(p.tolist())}
        self.around: list[set[int]] = [set() for _ in range(len(v))]
        for i, corners in self.faces.items():
            for c in corners:
                self.around[c].add(i)
        self.touched = np.zeros(len(v), dtype=bool)
        self.rotations = self.collapses = 0
        self.floor = -1
        self._fans: dict[int, dict[int, tuple[tuple[int, int], int]]] = {}
        # Ideal face counts of the sectors of border and crease vertices (see _sector_ideals).
        self.sector_ideal = sector_ideal

    def sector(self, x: int, g: int) -> tuple[tuple[int, int], int]:
        """The sector of vertex ``x`` that face ``g`` lies in (its faces between two locked edges at
        ``x``; all of them for a free vertex): its key and its face count."""
        if not self.special[x]:
            return (x, -1), len(self.around[x])
        fan = self._fans.get(x)
        if fan is None:
            fan = self._fans[x] = self._partition(x)
        return fan[g]

    def _partition(self, x: int) -> dict[int, tuple[tuple[int, int], int]]:
        """Each face around the border or crease vertex ``x`` -> its sector's key and face count:
        walk round from a face both ways until a locked edge (or a border) stops the walk."""
        out: dict[int, tuple[tuple[int, int], int]] = {}
        for g in sorted(self.around[x]):
            if g in out:
                continue
            members, key, whole = {g}, None, False
            for step in (1, -1):                        # toward the corner after x, then before it
                h = g
                while True:
                    corners = self.faces[h]
                    y = corners[(corners.index(x) + step) % len(corners)]
                    if self.is_locked(x, y):
                        key = key or (x, y)
                        break
                    nxt = (self.around[x] & self.around[y]) - {h}
                    if len(nxt) != 1:                   # a border edge (locked too) or a tangle: stop
                        key = key or (x, y)
                        break
                    h = next(iter(nxt))
                    if h == g:                           # all the way round (no locked edge): one sector
                        whole = True
                        break
                    members.add(h)
                if whole:
                    break
            found = ((x, -2) if whole else key, len(members))
            out.update((h, found) for h in members)
        return out

    def _changed(self, vertices) -> None:
        """Forget the sectors of ``vertices`` (their fans changed)."""
        for x in vertices:
            self._fans.pop(x, None)

    def change(self, x: int, delta: int, g: int) -> int:
        """How much vertex ``x``'s excess changes when the sector holding its face ``g`` gains ``delta`` faces."""
        if self.special[x]:
            key, count = self.sector(x, g)
            now = count - self.sector_ideal.get(key, 4)
        else:
            now = len(self.around[x]) - 4
        return delta * (2 * now + delta)                   # (now + delta)^2 - now^2

    def off(self, x: int) -> bool:
        """Whether some sector of ``x`` has other than its ideal face count."""
        if not self.special[x]:
            return len(self.around[x]) != 4
        return any(count != self.sector_ideal.get(key, 4) for key, count in (self.sector(x, g) for g in self.around[x]))

    def can_lose(self, x: int) -> bool:
        """An interior vertex keeps at least :data:`MIN_INTERIOR_FACES` faces (valence 2 only bends an edge)."""
        return self.border[x] or len(self.around[x]) > MIN_INTERIOR_FACES

    def rotation(self, f: int, k: int, s: int, accept=None):
        """Turning edge ``k`` of quad ``f`` (its corners ``k``, ``k + 1``) so that hexagon corners
        ``s`` and ``s + 3`` gain it: (excess change, other quad, new corners of both, hexagon), or
        None where it is locked, frozen, on a border, would fold, or ``accept(gain, (a, b, x, y))``
        (the losing ends, then the gainers) says no."""
        q, around, frozen = self.faces[f], self.around, self.frozen
        a, b = q[k], q[(k + 1) % 4]
        if frozen[a] or frozen[b] or self.is_locked(a, b) or not (self.can_lose(a) and self.can_lose(b)):
            return None
        shared = (around[a] & around[b]) - {f}
        if len(shared) != 1:
            return None
        g = next(iter(shared))
        other = self.faces[g]
        if len(other) != 4 or other[(other.index(b) + 1) % 4] != a:      # inconsistent winding: leave it
            return None
        j = other.index(b)
        ring = [b, q[(k + 2) % 4], q[(k + 3) % 4], a, other[(j + 2) % 4], other[(j + 3) % 4]]
        x, y = ring[s], ring[s + 3]
        if len(set(ring)) != 6 or frozen[x] or frozen[y]:
            return None
        gain = self.change(a, -1, f) + self.change(b, -1, f) + self.change(x, 1, f) + self.change(y, 1, g)
        if (accept is not None and not accept(gain, (a, b, x, y))) or around[x] & around[y]:
            return None
        new = ([ring[s], ring[s + 1], ring[s + 2], ring[s + 3]],
               [ring[s + 3], ring[(s + 4) % 6], ring[(s + 5) % 6], ring[s]])
        return (gain, g, new, ring) if self._faces_agree(q, other, new) else None

    def relaxed_worst(self, centre, replaced: dict, gone: set, *, moved: dict | None = None,
                      passes: int = 4) -> float:
        """The largest quad corner angle around ``centre`` (vertices) once the faces in ``replaced``
        take their new corners (None: removed), the vertices in ``gone`` are merged away and those in
        ``moved`` placed, and the free vertices of ``centre`` (off creases and borders) are moved to
        their neighbours' mean ``passes`` times: what an operation leaves for the relaxing to open."""
        faces = {}
        for x in centre:
            for g in self.around[x]:
                corners = replaced[g] if g in replaced else self.faces[g]
                if corners is not None:
                    faces[g] = corners
        for g, corners in replaced.items():
            if corners is not None:
                faces[g] = corners
        at = {x: self.v[x] for corners in faces.values() for x in corners}
        at.update(moved or {})
        free = [x for x in dict.fromkeys(centre) if x not in gone and not self.special[x] and not self.frozen[x]]
        near = {x: set() for x in free}
        for corners in faces.values():
            for i, x in enumerate(corners):
                if x in near:
                    near[x].update((corners[i - 1], corners[(i + 1) % len(corners)]))
        for _ in range(passes):
            for x in free:
                at[x] = np.mean([at[y] for y in near[x]], axis=0)
        quads = [corners for corners in faces.values() if len(corners) == 4]
        if not quads:
            return 0.0
        return float(poly.corner_angles(np.array([[at[x] for x in corners] for corners in quads])).max())

    def result(self) -> tuple[np.ndarray, np.ndarray, PoleReport]:
        """The rewired layout: vertices (unused ones removed), ``(k', 4)`` polygons in face-id order, report."""
        out = np.array([self.faces[f] + [poly.NO_CORNER] * (4 - len(self.faces[f])) for f in sorted(self.faces)],
                       dtype=np.int64).reshape(-1, 4)
        return _compacted(self.v, out, PoleReport(self.rotations, self.collapses, self.touched))

    def largest_angle(self, faces) -> float:
        """The largest corner angle (degrees, concave corners above 180) of the quads among ``faces``."""
        quads = [self.faces[g] for g in faces if len(self.faces[g]) == 4]
        return float(poly.corner_angles(self.v[np.array(quads)]).max()) if quads else 0.0

    def is_locked(self, a: int, b: int) -> bool:
        return ((a, b) if a < b else (b, a)) in self.locked

    def run(self) -> None:
        """Direct improvements until none is left, then ones after one zero-cost rotation (each
        followed by any direct ones they open), then after two, up to :data:`SHIFT_DEPTH`."""
        self._sweep(shifts=0)
        for depth in range(1, SHIFT_DEPTH + 1):
            self._sweep(shifts=depth)

    def _sweep(self, *, shifts: int) -> None:
        around, frozen = self.around, self.frozen
        # The most a vertex's excess can drop by gaining a face, to skip hopeless rotations early.
        self.floor = min([self.change(x, 1, g) for x in range(len(around)) for g in list(around[x])[:1]
                          if not self.special[x]] + [-1])
        self.floor = min(self.floor, -1 - 2 * max([0] + [i - 1 for i in self.sector_ideal.values()]))
        queue = [f for f, c in self.faces.items() if len(c) == 4 and any(
            not frozen[x] and self.off(x) for x in c)]
        queued = set(queue)
        budget = SWEEP_CHANGES_PER_FACE * len(self.faces) + SWEEP_CHANGES_EXTRA
        while queue:
            f = queue.pop()
            queued.discard(f)
            if f not in self.faces or len(self.faces[f]) != 4:
                continue
            changed = self._collapse_best(f) or self._rotate_best(f) or (
                self._shift_best(f, shifts) if shifts and self._has_partner(f) else None)
            if changed:
                budget -= 1
                if budget < 0:
                    log.debug("poles: a sweep stopped at its budget of changes (the layout cycles)")
                    break
                for x in changed:
                    for g in sorted(around[x]):
                        if g not in queued and len(self.faces[g]) == 4:
                            queue.append(g)
                            queued.add(g)

    def _has_partner(self, f: int) -> bool:
        """Whether a pole of quad ``f`` has one of the other kind (too many faces against too few)
        within two rings: only then can a few steps make them cancel."""
        for x in self.faces[f]:
            if self.frozen[x] or not self.off(x):
                continue
            over = len(self.around[x]) > 4 if not self.special[x] else None
            ring = {y for g in self.around[x] for y in self.faces[g]}
            ring |= {z for y in ring for g in self.around[y] for z in self.faces[g]}
            for y in ring - {x}:
                if self.frozen[y] or not self.off(y):
                    continue
                if over is None or self.special[y] or (len(self.around[y]) > 4) != over:
                    return True
        return False

    # -- diagonal collapse ------------------------------------------------------------------

    def _collapse_best(self, f: int) -> list[int] | None:
        best = min((o for o in self.collapses_of(f) if o[0] < 0), key=lambda o: o[0], default=None)
        return self.collapse(f, best[1], best[2]) if best is not None else None

    def collapses_of(self, f: int, *, degenerate: bool = False):
        """Diagonal collapses of quad ``f`` that keep the mesh manifold and fold nothing: (excess
        change, the vertex kept, the one merged into it), the free one merging into a fixed one.
        A ``degenerate`` quad (no area: its corners on one line, as where several vertices landed on
        one crease) may also merge two crease or border vertices, and lose locked edges (each pair of
        them merges into one)."""
        q, frozen, special = self.faces[f], self.frozen, self.special
        if any(frozen[x] for x in q) or (not degenerate and any(self.is_locked(q[k], q[(k + 1) % 4])
                                                                for k in range(4))):
            return
        for k in (0, 1):
            a, b, c, d = q[k], q[k + 1], q[(k + 2) % 4], q[(k + 3) % 4]
            if special[a] and special[c] and not degenerate:
                continue
            if special[c]:
                a, c = c, a                                  # the free vertex merges into the fixed one
            if not (self.can_lose(b) and self.can_lose(d)):
                continue
            key, count = self.sector(a, f)
            ideal = self.sector_ideal.get(key, 4)
            merged = count + len(self.around[c]) - 2 - ideal
            gain = (merged * merged - (count - ideal) ** 2 - (len(self.around[c]) - 4) ** 2
                    + self.change(b, -1, f) + self.change(d, -1, f))
            if self._can_merge(f, a, c):
                yield gain, a, c

    def collapse(self, f: int, a: int, c: int) -> list[int]:
        """Merge ``c`` into ``a`` across quad ``f`` (removed); returns the corners left, ``[a, b, d]``."""
        q, special = self.faces[f], self.special
        b, d = (x for x in q if x not in (a, c))
        for x in q:
            self.around[x].discard(f)
        del self.faces[f]
        if not special[a]:
            self.v[a] = (self.v[a] + self.v[c]) / 2.0
            self.xyz[a] = tuple(self.v[a].tolist())
        for g in self.around[c]:
            self.faces[g] = [a if x == c else x for x in self.faces[g]]
            self.around[a].add(g)
        self.around[c] = set()
        self._changed({y for h in self.around[a] for y in self.faces[h]} | {b, c, d})
        self.collapses += 1
        self.touched[[a, b, d]] = True
        return [a, b, d]

    def _can_merge(self, f: int, a: int, c: int) -> bool:
        """Merging ``c`` into ``a`` (at their midpoint, or at ``a`` when it is on a border or crease)
        keeps the mesh manifold (they share no neighbour but the quad's other corners) and folds no
        face around them."""
        q = self.faces[f]
        if self.around[a] & self.around[c] != {f}:
            return False
        near_a = {x for g in self.around[a] for x in self.faces[g]}
        near_c = {x for g in self.around[c] for x in self.faces[g]}
        if near_a & near_c != set(q):
            return False
        xyz = self.xyz
        mid = xyz[a] if self.special[a] else tuple((s + t) / 2.0 for s, t in zip(xyz[a], xyz[c]))
        for g in (self.around[a] | self.around[c]) - {f}:
            corners = self.faces[g]
            before = _normal([xyz[x] for x in corners])
            after = _normal([mid if x in (a, c) else xyz[x] for x in corners])
            if _dot(before, after) < MIN_NORMAL_COSINE:
                return False
        return True

    # -- edge rotation ----------------------------------------------------------------------

    def _rotate_best(self, f: int) -> list[int] | None:
        best = min(self._rotations(f, allow_zero=False), key=lambda r: r[0], default=None)
        return self._rotate(f, *best[1:]) if best is not None else None

    def _rotations(self, f: int, *, allow_zero: bool):
        """Rotations of the edges of quad ``f`` that lower the excess (or keep it, with
        ``allow_zero``, when they move a pole): (gain, other quad, new corners of both, hexagon)."""
        q = self.faces[f]

        def lowers(gain: int, touched: tuple[int, int, int, int]) -> bool:
            return gain < 0 or (allow_zero and gain == 0 and any(self.off(z) for z in touched))

        for k in range(4):
            a, b = q[k], q[(k + 1) % 4]
            if self.frozen[a] or self.frozen[b] or self.is_locked(a, b) or not (self.can_lose(a) and self.can_lose(b)):
                continue
            if self.change(a, -1, f) + self.change(b, -1, f) + 2 * self.floor > (0 if allow_zero else -1):
                continue                                     # no pair of gainers could make up for it
            for s in (1, 2):
                found = self.rotation(f, k, s, lowers)
                if found is not None:
                    yield found

    def _rotate(self, f: int, g: int, new: tuple[list[int], list[int]], ring: list[int]) -> list[int]:
        self._changed(ring)
        for face, corners in zip((f, g), new):
            for x in self.faces[face]:
                self.around[x].discard(face)
            self.faces[face] = corners
            for x in corners:
                self.around[x].add(face)
        self.rotations += 1
        self.touched[ring] = True
        return ring

    # -- several steps -----------------------------------------------------------------------

    def _shift_best(self, f: int, depth: int = 1) -> list[int] | None:
        """A rotation that changes nothing by itself (it moves a pole by one edge) kept only when it
        opens a rotation or collapse that lowers the excess, or (``depth`` > 1) another such rotation
        that does: how a 3-5 pair walks to its partner."""
        for _, g, new, ring in list(self._rotations(f, allow_zero=True)):
            before, touched = (list(self.faces[f]), list(self.faces[g])), self.touched[ring].copy()
            self._rotate(f, g, new, ring)
            moved_poles = [x for x in ring if self.off(x) and not self.frozen[x]]
            for h in sorted({h for x in moved_poles for h in self.around[x]}):
                if len(self.faces[h]) == 4:
                    follow = self._collapse_best(h) or self._rotate_best(h) or (
                        self._shift_best(h, depth - 1) if depth > 1 else None)
                    if follow:
                        return ring + follow
            self._rotate(f, g, before, ring)                       # no follow-up: undo
            self.touched[ring] = touched
            self.rotations -= 2
        return None

    def _faces_agree(self, q1: list[int], q2: list[int], new: tuple[list[int], list[int]]) -> bool:
        xyz = self.xyz
        reference = _unit([s + t for s, t in zip(_normal([xyz[x] for x in q1]), _normal([xyz[x] for x in q2]))])
        return all(_dot(_normal([xyz[x] for x in n]), reference) >= MIN_NORMAL_COSINE for n in new)


# Plain-float vector helpers: the operations look at a handful of points at a time, where numpy's
# per-call overhead would dominate.

def _normal(corners: list) -> tuple[float, float, float]:
    """Unit normal of a triangle or quad (a quad's from the cross product of its diagonals)."""
    p0, p1, p2 = corners[0], corners[1], corners[2]
    if len(corners) == 4:
        u = (p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2])
        p3 = corners[3]
        w = (p3[0] - p1[0], p3[1] - p1[1], p3[2] - p1[2])
    else:
        u = (p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2])
        w = (p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2])
    return _unit((u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]))


def _unit(n) -> tuple[float, float, float]:
    length = max(math.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]), 1e-300)
    return n[0] / length, n[1] / length, n[2] / length


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
