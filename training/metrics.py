"""Reconstruction metrics of the views-to-mesh bench and of validation.

All distances are in world units of the canonical box (the reference's longest side is 1.9).
``chamfer_l1`` is the mean of the two directed mean nearest-neighbour distances between
surface samples (as :func:`backend.mesh.metrics.chamfer_l1`); ``fscore_1`` / ``fscore_2`` the
F-score at a threshold of 1% / 2% of the reference's longest bounding-box side; ``normal``
the normal consistency: the mean ``|n_a . n_b|`` over nearest-neighbour pairs, both ways.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.conventions import BLENDER_FROM_GLTF
from backend.mesh.metrics import sample_surface


def _samples(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    points, face_ids = sample_surface(vertices, faces, n, seed=seed)
    t = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)[face_ids]]
    normals = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    return points, normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def mesh_metrics(vertices: np.ndarray, faces: np.ndarray, ref_vertices: np.ndarray, ref_faces: np.ndarray,
                 *, samples: int = 50_000, seed: int = 0) -> dict:
    """Chamfer-L1, F-score at 1% and 2%, and normal consistency of a mesh against a reference."""
    from scipy.spatial import cKDTree

    if len(faces) == 0:
        return {"chamfer_l1": float("inf"), "fscore_1": 0.0, "fscore_2": 0.0, "normal": 0.0}
    pa, na = _samples(vertices, faces, samples, seed)
    pb, nb = _samples(ref_vertices, ref_faces, samples, seed + 1)
    da, ia = cKDTree(pb).query(pa, workers=-1)
    db, ib = cKDTree(pa).query(pb, workers=-1)
    side = float(np.ptp(np.asarray(ref_vertices, dtype=np.float64), axis=0).max())
    out = {"chamfer_l1": float((da.mean() + db.mean()) / 2.0)}
    for pct in (1, 2):
        tau = pct / 100.0 * side
        precision, recall = float((da < tau).mean()), float((db < tau).mean())
        out[f"fscore_{pct}"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out["normal"] = float((np.abs((na * nb[ia]).sum(1)).mean() + np.abs((nb * na[ib]).sum(1)).mean()) / 2.0)
    return out


def glb_to_world(vertices: np.ndarray) -> np.ndarray:
    """Points of a render's ``mesh.glb`` (glTF Y-up) in the cameras' world (Blender Z-up)."""
    return np.asarray(vertices, dtype=np.float64) @ BLENDER_FROM_GLTF.T


def reference_mesh(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The watertight remesh an asset's SDF samples came from, in the world frame (for validation)."""
    with np.load(Path(data_dir) / "sdf" / f"{name}.npz") as z:
        scale = float(z["scale"])
        vertices = z["watertight_vertices"].astype(np.float64) / scale + z["center"]
        return glb_to_world(vertices), z["watertight_faces"].astype(np.int64)
