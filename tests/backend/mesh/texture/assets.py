"""Textured meshes and posed views that the texture tests make (no downloads, nothing shared)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from backend.conventions import (
    BLENDER_FROM_GLTF,
    camera_position,
    intrinsics_from_fov,
    intrinsics_matrix,
    look_at,
    world_to_camera_opencv,
)
from backend.mesh.texture.projection import zbuffer
from backend.mesh.types import Material, Mesh


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def checker(size: int = 256, cells: int = 8) -> np.ndarray:
    """(size, size, 3) uint8: a checker of ``cells`` x ``cells`` with a hue ramp, so every cell differs."""
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c)
    on = ((np.floor(u * cells) + np.floor(v * cells)) % 2)[..., None]
    rgb = np.stack([u, v, 1.0 - u], axis=-1) * 0.6 + 0.2 * on + 0.1
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def sphere_source(rings=24, segments=48, texture=None) -> tuple[Mesh, np.ndarray]:
    """A unit sphere with equirectangular UVs (seam vertices doubled) and a checker texture."""
    theta = np.linspace(0.0, np.pi, rings + 1)
    phi = np.linspace(0.0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    v = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    uv = np.stack([p / (2 * np.pi), 1.0 - t / np.pi], axis=-1).reshape(-1, 2)
    idx = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    # Drop the degenerate triangles at the poles.
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    f = f[area > 1e-12]
    pixels = checker() if texture is None else texture
    mesh = Mesh(v, f.astype(np.int64), uv=uv, normals=v.copy(), material=Material(base_color=png(pixels)))
    return mesh, pixels


def colour_field(points: np.ndarray) -> np.ndarray:
    """sRGB colour (k, 3) of a smooth pattern in space, so any surface point's colour is known."""
    return np.clip(0.5 + 0.4 * np.stack([np.sin(3 * points[:, 0]), np.cos(2 * points[:, 1]),
                                         np.sin(2 * points[:, 2] + 1)], axis=1), 0, 1)


def synthesize_views(vertices, faces, folder: Path, *, n_views=8, size=128, elevations=(25.0, -20.0),
                     normal_of=None):
    """Posed views of a mesh given in glTF axes, in render/'s format: the mesh goes into the
    canonical world with file_to_world, each pixel's colour is colour_field of the surface
    point our own z-buffer finds there (no other renderer involved). With ``normal_of`` (file
    points (k, 3) -> unit normals (k, 3), file frame) each view also gets a world-frame
    ``normal_world`` map, as render/ writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    file_to_world = np.eye(4)
    file_to_world[:3, :3] = BLENDER_FROM_GLTF * 0.9
    world = vertices @ file_to_world[:3, :3].T
    views = []
    for k in range(n_views):
        mw = look_at(camera_position(360.0 * k / n_views + 10, elevations[k % len(elevations)], 4.5))
        w2c = world_to_camera_opencv(mw)
        intr = intrinsics_from_fov(35.0, size, size)
        depth = zbuffer(world @ w2c[:3, :3].T + w2c[:3, 3], faces, intr)
        vv, uu = np.nonzero(np.isfinite(depth))
        z = depth[vv, uu]
        ray = np.stack([uu, vv, np.ones_like(uu)], axis=1) @ np.linalg.inv(intrinsics_matrix(intr)).T
        cam = ray * z[:, None]
        world_points = (cam - w2c[:3, 3]) @ w2c[:3, :3]
        file_points = world_points @ np.linalg.inv(file_to_world[:3, :3]).T
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[vv, uu, :3] = np.round(colour_field(file_points) * 255)
        rgba[vv, uu, 3] = 255
        name = f"{k:03d}_rgb.png"
        Image.fromarray(rgba, "RGBA").save(folder / name)
        files = {"rgb": name}
        if normal_of is not None:
            normal = np.zeros((size, size, 3), np.float32)
            normal[vv, uu] = normal_of(file_points) @ BLENDER_FROM_GLTF.T  # a rotation: normals turn alike
            files["normal_world"] = f"{k:03d}_normal_world.npy"
            np.save(folder / files["normal_world"], normal)
        views.append({"index": k, "intrinsics": intr, "world_to_camera": w2c.tolist(), "matrix_world": mw.tolist(),
                      "files": files})
    (folder / "cameras.json").write_text(json.dumps({"format": "meshsmith-views/1", "views": views,
                                                    "normalization": {"file_to_world": file_to_world.tolist()}}))
    return folder
