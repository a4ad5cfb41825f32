"""The point-triangle kernel (backend.mesh.triangles) against a brute-force reference."""

from __future__ import annotations

import numpy as np

from backend.mesh.triangles import closest_point_on_triangle, point_triangle_distance

REGIONS = ("A", "B", "C", "AB", "BC", "CA", "face")


def _reference(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, str]:
    """Closest point and its Voronoi region, one point at a time, without Ericson's tests.

    The triangle is convex, so its closest point is the orthogonal projection when that
    falls inside (solved by least squares), else the nearest point of its three edges.
    """
    best, region, best_d = None, None, np.inf
    for (s0, s1), (name, start, end) in zip(((a, b), (b, c), (c, a)), (("AB", "A", "B"), ("BC", "B", "C"),
                                                                       ("CA", "C", "A"))):
        d = s1 - s0
        t = 0.0 if d @ d == 0 else float(np.clip((p - s0) @ d / (d @ d), 0.0, 1.0))
        q = s0 + t * d
        if np.linalg.norm(p - q) < best_d:
            best, best_d = q, np.linalg.norm(p - q)
            region = start if t == 0.0 else end if t == 1.0 else name
    n = np.cross(b - a, c - a)
    if n @ n > 1e-9 * max((b - a) @ (b - a), (c - a) @ (c - a)) ** 2:
        uv = np.linalg.lstsq(np.stack([b - a, c - a], axis=1), p - a, rcond=None)[0]
        if uv.min() > 0 and uv.sum() < 1:
            q = a + (b - a) * uv[0] + (c - a) * uv[1]
            if np.linalg.norm(p - q) <= best_d:
                best, region = q, "face"
    return best, region


def _queries(rng: np.random.Generator, k: int) -> tuple[np.ndarray, ...]:
    """k (point, triangle) pairs: a fifth of the triangles degenerate, points everywhere around."""
    a, b, c = rng.normal(size=(3, k, 3))
    kind = rng.integers(0, 10, size=k)
    c[kind == 0] = a[kind == 0] + rng.random((np.sum(kind == 0), 1)) * (b - a)[kind == 0]  # collinear
    b[kind == 1] = a[kind == 1]                                                           # two corners meet
    b[kind == 2] = c[kind == 2] = a[kind == 2]                                            # a point
    # Barycentric weights from -1 to 2 reach every vertex and edge region; a normal offset
    # lifts the point off the plane.
    w = rng.uniform(-1.0, 2.0, size=(k, 3))
    w /= np.where(np.abs(w.sum(axis=1, keepdims=True)) < 0.2, 1.0, w.sum(axis=1, keepdims=True))
    n = np.cross(b - a, c - a)
    p = w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c + n * rng.normal(scale=0.5, size=(k, 1))
    return p, a, b, c, kind


def test_kernel_matches_a_brute_force_reference_in_every_voronoi_region():
    p, a, b, c, kind = _queries(np.random.default_rng(7), 3000)
    expected, regions = zip(*(_reference(*row) for row in zip(p, a, b, c)))
    expected = np.array(expected)

    got = closest_point_on_triangle(p, a, b, c)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    np.testing.assert_allclose(point_triangle_distance(p, a, b, c), np.linalg.norm(p - expected, axis=1), atol=1e-9)

    seen = {r: int(np.sum([x == r for x in regions])) for r in REGIONS}
    assert min(seen.values()) >= 20, seen  # the test really visited every region
    assert {r for r, k in zip(regions, kind) if k <= 2} >= {"A", "B", "AB", "BC", "CA"}  # and degenerate ones


def test_kernel_exact_cases():
    a, b, c = np.array([0.0, 0, 0]), np.array([2.0, 0, 0]), np.array([0.0, 2, 0])
    cases = {  # point -> closest point
        (0.5, 0.5, 3.0): (0.5, 0.5, 0.0),    # above the face
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex A
        (3.0, -1.0, 1.0): (2.0, 0.0, 0.0),   # vertex B
        (1.0, -2.0, 0.0): (1.0, 0.0, 0.0),   # edge AB
        (2.0, 2.0, 0.0): (1.0, 1.0, 0.0),    # edge BC
    }
    p = np.array(list(cases))
    np.testing.assert_allclose(closest_point_on_triangle(p, a, b, c), np.array(list(cases.values())), atol=1e-12)
    # A triangle collapsed to a segment and to a point.
    seg = point_triangle_distance([[1.0, 1.0, 0.0]], a, b, (1.0, 0.0, 0.0))
    dot = point_triangle_distance([[3.0, 4.0, 0.0]], a, a, a)
    np.testing.assert_allclose([seg[0], dot[0]], [1.0, 5.0])
