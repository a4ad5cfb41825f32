"""Helpers of the render tests: run a command, make meshes, check maps against a mesh file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RES = 64
#: Back-projected depth must lie this close to the surface, as a fraction of the box (side 2 * 0.95).
SURFACE_TOL = 0.005 * 1.9
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run(args, **kw):
    """Run this venv's Python with ``args`` from the repository root; output captured."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300, **kw)
    return proc


def flat_shape():
    """An ellipsoid (icosphere, 80 faces) and a box stuck into it: flat faces, non-convex, off-centre."""
    ell = trimesh.creation.icosphere(subdivisions=1, radius=0.7)
    ell.vertices *= [1.0, 0.6, 1.3]
    box = trimesh.creation.box(extents=[0.5, 0.4, 0.6])
    box.vertices += [0.7, 0.1, -0.3]
    shape = trimesh.util.concatenate([ell, box])
    shape.vertices += [2.0, 3.0, -1.0]
    return shape


def textured_sphere(colour):
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    uv = np.c_[(m.vertices[:, 0] + 0.5), (m.vertices[:, 2] + 0.5)]
    m.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", (8, 8), colour))
    return m


def closest_points(points, tri):
    """Closest point on triangles ``tri`` (m, 3, 3) to each of ``points`` (n, 3): (distance, triangle, barycentric)."""
    best = np.full(len(points), np.inf)
    best_tri = np.zeros(len(points), dtype=int)
    best_bary = np.zeros((len(points), 3))
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    for s in range(0, len(points), 128):
        p = points[s:s + 128, None, :]
        # Solve for the unconstrained barycentric coordinates, then clamp onto the triangle by
        # taking the best of the interior projection and the three edges.
        e0, e1, d = b - a, c - a, p - a
        d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
        d20, d21 = (d * e0).sum(-1), (d * e1).sum(-1)
        den = d00 * d11 - d01 * d01
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        inside = (v >= 0) & (w >= 0) & (v + w <= 1)
        cands = [(np.where(inside[..., None], np.stack([1 - v - w, v, w], -1), np.nan))]
        for i, j in ((0, 1), (1, 2), (2, 0)):
            s_, e_ = tri[:, i], tri[:, j]
            t = np.clip(((p - s_) * (e_ - s_)).sum(-1) / ((e_ - s_) ** 2).sum(-1), 0, 1)
            bary = np.zeros(t.shape + (3,))
            bary[..., i], bary[..., j] = 1 - t, t
            cands.append(bary)
        for bary in cands:
            q = np.einsum("nmk,mkd->nmd", np.nan_to_num(bary, nan=0.0), tri)
            dist = np.where(np.isnan(bary[..., 0]), np.inf, np.linalg.norm(q - p, axis=-1))
            j = dist.argmin(1)
            dj = dist[np.arange(len(j)), j]
            better = dj < best[s:s + 128]
            best[s:s + 128][better] = dj[better]
            best_tri[s:s + 128][better] = j[better]
            best_bary[s:s + 128][better] = bary[np.arange(len(j)), j][better]
    return best, best_tri, best_bary


def load_in_world(path, cameras):
    """The asset file's own triangles and vertex normals, moved into the render's world with
    cameras.json's transform."""
    mesh = trimesh.load(path, force="mesh", process=False)
    m = np.asarray(cameras["normalization"]["file_to_world"])
    verts = mesh.vertices @ m[:3, :3].T + m[:3, 3]
    normals = mesh.vertex_normals @ np.linalg.inv(m[:3, :3])  # M^-T n, row form
    return verts, mesh.faces, normals


def view_maps(folder, view):
    f = view["files"]
    mask = np.asarray(Image.open(folder / f["mask"])) > 127
    return (np.load(folder / f["depth"]), np.load(folder / f["normal_world"]),
            np.load(folder / f["normal_camera"]), mask)


def back_project(depth, mask, view):
    k, w2c = view["intrinsics"], np.asarray(view["world_to_camera"])
    v, u = np.nonzero(mask)
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u - k["cx"]) / k["fx"] * z, (v - k["cy"]) / k["fy"] * z, z], axis=1)
    return (cam - w2c[:3, 3]) @ w2c[:3, :3], v, u  # R^T (x - t), row form


def check_geometry(folder, src, *, smooth=False):
    cameras = json.loads((folder / "cameras.json").read_text())
    verts, faces, vnormals = load_in_world(src, cameras)
    tri = verts[faces]
    # The transform puts the file into the canonical box: centred, longest side 2 * 0.95.
    lo, hi = verts.min(0), verts.max(0)
    assert np.allclose((lo + hi) / 2, 0, atol=1e-6) and np.isclose((hi - lo).max(), 1.9, atol=1e-6)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    for view in cameras["views"]:
        depth, nw, nc, mask = view_maps(folder, view)
        assert mask.sum() > 50, "the asset must be in view"
        assert (depth[~mask] == 0).all() and (depth[mask] > 0).all()
        # 1. Depth back-projected with cameras.json lands on the mesh surface.
        pts, v, u = back_project(depth, mask, view)
        dist, idx, bary = closest_points(pts, tri)
        assert dist.max() < SURFACE_TOL, f"view {view['index']}: {dist.max():.2e} off the surface"
        # 2. Every mesh vertex projects inside the mask (within the pixel it rounds to, or next to it).
        w2c, k = np.asarray(view["world_to_camera"]), view["intrinsics"]
        pc = verts @ w2c[:3, :3].T + w2c[:3, 3]
        uu = np.round(k["fx"] * pc[:, 0] / pc[:, 2] + k["cx"]).astype(int)
        vv = np.round(k["fy"] * pc[:, 1] / pc[:, 2] + k["cy"]).astype(int)
        assert ((uu >= 0) & (uu < k["width"]) & (vv >= 0) & (vv < k["height"])).all()
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        assert grown[vv, uu].all()
        strictly = mask[vv, uu].mean()
        assert strictly > 0.5
        # 3. Rendered world normals agree with the mesh's (face normals for flat-shaded files,
        # interpolated vertex normals for smooth ones), facing the camera.
        n = nw[v, u].astype(np.float64)
        if smooth:
            expected = np.einsum("nk,nkd->nd", bary, vnormals[faces[idx]])
            expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        else:
            expected = fn[idx]
        cam_pos = np.linalg.inv(w2c)[:3, 3]
        facing = np.sign(((cam_pos - pts) * fn[idx]).sum(1))[:, None]
        cos = (n * expected * facing).sum(1)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert np.median(angle) < 2.0, f"view {view['index']}: median angle {np.median(angle):.2f}"
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
        # 4. Camera-frame normals are the world normals rotated into the OpenCV camera.
        assert np.allclose(nc[mask], nw[mask] @ w2c[:3, :3].T, atol=1e-5)
        assert (nc[mask][:, 2] <= 1e-4).all(), "normals face the camera (OpenCV camera looks down +z)"
    return cameras
