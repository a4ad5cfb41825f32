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
#: Share of the way to the neighbours' mean taken per pass.
STEP = 0.7


def quad_corner_angles(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the quads of ``polygons`` (``(k, 4)``, -1 in the last column for triangles): their rows
    and the ``(q, 4)`` corner angles in degrees."""
    rows = np.flatnonzero(polygons[:, 3] != poly.NO_CORNER)
    p = vertices[polygons[rows]]
    to_prev = np.roll(p, 1, axis=1) - p
    to_next = np.roll(p, -1, axis=1) - p
    cos = (to_prev * to_next).sum(-1) / np.maximum(
        np.linalg.norm(to_prev, axis=-1) * np.linalg.norm(to_next, axis=-1), 1e-300)
    return rows, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class CreaseLines:
    """The reference's crease segments: which points lie on them, their direction there, and
    the nearest point on them.

    ``a``, ``b``: ``(s, 3)`` segment ends; ``tolerance``: how near counts as on a crease.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, tolerance: float):
        from scipy.spatial import cKDTree

        self.a, self.b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.tolerance = float(tolerance)
        length = np.linalg.norm(self.b - self.a, axis=1)
        n = np.maximum(np.ceil(length / max(self.tolerance, 1e-12)).astype(np.int64), 1)
        self.owner = np.repeat(np.arange(len(n)), n)
        t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[self.owner]
        self.tree = cKDTree(self.a[self.owner] + t[:, None] * (self.b - self.a)[self.owner])
        # Crease corners: segment ends not shared by exactly two segments.
        ends = np.round(np.vstack([self.a, self.b]) / max(self.tolerance * 1e-3, 1e-12)).astype(np.int64)
        _, inverse, counts = np.unique(ends, axis=0, return_inverse=True, return_counts=True)
        corner = counts[inverse.reshape(-1)] != 2
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

    def at_corner(self, points: np.ndarray) -> np.ndarray:
        if self.corner_tree is None:
            return np.zeros(len(points), dtype=bool)
        d, _ = self.corner_tree.query(points)
        return d <= self.tolerance


def relax_open_corners(vertices: np.ndarray, polygons: np.ndarray, closest: Callable[[np.ndarray], np.ndarray], *,
                       creases: CreaseLines | None = None, above_degrees: float = RELAX_ABOVE_DEGREES,
                       passes: int = PASSES) -> tuple[np.ndarray, int]:
    """Relax the vertices at quad corners above ``above_degrees`` (module doc).

    ``closest`` maps points to the reference surface; ``creases`` (optional) holds the
    reference's crease lines. Returns the new vertices and how many vertices moved at least once.
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
    for _ in range(passes):
        rows, angles = quad_corner_angles(v, p)
        open_corner = angles > above_degrees
        if not open_corner.any():
            break
        candidates = np.unique(p[rows][open_corner])
        candidates = candidates[~pinned[candidates]]
        if len(candidates) == 0:
            break
        # Mean of the edge neighbours (quad diagonals are not edges).
        total = np.zeros_like(v)
        np.add.at(total, edges[:, 0], v[edges[:, 1]])
        np.add.at(total, edges[:, 1], v[edges[:, 0]])
        delta = total[candidates] / np.maximum(degree[candidates], 1.0)[:, None] - v[candidates]
        normals = _polygon_normals(v, p)
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
        v[candidates] = moved_to
        moved[candidates] = True
    return v, int(moved.sum())


def _polygon_normals(vertices: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Unit normals of triangles and quads (a quad's from its diagonals' cross product)."""
    a, b, c = vertices[polygons[:, 0]], vertices[polygons[:, 1]], vertices[polygons[:, 2]]
    quad = polygons[:, 3] != poly.NO_CORNER
    d = np.where(quad[:, None], vertices[np.where(quad, polygons[:, 3], polygons[:, 0])], a)
    cross = np.where(quad[:, None], np.cross(c - a, d - b), np.cross(b - a, c - a))
    return cross / np.maximum(np.linalg.norm(cross, axis=1), 1e-300)[:, None]
