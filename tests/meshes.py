"""Small deterministic test meshes, each ``(vertices (n, 3) float64, faces (m, 3) int64)``.

Closed generators wind counter-clockwise seen from outside (positive volume); the broken
ones are built from them by removing, flipping and duplicating faces with a fixed seed.
"""

from __future__ import annotations

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]

#: Corners of the two boxes of :func:`two_intersecting_boxes`, ``((lo, hi), (lo, hi))``.
TWO_BOXES = (((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)), ((0.0, -0.2, -0.3), (1.0, 0.8, 0.7)))

_BOX_F = np.array([
    [0, 1, 3], [0, 3, 2],  # -x
    [4, 6, 7], [4, 7, 5],  # +x
    [0, 4, 5], [0, 5, 1],  # -y
    [2, 3, 7], [2, 7, 6],  # +y
    [0, 2, 6], [0, 6, 4],  # -z
    [1, 5, 7], [1, 7, 3],  # +z, last so that open_box can drop it
], dtype=np.int64)


def box(lo=(-0.5, -0.5, -0.5), hi=(0.5, 0.5, 0.5)) -> Mesh:
    """Closed axis-aligned box with corners ``lo``, ``hi``: 8 vertices, 12 outward triangles."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    return lo + corners * (hi - lo), _BOX_F.copy()


def cube(size: float = 1.0, center=(0.0, 0.0, 0.0)) -> Mesh:
    """Closed cube of edge ``size`` around ``center``."""
    c = np.asarray(center, dtype=np.float64)
    return box(c - size / 2, c + size / 2)


def open_box() -> Mesh:
    """The unit cube without its top (+z) face: an open surface with one square hole."""
    v, f = cube()
    return v, f[:-2]


def uv_sphere(rings: int = 16, segments: int = 32, radius: float = 1.0, center=(0.0, 0.0, 0.0)) -> Mesh:
    """Closed UV sphere: ``rings`` bands from pole to pole, ``segments`` around."""
    if rings < 2 or segments < 3:
        raise ValueError(f"uv_sphere needs rings >= 2 and segments >= 3, got {rings}, {segments}")
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    v = np.vstack([[0.0, 0.0, 1.0], ring, [0.0, 0.0, -1.0]]) * radius + np.asarray(center, dtype=np.float64)
    s = segments
    j = np.arange(s)
    north = np.stack([np.zeros(s, np.int64), 1 + j, 1 + (j + 1) % s], axis=1)
    i = np.arange(rings - 2)[:, None]
    a = 1 + i * s + j
    b = 1 + i * s + (j + 1) % s
    band = np.concatenate([np.stack([a, a + s, b + s], -1).reshape(-1, 3),
                           np.stack([a, b + s, b], -1).reshape(-1, 3)])
    last = 1 + (rings - 2) * s
    south = np.stack([np.full(s, len(v) - 1), last + (j + 1) % s, last + j], axis=1)
    return v, np.concatenate([north, band, south]).astype(np.int64)


def dumbbell(neck: float, rings: int = 96, segments: int = 48) -> Mesh:
    """Two unit balls 3.5 apart on the z axis, joined by a smooth neck of radius ``neck`` (closed,
    genus 0): a :func:`uv_sphere` stretched along z to [-2.75, 2.75] and swollen or pinched to the
    profile ``r(z)``, the balls' outline blended with the neck by a soft maximum."""
    v, f = uv_sphere(rings, segments)
    z = 2.75 * v[:, 2]
    ball = np.sqrt(np.clip(1.0 - (np.abs(z) - 1.75) ** 2, 0.0, None))
    r = np.where(np.abs(z) >= 1.75, ball, (ball ** 4 + neck ** 4) ** 0.25)
    around = np.linalg.norm(v[:, :2], axis=1)
    v[:, :2] *= np.where(around > 0, r / np.maximum(around, 1e-300), 0.0)[:, None]
    v[:, 2] = z
    return v, f


def torus(major: float = 1.0, minor: float = 0.4, rings: int = 32, segments: int = 16) -> Mesh:
    """Closed torus around the z axis (genus 1): ``rings`` around the axis, ``segments`` around the tube."""
    u = np.linspace(0.0, 2 * np.pi, rings, endpoint=False)
    w = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    uu, ww = np.meshgrid(u, w, indexing="ij")
    r = major + minor * np.cos(ww)
    v = np.stack([r * np.cos(uu), r * np.sin(uu), minor * np.sin(ww)], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = i * segments + j
    b = ((i + 1) % rings) * segments + j
    c = ((i + 1) % rings) * segments + (j + 1) % segments
    d = i * segments + (j + 1) % segments
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f.astype(np.int64)


def sphere_with_holes(holes: int = 3, seed: int = 0, radius: float = 0.15) -> Mesh:
    """A UV sphere of radius 1 with ``holes`` patches of faces (within ``radius`` of a face) removed.

    A small ``radius`` (0.01) removes single faces: holes about 0.1 across.
    """
    v, f = uv_sphere(16, 32)
    return v, f[~_patches(v, f, holes, radius, seed)]


def flipped_faces(v: np.ndarray, f: np.ndarray, fraction: float = 0.3, seed: int = 0) -> Mesh:
    """The same surface with the winding of a random ``fraction`` of faces reversed."""
    f = f.copy()
    flip = np.random.default_rng(seed).random(len(f)) < fraction
    f[flip] = f[flip][:, ::-1]
    return v, f


def with_duplicate_faces(v: np.ndarray, f: np.ndarray, fraction: float = 0.2, seed: int = 0) -> Mesh:
    """The same surface with a random ``fraction`` of faces listed twice.

    Half of the copies start at another corner (same triangle, same winding, different
    row), so a check for identical rows alone does not find them.
    """
    rng = np.random.default_rng(seed)
    dupes = f[rng.random(len(f)) < fraction]
    dupes[::2] = np.roll(dupes[::2], 1, axis=1)
    return v, np.vstack([f, dupes])


def two_intersecting_boxes() -> Mesh:
    """Two closed boxes (:data:`TWO_BOXES`) that pass through each other, as one soup."""
    (lo_a, hi_a), (lo_b, hi_b) = TWO_BOXES
    va, fa = box(lo_a, hi_a)
    vb, fb = box(lo_b, hi_b)
    return np.vstack([va, vb]), np.vstack([fa, fb + len(va)])


def plane(n: int = 8, size: float = 1.0) -> Mesh:
    """A flat ``size`` x ``size`` square in z = 0 as ``2 n^2`` triangles: zero thickness, open."""
    xs = np.linspace(-size / 2, size / 2, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return v, np.vstack([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64)


def nested_spheres() -> Mesh:
    """A sphere of radius 1 around a sphere of radius 0.5 (inner one wound inward: a hollow ball)."""
    vo, fo = uv_sphere(16, 32, 1.0)
    vi, fi = uv_sphere(12, 24, 0.5)
    return np.vstack([vo, vi]), np.vstack([fo, fi[:, ::-1] + len(vo)])


def broken_mesh() -> Mesh:
    """A torus as real downloads look: holes, flipped, duplicate and degenerate faces at once.

    Four patches of faces are missing, a quarter of the rest are flipped, a tenth are
    listed twice, and a few zero-area faces (a repeated corner; three collinear points on
    an existing edge) are mixed in.
    """
    v, f = torus(1.0, 0.4, 48, 24)
    f = f[~_patches(v, f, 4, 0.12, seed=3)]
    v, f = flipped_faces(v, f, 0.25, seed=4)
    v, f = with_duplicate_faces(v, f, 0.1, seed=5)
    e = f[:6, :2]                                             # six edges of the surface
    mid = len(v) + np.arange(len(e))
    v = np.vstack([v, v[e].mean(axis=1)])                     # their midpoints
    degenerate = np.concatenate([
        np.stack([e[:, 0], e[:, 0], e[:, 1]], axis=1),        # a repeated corner
        np.stack([e[:, 0], mid, e[:, 1]], axis=1),            # collinear corners
    ])
    return v, np.vstack([f, degenerate]).astype(np.int64)


def _patches(v: np.ndarray, f: np.ndarray, count: int, radius: float, seed: int) -> np.ndarray:
    """Mask (m,) of faces whose centroid is within ``radius`` of ``count`` random face centroids."""
    centroids = v[f].mean(axis=1)
    rng = np.random.default_rng(seed)
    drop = np.zeros(len(f), dtype=bool)
    for c in centroids[rng.choice(len(f), count, replace=False)]:
        drop |= np.linalg.norm(centroids - c, axis=1) < radius
    return drop


#: The unit cube as six outward quads: :data:`CUBE_VERTICES` and the corners of each quad in winding order.
CUBE_VERTICES = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
CUBE_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def quad_cube(levels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The unit quad cube subdivided ``levels`` times: ``vertices (n, 3)``, ``polygons (k, 4)``, all quads."""
    from backend.mesh.polygons import pad
    from backend.mesh.retopo.quads import subdivide

    v, p = CUBE_VERTICES, pad(CUBE_QUADS)
    for _ in range(levels):
        sub = subdivide(v, p)
        v, p = sub.vertices, sub.polygons
    return v, p


def polygon_volume(vertices: np.ndarray, polygons: np.ndarray) -> float:
    """Signed volume enclosed by a ``(k, 4)`` polygon array (positive when wound outward)."""
    from backend.mesh.metrics import signed_volume
    from backend.mesh.polygons import to_mesh

    return signed_volume(vertices, to_mesh(vertices, polygons)[0])
