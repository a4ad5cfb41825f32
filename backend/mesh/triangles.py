"""Exact closest points and distances from points to triangles: the kernel every distance query shares.

:func:`triangle_params` over :class:`TriangleFrames` is Ericson's Voronoi-region test
(*Real-Time Collision Detection*, 5.1.5), vectorized over any broadcast of points against
triangles, with no Python loop per point. Everything that depends on the triangle alone is
computed once per triangle, so a (point, triangle) pair costs two dot products and a few
dozen flops. Degenerate triangles (collinear or coincident corners) are answered by their
nearest edge. :func:`closest_point_on_triangle` and :func:`point_triangle_distance` are the
elementwise entry points; the watertight engine's narrow band
(:mod:`backend.mesh.remesh.distance`), the surface index (:mod:`backend.mesh.nearest`) and
the samplers build on the same kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: A triangle is treated as degenerate (a segment or a point) when the squared norm of its
#: edge cross product is below this fraction of its squared longest edge, squared: then
#: sin(angle) < 1e-6, the triangle is thinner than a millionth of its length, and the
#: nearest of its edges is as exact as float64 allows while Ericson's barycentric
#: division would be 0 / 0.
DEGENERATE_REL = 1e-12


class TriangleFrames(NamedTuple):
    """Per-triangle constants of the distance kernel, computed once per triangle.

    Every field has a leading axis of triangles, ``(m,)`` or ``(m, 3)``; :meth:`take` and
    :meth:`expand` index and reshape them together so the kernel broadcasts a triangle
    against many points. Reciprocals are 0 where undefined (degenerate triangles).

    Attributes
    ----------
    a, ab, ac : (m, 3) float64
        First corner and the edges ``b - a``, ``c - a``.
    abab, acac, abac : (m,) float64
        Dot products of the edges.
    inv_abab, inv_acac, inv_bcbc, inv_n2 : (m,) float64
        ``1 / |ab|^2``, ``1 / |ac|^2``, ``1 / |bc|^2`` and ``1 / |ab x ac|^2``.
    degenerate : (m,) bool
        Collinear or coincident corners (see ``DEGENERATE_REL``).
    """

    a: np.ndarray
    ab: np.ndarray
    ac: np.ndarray
    abab: np.ndarray
    acac: np.ndarray
    abac: np.ndarray
    inv_abab: np.ndarray
    inv_acac: np.ndarray
    inv_bcbc: np.ndarray
    inv_n2: np.ndarray
    degenerate: np.ndarray

    @classmethod
    def from_corners(cls, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> "TriangleFrames":
        """Frames of the triangles ``(a[i], b[i], c[i])``; each (m, 3) float."""
        a, b, c = (np.asarray(x, dtype=np.float64) for x in (a, b, c))
        ab, ac = b - a, c - a
        abab, acac, abac = dot3(ab, ab), dot3(ac, ac), dot3(ab, ac)
        bcbc = dot3(c - b, c - b)
        n2 = dot3(*(np.cross(ab, ac),) * 2)
        longest2 = np.maximum(np.maximum(abab, acac), bcbc)
        degenerate = n2 <= DEGENERATE_REL * longest2 * longest2
        return cls(a, ab, ac, abab, acac, abac, _inverse(abab), _inverse(acac), _inverse(bcbc),
                   np.where(degenerate, 0.0, _inverse(n2)), degenerate)

    def take(self, index: np.ndarray) -> "TriangleFrames":
        """The frames of triangles ``index``."""
        return TriangleFrames._make(field[index] for field in self)

    def expand(self) -> "TriangleFrames":
        """Insert an axis after the triangle axis, to broadcast against (m, k, 3) points."""
        return TriangleFrames._make(field[:, None] for field in self)


def triangle_params(ap: np.ndarray, frames: TriangleFrames) -> tuple[np.ndarray, np.ndarray]:
    """The kernel: closest point ``a + s ab + t ac`` to ``a + ap`` on each triangle.

    Ericson's Voronoi-region tests (*Real-Time Collision Detection*, 5.1.5) written on the
    two dot products ``ab . ap`` and ``ac . ap`` per point; the other four and every
    denominator are per-triangle constants, so a point costs a few dozen flops. Degenerate
    triangles, whose face region would divide by zero, are answered by their nearest edge.

    Parameters
    ----------
    ap : (..., 3) float64
        Query points relative to each triangle's corner ``a``.
    frames : TriangleFrames
        Fields broadcastable against ``ap[..., 0]`` (see :meth:`TriangleFrames.expand`).

    Returns
    -------
    s, t : (...) float64
        Barycentric weights of ``b`` and ``c`` of the closest point.
    """
    d1 = np.einsum("...j,...j->...", ap, frames.ab)
    d2 = np.einsum("...j,...j->...", ap, frames.ac)
    d3, d4 = d1 - frames.abab, d2 - frames.abac      # ab . bp, ac . bp
    d5, d6 = d1 - frames.abac, d2 - frames.acac      # ab . cp, ac . cp
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    w_bc = (d4 - d3) * frames.inv_bcbc
    # First match wins, in Ericson's order: vertex A, B, edge AB, vertex C, edge AC, edge BC;
    # otherwise the projection falls inside the face.
    regions = [
        (d1 <= 0) & (d2 <= 0),
        (d3 >= 0) & (d4 <= d3),
        (vc <= 0) & (d1 >= 0) & (d3 <= 0),
        (d6 >= 0) & (d5 <= d6),
        (vb <= 0) & (d2 >= 0) & (d6 <= 0),
        (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
    ]
    s = np.select(regions, [0.0, 1.0, d1 * frames.inv_abab, 0.0, 0.0, 1.0 - w_bc], vb * frames.inv_n2)
    t = np.select(regions, [0.0, 0.0, 0.0, 1.0, d2 * frames.inv_acac, w_bc], vc * frames.inv_n2)
    degenerate = np.broadcast_to(frames.degenerate, s.shape)
    if degenerate.any():
        s_edge, t_edge = _edge_params(ap, d1, d2, w_bc, frames)
        s, t = np.where(degenerate, s_edge, s), np.where(degenerate, t_edge, t)
    return s, t


def closest_point_on_triangle(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point on triangle ``(a[i], b[i], c[i])`` to ``points[i]``, for every ``i``.

    Parameters
    ----------
    points, a, b, c : (..., 3) float
        Query points and triangle corners, paired elementwise after broadcasting, e.g.
        (k, 3) each, or points (k, 1, 3) against corners (1, m, 3) for all pairs.

    Returns
    -------
    (..., 3) float64
        The closest points. Degenerate triangles (segments, points) are handled exactly.
    """
    p, a, b, c = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (points, a, b, c)))
    frames = TriangleFrames.from_corners(a, b, c)
    s, t = triangle_params(p - a, frames)
    return a + s[..., None] * frames.ab + t[..., None] * frames.ac


def point_triangle_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Unsigned distance from ``points[i]`` to triangle ``(a[i], b[i], c[i])``.

    Parameters
    ----------
    points, a, b, c : (..., 3) float
        Paired elementwise after broadcasting (see :func:`closest_point_on_triangle`).

    Returns
    -------
    (...) float64
    """
    p, a, b, c = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (points, a, b, c)))
    frames = TriangleFrames.from_corners(a, b, c)
    return triangle_distance(p - a, frames)


def triangle_distance(ap: np.ndarray, frames: TriangleFrames) -> np.ndarray:
    """|point - closest point| for points ``a + ap`` (..., 3); see :func:`triangle_params`."""
    s, t = triangle_params(ap, frames)
    diff = ap - s[..., None] * frames.ab - t[..., None] * frames.ac
    return np.sqrt(np.einsum("...j,...j->...", diff, diff))


def _edge_params(ap: np.ndarray, d1: np.ndarray, d2: np.ndarray, w_bc: np.ndarray, frames: TriangleFrames
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) of the nearest point on the three edges AB, AC, BC (zero-length edges included)."""
    candidates = [
        (np.clip(d1 * frames.inv_abab, 0.0, 1.0), np.zeros_like(d1)),
        (np.zeros_like(d2), np.clip(d2 * frames.inv_acac, 0.0, 1.0)),
    ]
    w = np.clip(w_bc, 0.0, 1.0)
    candidates.append((1.0 - w, w))
    best_s, best_t, best = None, None, None
    for s, t in candidates:
        # Compare exact residual vectors, not an expanded quadratic that cancels near 0.
        diff = ap - s[..., None] * frames.ab - t[..., None] * frames.ac
        d = np.einsum("...j,...j->...", diff, diff)
        if best is None:
            best_s, best_t, best = s, t, d
        else:
            closer = d < best
            best_s, best_t, best = np.where(closer, s, best_s), np.where(closer, t, best_t), np.minimum(d, best)
    return best_s, best_t


def _inverse(x: np.ndarray) -> np.ndarray:
    """``1 / x`` with 0 where ``x == 0`` (a zero-length edge or area is then never divided by)."""
    out = np.zeros_like(x)
    np.divide(1.0, x, out=out, where=x != 0)
    return out


def dot3(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dot product over the last axis of (..., 3) arrays."""
    return np.einsum("...j,...j->...", u, v)
