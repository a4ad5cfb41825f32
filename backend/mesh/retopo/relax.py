"""Opening near-triangle quads: tangential relaxation of the vertices where a quad's corner is almost flat.

A quad with a corner near 180 degrees is a triangle with an extra vertex on one side: Instant
Meshes leaves them where its field bends (and triangle pairing where it closes a path). The
vertex at such a corner sits almost on the line between its two neighbours in that quad, so
its other corners share what is left of 360 degrees. Moving it to the mean of its edge
neighbours, within its tangent plane, spreads the angles evenly (a valence-3 vertex gets about
120 degrees per corner), and putting it back on the reference surface keeps the shape. Only
those vertices move. Border vertices stay; a vertex on one of the reference's creases
(:class:`CreaseLines`) slides along it and stays on it; one at a crease corner (where three or
more crease lines meet, or one ends) stays. Connectivity never changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.mesh import polygons as poly

#: Corners above this (degrees) get their vertex relaxed: a margin under the 160 degrees an artist rejects.
RELAX_ABOVE_DEGREES = 150.0
#: Passes (each recomputes the angles; a pass moves only vertices still at an open corner).
PASSES = 8
#: Passes that move the ``also`` vertices whatever their angles.
ALSO_PASSES = 3
#: Share of the way to the neighbours' mean taken per pass.
STEP = 0.7


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
        """For each point: the nearest point on a crease, its distance and the crease's unit direction."""
        k = min(4, self.tree.n)
        _, idx = self.tree.query(points, k=k)
        idx = np.asarray(idx).reshape(len(points), k)
        seg = self.owner[idx]                                              # (p, k)
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
        _, end_distance, _ = self.nearest(vertices)
        edges = edges[(end_distance <= self.tolerance)[edges].all(axis=1)]
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
    pinned = np.zeros(len(v), dtype=bool)
    pinned[src[counts[edge_of] == 1]] = True                              # border vertices stay
    on_crease = np.zeros(len(v), dtype=bool)
    if creases is not None:
        _, distance, _ = creases.nearest(v)
        on_crease = distance <= creases.tolerance
        pinned |= on_crease & creases.at_corner(v)
    degree = np.bincount(edges.ravel(), minlength=len(v)).astype(np.float64)
    moved = np.zeros(len(v), dtype=bool)
    always = np.flatnonzero(also) if also is not None else np.zeros(0, dtype=np.int64)
    for round_ in range(passes):
        if round_ == ALSO_PASSES:
            always = always[:0]                     # the rewired vertices have settled; open corners go on
        rows, angles = poly.quad_corner_angles(v, p)
        open_corner = angles > above_degrees
        if not open_corner.any() and len(always) == 0:
            break
        candidates = np.union1d(p[rows][open_corner], always)
        candidates = candidates[~pinned[candidates]]
        if len(candidates) == 0:
            break
        # Mean of the edge neighbours (quad diagonals are not edges).
        total = np.zeros_like(v)
        np.add.at(total, edges[:, 0], v[edges[:, 1]])
        np.add.at(total, edges[:, 1], v[edges[:, 0]])
        delta = total[candidates] / np.maximum(degree[candidates], 1.0)[:, None] - v[candidates]
        normals = poly.polygon_normals(v, p)
        normals /= np.maximum(np.linalg.norm(normals, axis=1), 1e-300)[:, None]
        normal = np.zeros_like(v)
        np.add.at(normal, src, normals[face])
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
        v, step = poly.guarded_moves(v, target, step, p)      # no move may fold or flatten a polygon
        moved |= step
    return v, int(moved.sum())
