"""The no-learning baseline of ``views_to_mesh``: a visual hull carved from posed masks.

Every learned reconstruction is measured against this, and it is the fallback when no
weights are present. Inputs are render/'s posed views (:class:`backend.mesh.texture.projection.PosedViews`):
the masks (alpha) and the cameras. The object lies in the canonical box of
:mod:`backend.conventions` (world frame, longest side within ``[-0.95, 0.95]``), so the grid
spans ``[-1, 1]^3``.

Carving: each grid node is projected into every view and takes the view's alpha there
(bilinear); a node that projects outside an image gets alpha 0, since render/ frames the
whole object in every view. The node's value is its smallest alpha over the views, so the
level 0.5 of that field is the hull's surface with sub-voxel placement, and marching cubes
(PyMCubes) turns it into a closed mesh (the grid is padded with empty nodes).

What it cannot do, by construction: concavities no silhouette shows (a bowl's inside, the
seat between a chair's arms seen from the side) stay filled. Normal maps, when the views have
them, could refine it; they are not used yet.
"""

from __future__ import annotations

import numpy as np

from backend.conventions import intrinsics_matrix
from backend.mesh.texture.projection import PosedViews

#: The grid spans ``[-GRID_HALF, GRID_HALF]^3`` (world units): the canonical box plus a margin.
GRID_HALF = 1.0
#: Nodes projected per chunk (bounds memory: ~100 bytes a node per view).
CHUNK = 1 << 20


def hull_field(views: PosedViews, resolution: int = 128) -> np.ndarray:
    """The ``(r, r, r)`` float32 field of smallest alpha over the views at the grid nodes.

    Node ``(i, j, k)`` sits at ``-GRID_HALF + (i, j, k) * 2 GRID_HALF / (r - 1)`` along x, y, z.
    """
    if not 8 <= resolution <= 512:
        raise ValueError(f"resolution must be in 8..512, got {resolution}")
    axis = np.linspace(-GRID_HALF, GRID_HALF, resolution, dtype=np.float64)
    field = np.ones(resolution ** 3, dtype=np.float32)
    for start in range(0, resolution ** 3, CHUNK):
        index = np.arange(start, min(start + CHUNK, resolution ** 3))
        i, rest = np.divmod(index, resolution * resolution)
        j, k = np.divmod(rest, resolution)
        points = np.stack([axis[i], axis[j], axis[k]], axis=1)
        for view in views.views:
            field[index] = np.minimum(field[index], _alpha_at(view, points))
    return field.reshape(resolution, resolution, resolution)


def _alpha_at(view, points: np.ndarray) -> np.ndarray:
    """The view's alpha at the projections of world ``points`` (bilinear; 0 outside the image or behind)."""
    w2c = np.asarray(view.world_to_camera, dtype=np.float64)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    alpha = view.image[..., 3]
    h, w = alpha.shape
    z = cam[:, 2]
    front = z > 1e-9
    pix = cam @ intrinsics_matrix(view.intrinsics).T
    u = np.where(front, pix[:, 0] / np.where(front, z, 1.0), -1.0)
    v = np.where(front, pix[:, 1] / np.where(front, z, 1.0), -1.0)
    inside = front & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    out = np.zeros(len(points), dtype=np.float32)
    if inside.any():
        uu, vv = u[inside], v[inside]
        u0, v0 = np.floor(uu).astype(np.int64), np.floor(vv).astype(np.int64)
        u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
        fu, fv = (uu - u0).astype(np.float32), (vv - v0).astype(np.float32)
        top = alpha[v0, u0] * (1 - fu) + alpha[v0, u1] * fu
        bottom = alpha[v1, u0] * (1 - fu) + alpha[v1, u1] * fu
        out[inside] = top * (1 - fv) + bottom * fv
    return out


def visual_hull(views: PosedViews, resolution: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The visual hull of the views as a closed triangle mesh in the world frame: (vertices, faces)."""
    import mcubes

    field = hull_field(views, resolution)
    padded = np.zeros(tuple(s + 2 for s in field.shape), dtype=np.float64)
    padded[1:-1, 1:-1, 1:-1] = field
    vertices, faces = mcubes.marching_cubes(padded, 0.5)
    if len(faces) == 0:
        raise ValueError("the views' masks share no region: every grid node was carved away (are the cameras and "
                         "masks of one object?)")
    step = 2.0 * GRID_HALF / (resolution - 1)
    vertices = (vertices - 1.0) * step - GRID_HALF
    # PyMCubes orients triangles towards decreasing values' side differently from our outward
    # convention; face them outward (positive volume).
    faces = np.asarray(faces, dtype=np.int64)
    t = vertices[faces]
    if np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() < 0:
        faces = faces[:, ::-1]
    return vertices, np.ascontiguousarray(faces)
