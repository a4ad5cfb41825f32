"""Opening near-triangle quads: tangential relaxation of the vertices where a quad's corner is almost flat.

A quad with a corner near 180 degrees is a triangle with an extra vertex on one side: Instant
Meshes leaves them where its field bends (and triangle pairing where it closes a path). The
vertex at such a corner sits almost on the line between its two neighbours in that quad, so
its other corners share what is left of 360 degrees. Moving it to the mean of its edge
neighbours, within its tangent plane, spreads the angles evenly (a valence-3 vertex gets about
120 degrees per corner), and putting it back on the reference surface keeps the shape. Only
those vertices move; a concave corner (a dart: :func:`backend.mesh.polygons.corner_angles`)
counts as one above 180 degrees and is opened the same way. Border vertices stay; a vertex on
one of the reference's creases (:class:`CreaseLines`) slides along it and stays on it; one at a
crease corner (where three or more crease lines meet, or one ends) stays. Connectivity never
changes.

The neighbours' mean does not open every corner: a step that would fold a polygon is refused,
and a vertex on a crease that runs straight through its corner cannot open it by sliding.
:func:`widen_flat_corners` then tries, for each quad still above 160 degrees, a ring of points
around each of its corners that may move (on the surface, or along the crease; given the
reference's open borders, a border vertex on one slides along it too) and keeps, per
vertex, the one that leaves the fewest such quads around it and the smallest largest angle, if
no polygon around it turns over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.mesh import native
from backend.mesh import polygons as poly

#: Corners above this (degrees) get their vertex relaxed: a margin under the 160 degrees an artist rejects.
RELAX_ABOVE_DEGREES = 150.0
#: Passes (each recomputes the angles; a pass moves only vertices still at an open corner).
PASSES = 8
#: Passes that move the ``also`` vertices whatever their angles.
ALSO_PASSES = 3
#: Share of the way to the neighbours' mean taken per pass.
STEP = 0.7
#: Corners above this (degrees) get their vertex moved by :func:`widen_flat_corners`.
FLAT_DEGREES = 160.0
#: Where it may go: this many directions in its tangent plane (two along a crease) ...
WIDEN_DIRECTIONS = 12
#: ... at these fractions of its mean edge length.
WIDEN_STEPS = (0.05, 0.1, 0.2, 0.3, 0.45)
#: Rounds (each recomputes the angles and tries every vertex still at a flat corner).
WIDEN_ROUNDS = 3
#: A border vertex slides along the reference's border only where the layout's border runs on
#: through it within this angle of straight (degrees between its two border edges).
STRAIGHT_BORDER_DEGREES = 150.0
#: A polygon around a moved vertex keeps its normal within this cosine of its old one, and at
#: least this share of its area.
WIDEN_MIN_COSINE = 0.3
WIDEN_MIN_AREA = 0.1
#: Scores (open quads x 1000 + the largest angle, degrees) closer than this are equal: a move
#: must gain more, and of equal points the first is taken (the largest angle is often a corner
#: the move does not touch, equal but for rounding; near 180 degrees the arc cosine's rounding
#: alone is about 1e-6 degrees).
WIDEN_GAIN = 1e-3


class CreaseLines:
    """The reference's crease segments: which points lie on them, their direction there, and
    the nearest point on them.

    ``a``, ``b``: ``(s, 3)`` segment ends; ``tolerance``: how near counts as on a crease.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, tolerance: float, *, ends: np.ndarray | None = None):
        """``ends`` (optional, ``(s, 2)`` int): the segments' end vertices, which name the crease
        corners exactly; without them, ends are matched by position."""
        from scipy.spatial import cKDTree

        self.a, self.b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.tolerance = float(tolerance)
        length = np.linalg.norm(self.b - self.a, axis=1)
        n = np.maximum(np.ceil(length / max(self.tolerance, 1e-12)).astype(np.int64), 1)
        self.owner = np.repeat(np.arange(len(n)), n)
        t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[self.owner]
        self.tree = cKDTree(self.a[self.owner] + t[:, None] * (self.b - self.a)[self.owner])
        # Crease corners: segment ends not shared by exactly two segments.
        if ends is None:
            ends = np.unique(np.round(np.vstack([self.a, self.b]) / max(self.tolerance * 1e-3, 1e-12)).astype(np.int64),
                             axis=0, return_inverse=True)[1].reshape(2, -1).T
        ends = np.asarray(ends).reshape(-1, 2)
        counts = np.bincount(ends.ravel())
        corner = counts[ends.T.ravel()] != 2
        self.corners = np.vstack([self.a, self.b])[corner]
        self.corner_tree = cKDTree(self.corners) if len(self.corners) else None

    def nearest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each point: the nearest point on a crease, its distance and the crease's unit direction.

        Exact within :data:`EXACT_WITHIN` tolerances of a crease (the segments of the four nearest
        samples); farther out, the segment of the nearest sample, at most half a tolerance farther
        than the nearest one (samples lie a tolerance apart at most), which no "on a crease" test
        can tell apart and which most points of a layout are."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        distance, idx = self.tree.query(points, k=1)
        seg = self.owner[np.asarray(idx).reshape(-1)]
        near, d, direction = self._onto(points, seg[:, None])
        close = np.flatnonzero(distance <= self.EXACT_WITHIN * self.tolerance)
        k = min(4, self.tree.n)
        if len(close) and k > 1:
            _, idx = self.tree.query(points[close], k=k)
            near[close], d[close], direction[close] = self._onto(points[close], self.owner[np.asarray(idx).reshape(len(close), k)])
        return near, d, direction

    #: Points within this many tolerances of a crease sample are projected exactly (:meth:`nearest`).
    EXACT_WITHIN = 3.0

    def on(self, points: np.ndarray) -> np.ndarray:
        """Whether each point lies on a crease (within the tolerance): as :meth:`nearest`'s
        distance, but only the points near a sample are projected (samples lie a tolerance apart at
        most, so a point on a crease is within 1.5 tolerances of one); most points of a layout are
        not, and the tree gives them up early."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        distance, _ = self.tree.query(points, k=1, distance_upper_bound=1.5 * self.tolerance * (1.0 + 1e-9))
        out = np.zeros(len(points), dtype=bool)
        close = np.flatnonzero(np.isfinite(distance))
        if len(close):
            out[close] = self.nearest(points[close])[1] <= self.tolerance
        return out

    def _onto(self, points: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest of the segments ``seg`` (p, k) to each point: point, distance, unit direction."""
        a, b = self.a[seg], self.b[seg]
        ab = b - a
        t = np.clip(((points[:, None, :] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0.0, 1.0)
        near = a + t[..., None] * ab
        d = np.linalg.norm(near - points[:, None, :], axis=-1)
        best = np.argmin(d, axis=1)
        rows = np.arange(len(points))
        direction = ab[rows, best] / np.maximum(np.linalg.norm(ab[rows, best], axis=1), 1e-300)[:, None]
        return near[rows, best], d[rows, best], direction

    def edges_on(self, vertices: np.ndarray, polygons: np.ndarray, *, sag: float = 0.2) -> np.ndarray:
        """The polygon edges ``(e, 2)`` that follow a crease: both ends on it (within the tolerance)
        and the midpoint within ``sag`` of the edge's length from it (a chord of a curved crease
        sags; an edge across a face between two creases does not come near either)."""
        edges, _, _ = poly.edge_counts(polygons)
        if len(edges) == 0:
            return edges
        edges = edges[self.on(vertices)[edges].all(axis=1)]
        ends = vertices[edges]
        _, mid_distance, _ = self.nearest(ends.mean(axis=1))
        return edges[mid_distance <= sag * np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1) + self.tolerance]

    def at_corner(self, points: np.ndarray) -> np.ndarray:
        if self.corner_tree is None:
            return np.zeros(len(points), dtype=bool)
        d, _ = self.corner_tree.query(points)
        return d <= self.tolerance


def relax_open_corners(vertices: np.ndarray, polygons: np.ndarray, closest: Callable[[np.ndarray], np.ndarray], *,
                       creases: CreaseLines | None = None, above_degrees: float = RELAX_ABOVE_DEGREES,
                       passes: int = PASSES, also: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Relax the vertices at quad corners above ``above_degrees`` (module doc).

    ``closest`` maps points to the reference surface; ``creases`` (optional) holds the
    reference's crease lines; ``also`` (optional, (n,) bool) marks vertices relaxed in every pass
    whatever their angles in the first :data:`ALSO_PASSES` passes (where the layout was just rewired). Returns the new vertices and how
    many vertices moved at least once.
    """
    v = np.asarray(vertices, dtype=np.float64).copy()
    p = np.asarray(polygons, dtype=np.int64)
    if len(p) == 0 or not (p[:, 3] != poly.NO_CORNER).any():
        return v, 0
    src, _, face, _ = poly.halfedges(p)
    edges, counts, edge_of = poly.edge_counts(p)
    pinned, on_crease = _held(v, src[counts[edge_of] == 1], creases)
    degree = np.bincount(edges.ravel(), minlength=len(v)).astype(np.float64)
    moved = np.zeros(len(v), dtype=bool)
    always = np.flatnonzero(also) if also is not None else np.zeros(0, dtype=np.int64)
    rows, angles = poly.quad_corner_angles(v, p)
    row_of = np.full(len(p), -1, dtype=np.int64)
    row_of[rows] = np.arange(len(rows))
    # Each pass works on the polygons around its candidates only (the sums keep their order,
    # so the result is the same as over the whole layout), and updates the angles of the quads
    # around the vertices it moved.
    for round_ in range(passes):
        if round_ == ALSO_PASSES:
            always = always[:0]                     # the rewired vertices have settled; open corners go on
        open_corner = angles > above_degrees
        if not open_corner.any() and len(always) == 0:
            break
        candidates = np.union1d(p[rows][open_corner], always)
        candidates = candidates[~pinned[candidates]]
        if len(candidates) == 0:
            break
        is_candidate = np.zeros(len(v), dtype=bool)
        is_candidate[candidates] = True
        # Mean of the edge neighbours (quad diagonals are not edges).
        total = np.zeros_like(v)
        first, second = is_candidate[edges[:, 0]], is_candidate[edges[:, 1]]
        np.add.at(total, edges[first, 0], v[edges[first, 1]])
        np.add.at(total, edges[second, 1], v[edges[second, 0]])
        delta = total[candidates] / np.maximum(degree[candidates], 1.0)[:, None] - v[candidates]
        at_candidate = is_candidate[src]
        around = np.unique(face[at_candidate])
        normals = np.zeros((len(p), 3))
        normals[around] = poly.polygon_normals(v, p[around])
        normals[around] /= np.maximum(np.linalg.norm(normals[around], axis=1), 1e-300)[:, None]
        normal = np.zeros_like(v)
        np.add.at(normal, src[at_candidate], normals[face[at_candidate]])
        n = normal[candidates] / np.maximum(np.linalg.norm(normal[candidates], axis=1), 1e-300)[:, None]
        delta -= (delta * n).sum(1)[:, None] * n                          # stay in the tangent plane
        moved_to = closest(v[candidates] + STEP * delta)
        sliding = on_crease[candidates]
        if sliding.any():
            # On a crease: only along it, and back onto it.
            _, _, direction = creases.nearest(v[candidates[sliding]])
            along = (delta[sliding] * direction).sum(1)[:, None] * direction
            moved_to[sliding], _, _ = creases.nearest(v[candidates[sliding]] + STEP * along)
        target = v.copy()
        target[candidates] = moved_to
        step = np.zeros(len(v), dtype=bool)
        step[candidates] = True
        v, step = poly.guarded_moves(v, target, step, p[around])    # no move may fold or flatten a polygon
        moved |= step
        changed = np.unique(face[step[src]])
        changed = changed[row_of[changed] >= 0]
        angles[row_of[changed]] = poly.corner_angles(v[p[changed]])
    return v, int(moved.sum())


def widen_flat_corners(vertices: np.ndarray, polygons: np.ndarray, closest: Callable[[np.ndarray], np.ndarray], *,
                       creases: CreaseLines | None = None, borders: CreaseLines | None = None,
                       above_degrees: float = FLAT_DEGREES, rounds: int = WIDEN_ROUNDS) -> tuple[np.ndarray, int]:
    """Open the quads with a corner above ``above_degrees`` by moving their corners, one vertex at a
    time, to sampled points nearby (module doc).

    Each round tries the vertex at each such corner, and after the first round also the other
    corners of those quads, while a quad around it is still open. The points: :data:`WIDEN_DIRECTIONS` directions in the vertex's
    tangent plane (from its polygons' normals, at the round's start) at each of :data:`WIDEN_STEPS`,
    put back on the surface with ``closest``; for a
    vertex on a crease of ``creases``, the two directions along it, put back on it. Border vertices
    and crease corners stay, but for a border vertex on one of ``borders`` (the reference's open
    borders, optional; not at one of their corners, nor on a crease, and where the layout's border
    runs on nearly straight: :data:`STRAIGHT_BORDER_DEGREES`), which slides along it the same
    way: a quad beside a border can have all its room on the border side (the teapot at 5,000
    quads kept a sliver beside its open bottom). ``polygons`` must then be the whole layout: a
    border vertex of a patch of it is not on the layout's border. The point taken leaves fewer
    open quads around the vertex, or as many with a smaller largest angle, and keeps every
    polygon around it facing its way
    (:data:`WIDEN_MIN_COSINE`) and at least :data:`WIDEN_MIN_AREA` of its area. Returns the new
    vertices and how many vertices moved.
    """
    v = np.asarray(vertices, dtype=np.float64).copy()
    p = np.asarray(polygons, dtype=np.int64)
    is_quad = p[:, 3] != poly.NO_CORNER if len(p) else np.zeros(0, dtype=bool)
    if not is_quad.any():
        return v, 0
    # Triangles padded with their first corner: the diagonal cross product is then their normal.
    padded = np.where(is_quad[:, None], p, p[:, [0, 1, 2, 0]])
    src, dst, face, _ = poly.halfedges(p)
    order = np.argsort(src, kind="stable")
    start = np.searchsorted(src[order], np.arange(len(v) + 1))
    faces_at = face[order]                                       # faces_at[start[x]:start[x + 1]]: x's polygons
    edges, counts, edge_of = poly.edge_counts(p)
    open_ = counts[edge_of] == 1
    border = np.unique(src[open_])
    pinned, on_crease = _held(v, border, creases)
    on_border = np.zeros(len(v), dtype=bool)
    if borders is not None and len(border):
        free = _straight_border(v, src[open_], dst[open_])
        free = free[~on_crease[free]]
        free = free[borders.on(v[free])]
        free = free[~borders.at_corner(v[free])]
        on_border[free] = True
        pinned[free] = False
    turn = np.linspace(0.0, 2.0 * np.pi, WIDEN_DIRECTIONS, endpoint=False)
    steps = np.asarray(WIDEN_STEPS, dtype=np.float64)[None, :, None, None]
    moved = np.zeros(len(v), dtype=bool)
    for round_ in range(rounds):
        rows, angles = poly.quad_corner_angles(v, p)
        flat = angles.max(axis=1) > above_degrees
        if not flat.any():
            break
        # The vertex at the open corner; from the second round on, also the quad's other corners,
        # which can open it too (where that vertex is on a border, or on a crease that runs
        # straight through it).
        first = p[rows[flat], angles[flat].argmax(axis=1)]
        at = np.concatenate([first, np.setdiff1d(p[rows[flat]].ravel(), first)]) if round_ else first
        at = at[~pinned[at]]
        at = at[np.sort(np.unique(at, return_index=True)[1])]
        candidates = _ring_points(v, p, src, face, edges, at, on_crease, creases, closest, turn, steps,
                                  on_border=on_border, borders=borders)
        moved_now = _widen_in_order(v, at, candidates, faces_at, start, padded, is_quad, above_degrees)
        moved[at[moved_now]] = True
        # A round that moves nothing ends it, but for the first: the vertices at the open
        # corners may all be held (crease corners, border vertices), and the others come next.
        if not moved_now.any() and round_:
            break
    return v, int(moved.sum())


def _widen_in_order(v: np.ndarray, at: np.ndarray, candidates: list[np.ndarray], faces_at: np.ndarray,
                    start: np.ndarray, padded: np.ndarray, is_quad: np.ndarray, above_degrees: float) -> np.ndarray:
    """Move each vertex of ``at``, in order, to the best of its ``candidates`` (:func:`widen_flat_corners`),
    in place in ``v``; returns (len(at),) bool, which moved. ``faces_at[start[x]:start[x + 1]]``: the
    polygons around ``x``; ``padded``: the polygons with each triangle's first corner repeated.
    Compiled (``widen_in_order`` of ``backend/mesh/_native.c``) when it is built."""
    if native.available():
        return native.widen_in_order(v, at, candidates, faces_at, start, padded, is_quad, above_degrees,
                                     WIDEN_MIN_COSINE, WIDEN_MIN_AREA, WIDEN_GAIN)
    moved = np.zeros(len(at), dtype=bool)
    for i, (x, points_x) in enumerate(zip(at.tolist(), candidates)):
        fs = faces_at[start[x]:start[x + 1]]
        corners = padded[fs]
        points = v[corners]                                              # (m, 4, 3)
        now = poly.corner_angles(points[is_quad[fs]]).max(axis=-1)
        worst = (int((now > above_degrees).sum()), float(now.max()))
        if worst[0] == 0:
            continue                                     # opened already by a neighbour's move
        normals = _diagonal_normals(points)
        trial = np.broadcast_to(points, (len(points_x),) + points.shape).copy()     # (c, m, 4, 3)
        trial[:, corners == x] = points_x[:, None, :]
        after = _diagonal_normals(trial)
        size_before, size_after = np.linalg.norm(normals, axis=-1), np.linalg.norm(after, axis=-1)
        keeps = ((after * normals).sum(-1) >= WIDEN_MIN_COSINE * size_before * size_after) \
            & (size_after >= WIDEN_MIN_AREA * size_before)
        largest = poly.corner_angles(trial[:, is_quad[fs]]).max(axis=-1)            # (c, quads)
        # Fewer open quads first, then a smaller largest angle.
        score = (largest > above_degrees).sum(axis=1) * 1000.0 + largest.max(axis=1)
        score[~keeps.all(axis=1)] = np.inf
        best = int(np.argmax(score <= score.min() + WIDEN_GAIN))
        if score[best] < worst[0] * 1000.0 + worst[1] - WIDEN_GAIN:
            v[x] = points_x[best]
            moved[i] = True
    return moved


def _straight_border(v: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The vertices of a layout's border half-edges ``src -> dst`` that the border passes once and
    nearly straight (its two edges there at least :data:`STRAIGHT_BORDER_DEGREES` apart): where it
    turns (a sheet's corner), a vertex sliding along it would cut the corner off."""
    once = np.bincount(src, minlength=len(v)) == 1
    once &= np.bincount(dst, minlength=len(v)) == 1
    nxt = np.full(len(v), -1, dtype=np.int64)
    prev = np.full(len(v), -1, dtype=np.int64)
    nxt[src], prev[dst] = dst, src
    at = np.flatnonzero(once)
    a, b = v[prev[at]] - v[at], v[nxt[at]] - v[at]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    return at[cos <= np.cos(np.radians(STRAIGHT_BORDER_DEGREES))]


def _held(v: np.ndarray, border: np.ndarray, creases: CreaseLines | None) -> tuple[np.ndarray, np.ndarray]:
    """(n,) bool each: the vertices that stay (on the ``border`` vertices, or at a crease corner) and
    those on a crease (they only slide along it)."""
    pinned = np.zeros(len(v), dtype=bool)
    pinned[border] = True
    on_crease = np.zeros(len(v), dtype=bool)
    if creases is not None:
        on_crease = creases.on(v)
        on = np.flatnonzero(on_crease)
        pinned[on[creases.at_corner(v[on])]] = True
    return pinned, on_crease


def _ring_points(v: np.ndarray, p: np.ndarray, src: np.ndarray, face: np.ndarray,
                 edges: np.ndarray, at: np.ndarray, on_crease: np.ndarray, creases: CreaseLines | None,
                 closest: Callable[[np.ndarray], np.ndarray], turn: np.ndarray, steps: np.ndarray, *,
                 on_border: np.ndarray | None = None, borders: CreaseLines | None = None) -> list[np.ndarray]:
    """The points :func:`widen_flat_corners` tries for each vertex of ``at``, all projected at once:
    a list of ``(c, 3)`` arrays. ``steps`` (1, s, 1, 1) are fractions of the vertex's mean edge length.
    Vertices on a crease (``on_crease``) slide along ``creases``, those marked ``on_border`` along
    ``borders``."""
    n = np.zeros_like(v)
    np.add.at(n, src, poly.polygon_normals(v, p)[face])                  # area-weighted vertex normals
    n /= np.maximum(np.linalg.norm(n, axis=1), 1e-300)[:, None]
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    reach = np.bincount(edges.ravel(), np.repeat(length, 2), minlength=len(v)) \
        / np.maximum(np.bincount(edges.ravel(), minlength=len(v)), 1)
    out: list[np.ndarray] = [np.zeros((0, 3))] * len(at)
    on_border = np.zeros(len(v), dtype=bool) if on_border is None else on_border
    sliding = on_crease[at] | on_border[at]
    free = at[~sliding]
    if len(free):
        nf = n[free]
        u = poly.cross(nf, np.where((np.abs(nf[:, 0]) < 0.9)[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
        u /= np.maximum(np.linalg.norm(u, axis=1), 1e-300)[:, None]
        w = poly.cross(nf, u)
        directions = np.cos(turn)[None, :, None] * u[:, None] + np.sin(turn)[None, :, None] * w[:, None]
        points = v[free][:, None, None] + steps * reach[free][:, None, None, None] * directions[:, None]
        points = closest(points.reshape(-1, 3)).reshape(len(free), -1, 3)
        for i, k in enumerate(np.flatnonzero(~sliding).tolist()):
            out[k] = points[i]
    for slides, lines in ((on_crease[at], creases), (on_border[at], borders)):
        if not slides.any():
            continue
        along = at[slides]
        _, _, direction = lines.nearest(v[along])
        directions = np.stack([direction, -direction], axis=1)                   # (a, 2, 3)
        points = v[along][:, None, None] + steps * reach[along][:, None, None, None] * directions[:, None]
        points = lines.nearest(points.reshape(-1, 3))[0].reshape(len(along), -1, 3)
        for i, k in enumerate(np.flatnonzero(slides).tolist()):
            out[k] = points[i]
    return out


def _diagonal_normals(points: np.ndarray) -> np.ndarray:
    """Area normals (twice the area long) of quads ``(..., 4, 3)`` from their diagonals."""
    return poly.cross(points[..., 2, :] - points[..., 0, :], points[..., 3, :] - points[..., 1, :])

