"""Meshes from a trained views-to-mesh model: the model's side of the ``views_to_mesh`` pipeline."""

from __future__ import annotations

import numpy as np

from backend.mesh.texture.projection import PosedViews

#: Grid resolution of surface extraction by default (coarse-to-fine from half of it).
DEFAULT_RESOLUTION = 128


def mesh_from_state(model, state: dict, resolution: int = DEFAULT_RESOLUTION, progress=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the model's SDF (level 0) over ``[-1, 1]^3``: a closed, outward mesh (world frame)."""
    from training.baseline import grid_surface
    from training.model import extract_sdf_grid

    field = extract_sdf_grid(model, state, resolution, progress=progress).double().cpu().numpy()
    return grid_surface(-field, 0.0, -model.config.truncation)            # the SDF is negative inside


def views_tensors(views: PosedViews, image_size: int, *, use_normals: bool = True) -> dict:
    """Model inputs (batch of one) from posed views: images resized to ``image_size``, cameras scaled."""
    import torch

    from training.dataset import GREY, _area_resize, scaled_intrinsics

    images, w2c, intr = [], [], []
    have_normals = use_normals and all(v.normal_world is not None for v in views.views)
    for view in views.views:
        rgba = view.image.astype(np.float32)
        alpha = rgba[..., 3]
        colour = rgba[..., :3] * alpha[..., None] + GREY * (1.0 - alpha[..., None])
        h, w = alpha.shape
        if h != w:
            raise ValueError(f"views must be square images, got {w} x {h}")
        small_alpha = _area_resize(alpha, image_size)
        if have_normals:
            n = _area_resize(view.normal_world.astype(np.float32) * alpha[..., None], image_size)
            length = np.linalg.norm(n, axis=-1, keepdims=True)
            n = np.where(length > 1e-6, n / np.maximum(length, 1e-6), 0.0)
        else:
            n = np.zeros((image_size, image_size, 3), np.float32)
        flag = np.full((image_size, image_size, 1), 1.0 if have_normals else 0.0, np.float32)
        # Quantize as the packs do, so inference sees what training saw.
        rgb = np.round(_area_resize(colour, image_size) * 255) / 255
        n = (np.round((n + 1.0) * 127.5) / 127.5 - 1.0) if have_normals else n
        a = np.round(small_alpha * 255) / 255
        images.append(np.concatenate([rgb, n, a[..., None], flag], -1).transpose(2, 0, 1))
        w2c.append(np.asarray(view.world_to_camera, dtype=np.float32))
        intr.append(scaled_intrinsics(view.intrinsics, image_size))
    return {"images": torch.from_numpy(np.asarray(images, dtype=np.float32))[None],
            "world_to_camera": torch.from_numpy(np.asarray(w2c, dtype=np.float32))[None],
            "intrinsics": torch.from_numpy(np.asarray(intr, dtype=np.float32))[None],
            "normals_used": have_normals}


def reconstruct(model, views: PosedViews, resolution: int = DEFAULT_RESOLUTION, *, use_normals: bool = True,
                progress=None) -> tuple[np.ndarray, np.ndarray]:
    """A closed mesh (world frame) from posed views with a trained :class:`~training.model.ViewsToSDF`."""
    import torch

    inputs = views_tensors(views, model.config.image_size, use_normals=use_normals)
    with torch.no_grad():
        state = model.encode(inputs["images"], inputs["world_to_camera"], inputs["intrinsics"])
        return mesh_from_state(model, state, resolution, progress=progress)
