"""Exact per-pixel geometry by ray casting: depth, normals (world and camera frame) and mask.

One ray through each pixel centre (conventions of :mod:`backend.conventions`), cast against
the scene's triangles with Blender's BVH (``mathutils.bvhtree``, no render, no sampling):
so depth, normals and mask are exact for the pixel centre, with no anti-aliasing blur and
no noise. Normals are the shading normals Blender would use (corner normals interpolated
with the hit's barycentric coordinates: smooth, flat or custom split normals as the asset
has them), flipped towards the camera where the ray hits a back face, as Cycles does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from backend.conventions import intrinsics_matrix


@dataclass
class GeometryMaps:
    """Per-view maps, all (H, W[, 3]).

    Attributes
    ----------
    depth : (H, W) float32
        z in the OpenCV camera frame (canonical units); 0 where the ray misses.
    normal_world : (H, W, 3) float32
        Unit shading normal in the world frame; 0 where the ray misses.
    normal_camera : (H, W, 3) float32
        The same normal in the OpenCV camera frame (x right, y down, z forward).
    mask : (H, W) bool
        The ray through the pixel centre hits the mesh.
    triangle : (H, W) int64
        Index of the hit triangle, -1 where the ray misses.
    """

    depth: np.ndarray
    normal_world: np.ndarray
    normal_camera: np.ndarray
    mask: np.ndarray
    triangle: np.ndarray


class RayCaster:
    """A BVH over triangles ``(m, 3, 3)`` with corner normals ``(m, 3, 3)``, world frame."""

    def __init__(self, triangles: np.ndarray, corner_normals: np.ndarray):
        from mathutils.bvhtree import BVHTree

        self.triangles = np.asarray(triangles, dtype=np.float64)
        self.corner_normals = np.asarray(corner_normals, dtype=np.float64)
        if self.triangles.ndim != 3 or self.triangles.shape[1:] != (3, 3) or len(self.triangles) == 0:
            raise ValueError(f"triangles must have shape (m, 3, 3) with m > 0, got {self.triangles.shape}")
        m = len(self.triangles)
        self.tree = BVHTree.FromPolygons(self.triangles.reshape(-1, 3).tolist(),
                                         np.arange(3 * m).reshape(m, 3).tolist(), all_triangles=True)
        self.points = np.unique(self.triangles.reshape(-1, 3), axis=0)

    def render(self, world_to_camera: np.ndarray, intrinsics: dict) -> GeometryMaps:
        """Cast one ray per pixel centre of the camera ``world_to_camera`` (4, 4, OpenCV)."""
        w, h = int(intrinsics["width"]), int(intrinsics["height"])
        w2c = np.asarray(world_to_camera, dtype=np.float64)
        rot, t = w2c[:3, :3], w2c[:3, 3]
        origin = -rot.T @ t
        k_inv = np.linalg.inv(intrinsics_matrix(intrinsics))
        u0, u1, v0, v1 = self._pixel_window(rot, t, intrinsics)
        us, vs = np.meshgrid(np.arange(u0, u1), np.arange(v0, v1))
        us, vs = us.ravel(), vs.ravel()
        pix = np.stack([us, vs, np.ones_like(us)], axis=1).astype(np.float64)
        d_cam = pix @ k_inv.T  # z = 1 in the camera frame
        d_world = d_cam @ rot  # rot.T @ d for each row
        d_unit = d_world / np.linalg.norm(d_world, axis=1, keepdims=True)

        # One BVH query per pixel; map() keeps the Python overhead per ray to a minimum.
        results = list(map(self.tree.ray_cast, itertools.repeat(tuple(origin), len(us)), d_unit.tolist()))
        hit_idx = np.fromiter((-1 if r[2] is None else r[2] for r in results), dtype=np.int64, count=len(us))
        hit_dist = np.fromiter((0.0 if r[3] is None else r[3] for r in results), dtype=np.float64, count=len(us))

        depth = np.zeros((h, w), dtype=np.float32)
        normal_world = np.zeros((h, w, 3), dtype=np.float32)
        normal_camera = np.zeros((h, w, 3), dtype=np.float32)
        mask = np.zeros((h, w), dtype=bool)
        triangle = np.full((h, w), -1, dtype=np.int64)
        hit = hit_idx >= 0
        if hit.any():
            idx, dist, du = hit_idx[hit], hit_dist[hit], d_unit[hit]
            # The BVH hands back the distance in float32 precision; re-intersect the hit
            # triangle's plane in float64 so depth is exact to double precision.
            tri = self.triangles[idx]
            e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
            ng = np.cross(e1, e2)
            denom = np.einsum("ij,ij->i", ng, du)
            ok = np.abs(denom) > 1e-300
            plane_t = np.where(ok, np.einsum("ij,ij->i", ng, tri[:, 0] - origin) / np.where(ok, denom, 1.0), dist)
            point = origin + plane_t[:, None] * du
            bary = _barycentric(point, tri)
            n = np.einsum("ij,ijk->ik", bary, self.corner_normals[idx])
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
            back = denom > 0  # geometric normal points away from the camera
            n[back] *= -1.0
            z = (point - origin) @ rot[2]
            vv, uu = vs[hit], us[hit]
            depth[vv, uu] = z
            normal_world[vv, uu] = n
            normal_camera[vv, uu] = n @ rot.T
            mask[vv, uu] = True
            triangle[vv, uu] = idx
        return GeometryMaps(depth, normal_world, normal_camera, mask, triangle)

    def _pixel_window(self, rot: np.ndarray, t: np.ndarray, intrinsics: dict) -> tuple[int, int, int, int]:
        """Pixel rectangle ``u0, u1, v0, v1`` outside which no ray can hit: the bounds of the
        projected vertices (a triangle projects inside the hull of its corners), one pixel wider;
        the whole image when some vertex is not in front of the camera."""
        w, h = int(intrinsics["width"]), int(intrinsics["height"])
        cam = self.points @ rot.T + t
        if (cam[:, 2] <= 1e-9).any():
            return 0, w, 0, h
        uv = (cam @ intrinsics_matrix(intrinsics).T)[:, :2] / cam[:, 2:3]
        u0 = max(0, int(np.floor(uv[:, 0].min())) - 1)
        u1 = min(w, int(np.ceil(uv[:, 0].max())) + 2)
        v0 = max(0, int(np.floor(uv[:, 1].min())) - 1)
        v1 = min(h, int(np.ceil(uv[:, 1].max())) + 2)
        if u0 >= u1 or v0 >= v1:
            return 0, 0, 0, 0
        return u0, u1, v0, v1


def _barycentric(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (n, 3) of ``points`` (n, 3) in triangles ``tri`` (n, 3, 3)."""
    v0, v1 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    v2 = points - tri[:, 0]
    d00 = np.einsum("ij,ij->i", v0, v0)
    d01 = np.einsum("ij,ij->i", v0, v1)
    d11 = np.einsum("ij,ij->i", v1, v1)
    d20 = np.einsum("ij,ij->i", v2, v0)
    d21 = np.einsum("ij,ij->i", v2, v1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) > 1e-300, den, 1.0)
    b1 = (d11 * d20 - d01 * d21) / den
    b2 = (d00 * d21 - d01 * d20) / den
    return np.clip(np.stack([1.0 - b1 - b2, b1, b2], axis=1), 0.0, 1.0)
