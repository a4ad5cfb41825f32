"""Point clouds as inputs: a PLY of points (with or without normals), or a mesh sampled into one.

A mesh becomes points the way the mesh model's training data does (uniform by area plus points
on salient edges, :func:`training.mesh_corpus.condition_points`'s recipe, here without torch);
a point cloud without normals gets them from its neighbours (principal axes of the 16 nearest
points, turned to face away from the cloud's centre: right for the closed, roughly convex
shapes most clouds are; the model was trained with noisy normals).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from backend.errors import BadMesh

#: Points kept from an uploaded cloud (a random subset of larger ones).
MAX_POINTS = 200_000
#: Samples drawn from a mesh: uniform by area, then on salient edges.
UNIFORM_POINTS, SALIENT_POINTS = 3072, 1024
NORMAL_NEIGHBOURS = 16


@dataclass(frozen=True)
class PointCloud:
    """Points (n, 3) float64 and unit normals (n, 3) (estimated when the input had none); ``source``:
    the mesh (vertices, triangles) they were sampled from, when they were."""

    points: np.ndarray
    normals: np.ndarray
    from_mesh: bool
    had_normals: bool
    source: tuple[np.ndarray, np.ndarray] | None = None


def load_points_bytes(data: bytes, *, name: str = "the points", seed: int = 0) -> PointCloud:
    """A PLY point cloud, or any mesh file the backend reads (sampled); BadMesh with a sentence otherwise."""
    from backend.mesh.io import load_mesh_bytes, sniff_format

    if not data:
        raise BadMesh(f"{name} is empty (0 bytes).")
    try:
        fmt = sniff_format(data)
    except Exception:
        fmt = None
    if fmt == "ply":
        cloud = _ply_points(data, name)
        if cloud is not None:
            return cloud
    mesh = load_mesh_bytes(data, name=name)
    return sample_mesh(mesh.vertices, mesh.faces, seed=seed)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, *, seed: int = 0) -> PointCloud:
    from scipy.spatial import cKDTree

    from backend.mesh.sampling import sample_salient, sample_surface

    uniform, normals, _ = sample_surface(vertices, faces, UNIFORM_POINTS, seed=seed)
    salient = sample_salient(vertices, faces, SALIENT_POINTS, seed=seed).points
    if len(salient):
        _, nearest = cKDTree(uniform).query(salient)
        uniform = np.concatenate([uniform, salient])
        normals = np.concatenate([normals, normals[nearest]])
    return PointCloud(np.asarray(uniform, dtype=np.float64), np.asarray(normals, dtype=np.float64), True, True,
                      source=(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)))


def _ply_points(data: bytes, name: str) -> PointCloud | None:
    """The PLY's points when it has no faces (None: it is a mesh)."""
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    except Exception as exc:
        raise BadMesh(f"{name} looks like PLY but could not be read: {type(exc).__name__}. Export it again.") from exc
    if not isinstance(loaded, trimesh.points.PointCloud):
        return None
    points = np.asarray(loaded.vertices, dtype=np.float64)
    raw = (loaded.metadata.get("_ply_raw") or {}).get("vertex", {}).get("data", {})
    normals = None
    if isinstance(raw, dict) and all(k in raw for k in ("nx", "ny", "nz")):
        normals = np.stack([np.asarray(raw[k], dtype=np.float64).reshape(-1) for k in ("nx", "ny", "nz")], 1)
    finite = np.isfinite(points).all(1) & (np.isfinite(normals).all(1) if normals is not None else True)
    if finite.sum() < 16:
        raise BadMesh(f"{name} has {int(finite.sum())} usable points; a point cloud needs at least 16 (and "
                      "thousands to say much about a shape).")
    points = points[finite]
    normals = normals[finite] if normals is not None else None
    if len(points) > MAX_POINTS:
        keep = np.random.default_rng(0).choice(len(points), MAX_POINTS, replace=False)
        points, normals = points[keep], (normals[keep] if normals is not None else None)
    had = normals is not None
    if had:
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        bad = length[:, 0] < 1e-12
        normals = normals / np.maximum(length, 1e-12)
        if bad.any():
            normals[bad] = estimate_normals(points)[bad]
    else:
        normals = estimate_normals(points)
    span = np.ptp(points, axis=0).max()
    if span <= 0:
        raise BadMesh(f"{name}: all its points are at one place.")
    return PointCloud(points, normals, False, had)


def estimate_normals(points: np.ndarray, k: int = NORMAL_NEIGHBOURS) -> np.ndarray:
    """Unit normals from each point's ``k`` nearest neighbours, facing away from the centroid."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    _, nearest = cKDTree(points).query(points, k=k)
    neighbourhoods = points[nearest] - points[nearest].mean(axis=1, keepdims=True)
    covariance = np.einsum("nki,nkj->nij", neighbourhoods, neighbourhoods)
    _, vectors = np.linalg.eigh(covariance)
    normals = vectors[:, :, 0]                        # the axis of least spread
    outward = points - points.mean(axis=0)
    normals[np.einsum("ij,ij->i", normals, outward) < 0] *= -1
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
