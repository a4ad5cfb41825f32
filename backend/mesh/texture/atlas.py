"""Texture space: which texels a UV layout covers, and filling the texels around the charts.

Rasterization
    Every triangle is drawn into the ``size`` x ``size`` texel grid in UV space: a texel is
    *inside* a triangle when its centre is (texel ``(row r, column c)`` has its centre at
    ``u = (c + 0.5) / size``, ``v = 1 - (r + 0.5) / size``, see :mod:`backend.mesh.texture.uv`). Texels
    whose centre lies outside every triangle but within :data:`BORDER` texels (diagonal
    included) of a covered texel get the triangle of the nearest covered texel, with
    *extrapolated* barycentrics (the plane of the triangle continued a little): bilinear
    filtering at a chart's edge reads those texels, so they must hold what the surface would
    have there, not a copy of their neighbour. Where triangles share a texel centre (on a
    common edge) the first listed wins. All of it is vectorized over triangles and their
    bounding boxes, in chunks, and a distance transform for the border; there is no Python
    loop per texel or per triangle.

Gutters
    :func:`dilate` gives every texel not covered the value of the nearest covered texel
    (Euclidean distance transform), so mip-mapping and bilinear filtering never pull in the
    empty background. :func:`pull_push` fills holes inside the charts smoothly (a mip pyramid
    of the known texels, pushed back down), for bakes that leave some covered texels unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Texels outside a triangle but this close to it (in texels) are drawn too (see module doc).
BORDER = 1.0
#: Candidate (texel, triangle) pairs per chunk.
CHUNK_PAIRS = 1 << 21


@dataclass(frozen=True)
class Texels:
    """Texels covered by a UV layout.

    Attributes
    ----------
    size : int
        The image is ``size`` x ``size``.
    pixel : (k,) int64
        Flat texel index ``row * size + column`` (row 0 at the top of the image), unique.
    face : (k,) int64
        The triangle drawn there.
    bary : (k, 3) float64
        Barycentric weights of the texel centre in that triangle (extrapolated for border texels).
    inside : (k,) bool
        The texel centre lies inside the triangle (False: a border texel).
    """

    size: int
    pixel: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    inside: np.ndarray

    def interpolate(self, values: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Per-vertex ``values`` (n, ...) interpolated at the texels, (k, ...)."""
        corners = values[faces[self.face]]  # (k, 3, ...)
        return np.einsum("kc,kc...->k...", self.bary, corners)

    def image(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """An image (size, size, ...) holding ``values`` (k, ...) at the covered texels."""
        out = np.full((self.size * self.size, *values.shape[1:]), fill, dtype=values.dtype)
        out[self.pixel] = values
        return out.reshape(self.size, self.size, *values.shape[1:])


def texel_centres(size: int) -> np.ndarray:
    """UV (size * size, 2) of every texel centre, flat order ``row * size + column``."""
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c)
    return np.stack([u.ravel(), v.ravel()], axis=1)


def rasterize(uv: np.ndarray, faces: np.ndarray, size: int, *, border: float = BORDER) -> Texels:
    """The texels that the triangles ``faces`` (m, 3) with per-vertex ``uv`` (n, 2) cover.

    Parameters
    ----------
    uv : (n, 2) float
        Texture coordinates, origin bottom-left, the unit square mapping onto the image.
    faces : (m, 3) int
    size : int
        Image side in texels.
    border : float
        Also draw texels whose centre is within this many texels of a triangle (0: only inside).

    Returns
    -------
    Texels
    """
    uv = np.asarray(uv, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must have shape (n, 2), got {uv.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    pixel, face, bary, _ = _cover(uv, faces, size, 0.0)
    if len(pixel) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Texels(size, empty, empty, np.zeros((0, 3)), np.zeros(0, dtype=bool))
    order = np.argsort(pixel, kind="stable")
    first = order[np.concatenate([[True], pixel[order][1:] != pixel[order][:-1]])]
    pixel, face, bary = pixel[first], face[first], bary[first]
    inside = np.ones(len(pixel), dtype=bool)
    if border > 0:
        ring, ring_face = _border_texels(pixel, face, size, border)
        if len(ring):
            ring_bary = _barycentric_at(uv, faces, ring_face, ring, size)
            pixel = np.concatenate([pixel, ring])
            face = np.concatenate([face, ring_face])
            bary = np.concatenate([bary, ring_bary])
            inside = np.concatenate([inside, np.zeros(len(ring), dtype=bool)])
    return Texels(size, pixel, face, bary, inside)


def _border_texels(pixel: np.ndarray, face: np.ndarray, size: int, border: float) -> tuple[np.ndarray, np.ndarray]:
    """Texels not covered but within ``border`` texels of a covered one, and the triangle of
    the nearest covered texel (whose plane is continued there)."""
    from scipy import ndimage

    covered = np.zeros(size * size, dtype=bool)
    covered[pixel] = True
    covered = covered.reshape(size, size)
    dist, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    ring = (~covered) & (dist <= border * np.sqrt(2.0) + 1e-9)
    ring_pixel = np.flatnonzero(ring)
    nearest = (rows * size + cols).ravel()[ring_pixel]
    face_image = np.full(size * size, -1, dtype=np.int64)
    face_image[pixel] = face
    return ring_pixel, face_image[nearest]


def _barycentric_at(uv: np.ndarray, faces: np.ndarray, face: np.ndarray, pixel: np.ndarray, size: int) -> np.ndarray:
    """Barycentric weights (k, 3) of texel centres ``pixel`` in triangles ``face``, extrapolated outside."""
    xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)
    tri = xy[faces[face]]
    p = np.stack([pixel % size, pixel // size], axis=1).astype(np.float64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    rel = p - tri[:, 0]
    inv = 1.0 / np.where(np.abs(det) > 1e-12, det, 1.0)
    b1 = (rel[:, 0] * e2[:, 1] - rel[:, 1] * e2[:, 0]) * inv
    b2 = (e1[:, 0] * rel[:, 1] - e1[:, 1] * rel[:, 0]) * inv
    return np.stack([1.0 - b1 - b2, b1, b2], axis=1)


def overlapping_groups(uv: np.ndarray, faces: np.ndarray, size: int, group: np.ndarray) -> np.ndarray:
    """Groups (e.g. UV charts) whose own triangles cover a texel centre twice, at resolution ``size``.

    Parameters
    ----------
    uv : (n, 2) float, faces : (m, 3) int
    group : (m,) int
        Group of each face; overlaps between different groups are not reported.

    Returns
    -------
    (g,) int64: the groups with at least one texel centre strictly inside two of their triangles.
    """
    pixel, face, bary, _ = _cover(uv, faces, size, 0.0, strict=1e-6)
    if len(pixel) == 0:
        return np.zeros(0, dtype=np.int64)
    key = pixel * (int(group.max()) + 1) + group[face]
    values, counts = np.unique(key, return_counts=True)
    return np.unique(values[counts > 1] % (int(group.max()) + 1))


def _cover(uv: np.ndarray, faces: np.ndarray, size: int, border: float, strict: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (texel, triangle) pair within ``border`` texels: pixel, face, barycentrics, distance
    (0 inside; with ``strict`` > 0, inside means every barycentric weight above ``strict``)."""
    # Texel space: x = column coordinate, y = row coordinate, texel centres at integers.
    xy = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)
    tri = xy[faces]  # (m, 3, 2)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-12
    lo = np.clip(np.floor(tri.min(axis=1) - border).astype(np.int64), 0, size - 1)
    hi = np.clip(np.ceil(tri.max(axis=1) + border).astype(np.int64), 0, size - 1)
    width = np.where(ok, hi[:, 0] - lo[:, 0] + 1, 0)
    height = np.where(ok, hi[:, 1] - lo[:, 1] + 1, 0)
    count = np.maximum(width, 0) * np.maximum(height, 0)
    pixels, tris, barys, dists = [], [], [], []
    for t, px, py in box_pixels(lo, width, count, CHUNK_PAIRS):
        p = np.stack([px, py], axis=1).astype(np.float64)
        rel = p - tri[t, 0]
        inv = 1.0 / det[t]
        b1 = (rel[:, 0] * e2[t, 1] - rel[:, 1] * e2[t, 0]) * inv
        b2 = (e1[t, 0] * rel[:, 1] - e1[t, 1] * rel[:, 0]) * inv
        bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
        inside = (bary > strict).all(axis=1) if strict > 0 else (bary >= -1e-9).all(axis=1)
        if border > 0:
            dist = np.where(inside, 0.0, _distance_to_triangle(p, tri[t]))
            keep = dist <= border
        else:
            dist = np.zeros(len(t))
            keep = inside
        pixels.append(py[keep] * size + px[keep])
        tris.append(t[keep])
        barys.append(bary[keep])
        dists.append(dist[keep])
    if not pixels:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(pixels), np.concatenate(tris), np.concatenate(barys), np.concatenate(dists)


def box_pixels(lo: np.ndarray, width: np.ndarray, count: np.ndarray, chunk: int):
    """Every pixel of each triangle's pixel box, in chunks of about ``chunk`` pixels.

    Triangle ``i``'s box starts at pixel ``lo[i]`` (x, y), is ``width[i]`` wide and holds
    ``count[i]`` pixels (0: skipped). Yields ``(t, px, py)``: the triangle (k,) and pixel
    coordinates (k,) of each pixel of the chunk; a box larger than ``chunk`` is one chunk.
    """
    cum = np.cumsum(count)
    start = 0
    while start < len(count):
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + chunk, side="right")), start + 1)
        ids = np.arange(start, stop)
        n = count[ids]
        t = np.repeat(ids, n)
        if len(t):
            local = np.arange(len(t)) - np.repeat(np.cumsum(n) - n, n)
            yield t, lo[t, 0] + local % width[t], lo[t, 1] + local // width[t]
        start = stop


def _distance_to_triangle(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Distance from 2D points ``p`` (k, 2) to the 2D triangles ``tri`` (k, 3, 2) (outside points)."""
    best = np.full(len(p), np.inf)
    for i in range(3):
        a, b = tri[:, i], tri[:, (i + 1) % 3]
        ab = b - a
        denom = np.einsum("ij,ij->i", ab, ab)
        s = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.where(denom > 0, denom, 1.0), 0.0, 1.0)
        d = np.linalg.norm(p - (a + s[:, None] * ab), axis=1)
        best = np.minimum(best, d)
    return best


def dilate(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Copy into every texel where ``known`` is False the value of the nearest known texel.

    Parameters
    ----------
    image : (H, W, ...) array
    known : (H, W) bool

    Returns
    -------
    (H, W, ...) array, a new one (``image`` where known).
    """
    from scipy import ndimage

    known = np.asarray(known, dtype=bool)
    if known.all() or not known.any():
        return image.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
    return image[rows, cols]


def pull_push(image: np.ndarray, weight: np.ndarray, *, min_weight: float = 1e-6) -> np.ndarray:
    """Fill texels of zero ``weight`` from the weighted mip pyramid of the others (pull-push).

    Parameters
    ----------
    image : (H, W, C) float
    weight : (H, W) float, >= 0
        Confidence of each texel; 0 where unknown.

    Returns
    -------
    (H, W, C) float: ``image`` where the weight is positive, smooth interpolation elsewhere.
    """
    img = np.asarray(image, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    levels = [(img * w[..., None], w)]
    while max(levels[-1][1].shape) > 1:
        cw, ww = levels[-1]
        h, wd = ww.shape
        ph, pw = h + h % 2, wd + wd % 2
        cw = np.pad(cw, ((0, ph - h), (0, pw - wd), (0, 0)))
        ww = np.pad(ww, ((0, ph - h), (0, pw - wd)))
        cw = cw.reshape(ph // 2, 2, pw // 2, 2, -1).sum(axis=(1, 3))
        ww = ww.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
        levels.append((cw, ww))
    colour = levels[-1][0] / np.maximum(levels[-1][1], min_weight)[..., None]
    for cw, ww in reversed(levels[:-1]):
        h, wd = ww.shape
        up = np.repeat(np.repeat(colour, 2, axis=0), 2, axis=1)[:h, :wd]
        alpha = np.clip(ww, 0.0, 1.0)[..., None]
        own = cw / np.maximum(ww, min_weight)[..., None]
        colour = alpha * own + (1.0 - alpha) * up
    return np.where(w[..., None] > 0, img, colour)
