"""The post-processing of the views model's meshes (no model needed)."""

from __future__ import annotations

import numpy as np
import trimesh

from training.infer import taubin


def _rippled_sphere(seed: int = 0):
    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(seed)
    radial = 1.0 + 0.02 * rng.standard_normal(len(sphere.vertices))
    return sphere.vertices * radial[:, None], sphere.faces


def test_taubin_removes_ripples_without_shrinking():
    vertices, faces = _rippled_sphere()
    smoothed = taubin(vertices, faces, 10)
    before = np.linalg.norm(vertices, axis=1)
    after = np.linalg.norm(smoothed, axis=1)
    assert after.std() < 0.5 * before.std()                  # the ripples are mostly gone
    assert abs(after.mean() - before.mean()) < 0.005          # and the sphere kept its size
    # Plain Laplacian steps (mu = 0) shrink it: the mu step is what keeps the volume.
    shrunk = np.linalg.norm(taubin(vertices, faces, 10, mu=0.0), axis=1)
    assert before.mean() - shrunk.mean() > 0.01


def test_taubin_keeps_connectivity_and_zero_passes_is_identity():
    vertices, faces = _rippled_sphere(1)
    assert np.array_equal(taubin(vertices, faces, 0), vertices)
    mesh = trimesh.Trimesh(taubin(vertices, faces, 10), faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_taubin_leaves_unreferenced_vertices_alone():
    vertices, faces = _rippled_sphere(2)
    extra = np.vstack([vertices, [[5.0, 5.0, 5.0]]])
    assert np.array_equal(taubin(extra, faces, 3)[-1], [5.0, 5.0, 5.0])
