"""Closest points on a triangle surface for many query points at once.

Method
    Every triangle gets samples: its centroid plus points spread over it in proportion to its
    area, about :data:`SAMPLES_PER_FACE` per face on average (at least ``min_samples`` in
    all), each remembering its triangle. A k-d tree (``scipy.spatial.cKDTree``) over the
    samples gives each query its ``k`` nearest samples; their triangles are the candidates,
    and the exact closest point on each candidate is computed with the Voronoi-region kernel
    of :mod:`backend.mesh.distance`. The answer is exact whenever the nearest triangle is
    among the candidates, which it is unless a query is much closer to a triangle's interior
    than to any of its samples while ``k`` samples of other triangles are closer still; then
    the error is below the sample spacing.

    Optionally a query brings its own surface normal: candidates that face the other way
    (cosine below ``-min_cos``) are skipped when a candidate facing the same way lies within
    :data:`FACING_SLACK` of the nearest distance plus a small absolute allowance. That keeps a
    point on the outside of a thin part from taking its colour from the inside wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.mesh.distance import TriangleFrames, triangle_params
from backend.progress import ProgressFn, null_progress

#: Average number of samples per triangle (beyond its centroid) for the candidate search.
SAMPLES_PER_FACE = 4
#: Candidates (nearest samples) per query.
NEIGHBOURS = 12
#: Queries per chunk.
CHUNK = 1 << 14
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

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, *, min_samples: int = 200_000, seed: int = 0):
        from scipy.spatial import cKDTree

        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or len(self.faces) == 0:
            raise ValueError(f"faces must have shape (m, 3) with m > 0, got {self.faces.shape}")
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        self.frames = TriangleFrames.from_corners(a, b, c)
        n = np.cross(b - a, c - a)
        area = 0.5 * np.linalg.norm(n, axis=1)
        self.normal = n / np.maximum(2.0 * area, 1e-300)[:, None]
        total = max(SAMPLES_PER_FACE * len(self.faces), min_samples)
        rng = np.random.default_rng(seed)
        share = area / area.sum() if area.sum() > 0 else np.full(len(area), 1.0 / len(area))
        count = rng.multinomial(total, share)
        face = np.repeat(np.arange(len(self.faces)), count)
        r1, r2 = rng.random(len(face)), rng.random(len(face))
        flip = r1 + r2 > 1.0
        r1, r2 = np.where(flip, 1.0 - r1, r1), np.where(flip, 1.0 - r2, r2)
        pts = a[face] + r1[:, None] * (b - a)[face] + r2[:, None] * (c - a)[face]
        self.sample_face = np.concatenate([np.arange(len(self.faces)), face])
        self.tree = cKDTree(np.concatenate([(a + b + c) / 3.0, pts]))
        self.spacing = float(np.sqrt(area.sum() / max(len(self.sample_face), 1)))

    def closest(self, points: np.ndarray, normals: np.ndarray | None = None, *, min_cos: float = 0.0,
                progress: ProgressFn = null_progress) -> ClosestPoints:
        """Closest points on the surface to ``points`` (k, 3).

        Parameters
        ----------
        points : (k, 3) float
        normals : (k, 3) float or None
            Unit normals of the queries' own surface; with them, candidates facing away
            (cosine below ``-min_cos``) lose to a nearly as close candidate facing the same way.
        """
        points = np.asarray(points, dtype=np.float64)
        k = len(points)
        face = np.zeros(k, dtype=np.int64)
        bary = np.zeros((k, 3))
        closest = np.zeros((k, 3))
        dist = np.zeros(k)
        kk = min(NEIGHBOURS, len(self.sample_face))
        for start in range(0, k, CHUNK):
            stop = min(start + CHUNK, k)
            p = points[start:stop]
            _, idx = self.tree.query(p, k=kk)
            cand = self.sample_face[idx.reshape(len(p), kk)]  # (c, kk)
            f = self.frames.take(cand)
            s, t = triangle_params(p[:, None, :] - f.a, f)
            q = f.a + s[..., None] * f.ab + t[..., None] * f.ac
            d = np.linalg.norm(p[:, None, :] - q, axis=2)  # (c, kk)
            score = d
            if normals is not None:
                nq = np.asarray(normals[start:stop], dtype=np.float64)
                cos = np.einsum("cj,ckj->ck", nq, self.normal[cand])
                near = d.min(axis=1, keepdims=True)
                away = cos < -min_cos
                # Facing-away candidates only win when no same-facing one is nearly as close.
                score = np.where(away, d + (FACING_SLACK * near + 2.0 * self.spacing), d)
            best = np.argmin(score, axis=1)
            rows = np.arange(len(p))
            face[start:stop] = cand[rows, best]
            ss, tt = s[rows, best], t[rows, best]
            bary[start:stop] = np.stack([1.0 - ss - tt, ss, tt], axis=1)
            closest[start:stop] = q[rows, best]
            dist[start:stop] = d[rows, best]
            progress(stop / k, "closest points")
        return ClosestPoints(face, bary, closest, dist)
