"""Closest points on a triangle surface for many query points at once.

Method
    Every triangle is covered by a grid of samples: its barycentric lattice with ``n`` steps
    per side, ``n`` chosen per triangle so that no lattice edge is longer than a common
    spacing ``h``; every point of the surface is then within ``h`` of a sample of its own
    triangle. ``h`` is set so that the samples number about :data:`SAMPLES_PER_FACE` per face
    (at least ``min_samples``). A k-d tree (``scipy.spatial.cKDTree``) over the samples gives
    each query its ``k`` nearest samples; their triangles are the candidates, and the exact
    closest point on each is computed with the Voronoi-region kernel of
    :mod:`backend.mesh.remesh.distance`. If the best distance found is ``d``, the true nearest
    triangle has a sample within ``d + h``; when the ``k``-th neighbour is nearer than that,
    some such sample may not have been looked at, and the query is asked again with 4x more
    neighbours (up to :data:`MAX_NEIGHBOURS`). So answers are exact except in the rare case
    that more than :data:`MAX_NEIGHBOURS` samples lie in that ball.

    Optionally a query brings its own surface normal: candidates that face the other way
    (cosine below ``-min_cos``) are skipped when a candidate facing the same way lies within
    :data:`FACING_SLACK` of the nearest distance plus ``2 h``. That keeps a point on the
    outside of a thin part from taking its colour from the inside wall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from backend.mesh.triangles import TriangleFrames, triangle_params
from backend.progress import ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Average number of samples per triangle for the candidate search.
SAMPLES_PER_FACE = 6
#: Candidates (nearest samples) per query, first and at most.
NEIGHBOURS = 16
MAX_NEIGHBOURS = 64
#: Queries per chunk (times the candidates, this bounds memory).
CHUNK_PAIRS = 1 << 17
#: Most faces kept per ring of :meth:`SurfaceIndex._near` (high-valence fans are truncated).
MAX_RING = 48
#: A same-facing candidate may be this much farther (relative) than the nearest one and still win.
FACING_SLACK = 0.5


@dataclass(frozen=True)
class ClosestPoints:
    """Closest points of queries on a surface.

    Attributes
    ----------
    face : (k,) int64
    bary : (k, 3) float64
        Barycentric weights of the closest point in ``face``.
    point : (k, 3) float64
    distance : (k,) float64
    """

    face: np.ndarray
    bary: np.ndarray
    point: np.ndarray
    distance: np.ndarray


class SurfaceIndex:
    """Closest-point queries against the triangles ``faces`` (m, 3) over ``vertices`` (n, 3)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, *, min_samples: int = 50_000):
        from scipy.spatial import cKDTree

        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or len(self.faces) == 0:
            raise ValueError(f"faces must have shape (m, 3) with m > 0, got {self.faces.shape}")
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        self.frames = TriangleFrames.from_corners(a, b, c)
        n = np.cross(b - a, c - a)
        self.normal = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
        longest = np.sqrt(np.max([self.frames.abab, self.frames.acac, _dot(c - b, c - b)], axis=0))
        budget = max(SAMPLES_PER_FACE * len(self.faces), min_samples)
        self.spacing = _spacing_for(longest, budget)
        steps = np.maximum(np.ceil(longest / self.spacing), 1).astype(np.int64)
        points, owner = [], []
        for n_steps in np.unique(steps).tolist():
            ids = np.flatnonzero(steps == n_steps)
            i, j = np.meshgrid(np.arange(n_steps + 1), np.arange(n_steps + 1), indexing="ij")
            keep = (i + j) <= n_steps
            s_, t_ = i[keep] / n_steps, j[keep] / n_steps  # weights of b and c
            pts = a[ids, None] + s_[None, :, None] * (b - a)[ids, None] + t_[None, :, None] * (c - a)[ids, None]
            points.append(pts.reshape(-1, 3))
            owner.append(np.repeat(ids, len(s_)))
        self.sample_face = np.concatenate(owner)
        self.tree = cKDTree(np.concatenate(points))

    def closest(self, points: np.ndarray, normals: np.ndarray | None = None, *, min_cos: float = 0.0,
                exact: bool = True, progress: ProgressFn = null_progress) -> ClosestPoints:
        """Closest points on the surface to ``points`` (k, 3).

        Parameters
        ----------
        points : (k, 3) float
        normals : (k, 3) float or None
            Unit normals of the queries' own surface; with them, candidates facing away
            (cosine below ``-min_cos``) lose to a nearly as close candidate facing the same way.
        exact : bool
            Ask again with more neighbours where the first ones may have missed the nearest
            triangle (see the module doc); False: the first answer, good to a sample spacing.
        """
        points = np.asarray(points, dtype=np.float64)
        k = len(points)
        face = np.zeros(k, dtype=np.int64)
        bary = np.zeros((k, 3))
        dist = np.full(k, np.inf)
        todo = np.arange(k)
        neighbours = NEIGHBOURS
        while len(todo):
            kk = min(neighbours, len(self.sample_face))
            chunk = max(1, CHUNK_PAIRS // kk)
            again = []
            for start in range(0, len(todo), chunk):
                ids = todo[start:start + chunk]
                nq = None if normals is None else np.asarray(normals[ids], dtype=np.float64)
                f, b_, d, reach = self._search(points[ids], nq, kk, min_cos)
                face[ids], bary[ids], dist[ids] = f, b_, d
                if exact and kk < min(MAX_NEIGHBOURS, len(self.sample_face)):
                    again.append(ids[reach < d + self.spacing])
                if len(todo) == k:
                    progress(min(start + chunk, k) / k, "closest points")
            todo = np.concatenate(again) if again else np.zeros(0, dtype=np.int64)
            if len(todo):
                log.debug("%d queries need more than %d candidates", len(todo), kk)
            neighbours *= 4
        point = np.einsum("kc,kcj->kj", bary, self.vertices[self.faces[face]])
        return ClosestPoints(face, bary, point, dist)

    def along_normals(self, points: np.ndarray, normals: np.ndarray, *, max_distance: float,
                      iterations: int = 4, progress: ProgressFn = null_progress) -> ClosestPoints:
        """Where the lines ``points + s * normals`` meet the surface, ``|s| <= max_distance``.

        What a bake "along the normal" (a cage) wants: the surface seen straight above or below
        each point, not its closest point, which slides towards crests and away from hollows.
        Found by projection: take the closest point ``q`` (facing the same way), intersect the
        line with the plane of ``q``'s triangle, repeat from there; on a smooth surface this
        converges in a few steps. Points where it does not converge to the surface within
        ``max_distance`` keep their plain closest point.

        Parameters
        ----------
        points, normals : (k, 3) float
            Query points and their unit normals.
        max_distance : float
            How far along the normal the surface may be.
        iterations : int
        """
        points = np.asarray(points, dtype=np.float64)
        normals = np.asarray(normals, dtype=np.float64)
        # Where to start needs no exactness; the steps below end on the surface, where the
        # exact search is cheap (the ball it must look in is one sample spacing wide).
        first = self.closest(points, normals, exact=False, progress=progress)
        face, bary, point, dist = first.face.copy(), first.bary.copy(), first.point.copy(), first.distance.copy()
        offset = np.zeros(len(points))
        active = np.arange(len(points))
        tolerance = max(1e-3 * self.spacing, 1e-9)
        for _ in range(iterations):
            nq = self.normal[face[active]]
            denom = np.einsum("ij,ij->i", normals[active], nq)
            gap = np.einsum("ij,ij->i", point[active] - (points[active] + offset[active, None] * normals[active]), nq)
            ok = np.abs(denom) > 0.2
            step = np.where(ok, gap / np.where(ok, denom, 1.0), 0.0)
            offset[active] = np.clip(offset[active] + step, -max_distance, max_distance)
            hit = self._near(points[active] + offset[active, None] * normals[active], face[active])
            face[active], bary[active], point[active], dist[active] = hit.face, hit.bary, hit.point, hit.distance
            active = active[(np.abs(step) > tolerance) | (hit.distance > tolerance)]
            if len(active) == 0:
                break
        good = (dist <= tolerance + 1e-3 * np.abs(offset)) & (np.abs(offset) < max_distance)
        if not good.all():
            bad = ~good
            exact = self.closest(points[bad], normals[bad])
            face[bad], bary[bad], point[bad] = exact.face, exact.bary, exact.point
            dist[bad] = exact.distance
        dist[good] = np.abs(offset[good])
        return ClosestPoints(face, bary, point, dist)

    def _near(self, p: np.ndarray, start: np.ndarray) -> ClosestPoints:
        """Closest points among the faces around ``start`` (k,): those sharing a vertex with it.

        A local step for queries that moved only a little since their last closest point.
        """
        rings = self._rings()
        k = len(p)
        face, bary, point, dist = np.zeros(k, dtype=np.int64), np.zeros((k, 3)), np.zeros((k, 3)), np.zeros(k)
        chunk = max(1, CHUNK_PAIRS // rings.shape[1])
        for lo in range(0, k, chunk):
            hi = min(lo + chunk, k)
            ring = rings[start[lo:hi]]  # (c, R)
            f = self.frames.take(ring)
            s, t = triangle_params(p[lo:hi, None, :] - f.a, f)
            q = f.a + s[..., None] * f.ab + t[..., None] * f.ac
            d = np.linalg.norm(p[lo:hi, None, :] - q, axis=2)
            best = np.argmin(d, axis=1)
            rows = np.arange(hi - lo)
            ss, tt = s[rows, best], t[rows, best]
            face[lo:hi], point[lo:hi], dist[lo:hi] = ring[rows, best], q[rows, best], d[rows, best]
            bary[lo:hi] = np.stack([1.0 - ss - tt, ss, tt], axis=1)
        return ClosestPoints(face, bary, point, dist)

    def _rings(self) -> np.ndarray:
        """(m, R) int64: for each face, the faces sharing a vertex with it, nearest first (by
        centroid), at most MAX_RING of them, padded with the face itself."""
        if getattr(self, "_ring_cache", None) is None:
            m = len(self.faces)
            vertex = self.faces.ravel()
            owner = np.repeat(np.arange(m), 3)
            order = np.argsort(vertex, kind="stable")
            sorted_owner = owner[order]
            start = np.searchsorted(vertex[order], np.arange(int(vertex.max()) + 2))
            valence = np.diff(start)
            # All (face, face around one of its corners) pairs, vectorized.
            count = valence[vertex]
            face = np.repeat(owner, count)
            offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            other = sorted_owner[np.repeat(start[vertex], count) + offset]
            centroid = (self.frames.a + (self.frames.ab + self.frames.ac) / 3.0)
            gap = np.einsum("ij,ij->i", centroid[other] - centroid[face], centroid[other] - centroid[face])
            key = np.lexsort((other, gap, face))
            face, other = face[key], other[key]
            keep = np.concatenate([[True], (face[1:] != face[:-1]) | (other[1:] != other[:-1])])
            face, other = face[keep], other[keep]
            first = np.searchsorted(face, np.arange(m))
            rank = np.arange(len(face)) - first[face]
            width = int(min(rank.max() + 1, MAX_RING))
            ring = np.repeat(np.arange(m)[:, None], width, axis=1)
            use = rank < width
            ring[face[use], rank[use]] = other[use]
            self._ring_cache = ring
        return self._ring_cache

    def _search(self, p: np.ndarray, nq: np.ndarray | None, kk: int, min_cos: float):
        """Best face, barycentrics, distance and the distance of the farthest sample looked at."""
        sample_dist, idx = self.tree.query(p, k=kk, workers=-1)
        sample_dist, idx = sample_dist.reshape(len(p), kk), idx.reshape(len(p), kk)
        cand = self.sample_face[idx]  # (c, kk); repeated faces are harmless for a minimum
        f = self.frames.take(cand)
        s, t = triangle_params(p[:, None, :] - f.a, f)
        q = f.a + s[..., None] * f.ab + t[..., None] * f.ac
        d = np.linalg.norm(p[:, None, :] - q, axis=2)
        score = d
        if nq is not None:
            cos = np.einsum("cj,ckj->ck", nq, self.normal[cand])
            near = d.min(axis=1, keepdims=True)
            # Facing-away candidates only win when no same-facing one is nearly as close.
            score = np.where(cos < -min_cos, d + (FACING_SLACK * near + 2.0 * self.spacing), d)
        best = np.argmin(score, axis=1)
        rows = np.arange(len(p))
        ss, tt = s[rows, best], t[rows, best]
        return cand[rows, best], np.stack([1.0 - ss - tt, ss, tt], axis=1), d[rows, best], sample_dist[:, -1]


def _spacing_for(longest: np.ndarray, budget: int) -> float:
    """Lattice spacing at which the triangles' lattices hold about ``budget`` samples in all."""

    def count(h: float) -> float:
        n = np.maximum(np.ceil(longest / h), 1)
        return float(((n + 1) * (n + 2) / 2).sum())

    lo, hi = 1e-12, float(longest.max()) + 1e-12
    if count(hi) >= budget:
        return hi
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        if count(mid) > budget:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.01:
            break
    return hi


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u, v)
