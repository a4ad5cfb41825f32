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
(:mod:`backend.mesh.remesh.marching`) turns it into a closed mesh (the grid is padded with empty nodes).

What it cannot do, by construction: concavities no silhouette shows (a bowl's inside, the
seat between a chair's arms seen from the side) stay filled. When the views have normal maps
they refine it (:func:`refined_hull_field`): each view's normals are integrated into a depth
map (anchored where the hull already has the observed normal), and grid nodes in front of
any view's integrated surface are carved away, which opens concavities a view looks into.
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
        points = np.stack([axis[i], axis[j], axis[k]], axis=1).astype(np.float32)
        value = np.ones(len(points), dtype=np.float32)
        live = np.arange(len(points))
        for view in views.views:            # a node one view carves away needs no other view
            value[live] = np.minimum(value[live], _alpha_at(view, points[live]))
            live = live[value[live] > 0]
        field[index] = value
    return field.reshape(resolution, resolution, resolution)


def _alpha_at(view, points: np.ndarray) -> np.ndarray:
    """The view's alpha at the projections of world ``points`` (bilinear; 0 outside the image or behind)."""
    w2c = np.asarray(view.world_to_camera, dtype=np.float64)
    k = intrinsics_matrix(view.intrinsics)
    # One affine map to homogeneous pixels, in float32: this is the hull's inner loop.
    m = (k @ w2c[:3]).astype(np.float32)
    pts = points.astype(np.float32, copy=False)
    pix = pts @ m[:, :3].T + m[:, 3]
    alpha = np.ascontiguousarray(view.image[..., 3], dtype=np.float32)
    h, w = alpha.shape
    z = pix[:, 2]
    front = z > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        u = pix[:, 0] / z
        v = pix[:, 1] / z
    inside = front & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    out = np.zeros(len(points), dtype=np.float32)
    if inside.any():
        uu, vv = u[inside], v[inside]
        u0, v0 = uu.astype(np.int64), vv.astype(np.int64)          # floor: both are >= 0 here
        fu, fv = uu - u0, vv - v0
        u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
        flat = alpha.ravel()
        r0, r1 = v0 * w, v1 * w
        top = flat[r0 + u0] * (1 - fu) + flat[r0 + u1] * fu
        bottom = flat[r1 + u0] * (1 - fu) + flat[r1 + u1] * fu
        out[inside] = top * (1 - fv) + bottom * fv
    return out


def visual_hull(views: PosedViews, resolution: int = 128, *, refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The visual hull of the views as a closed triangle mesh in the world frame: (vertices, faces).

    With ``refine`` and views that carry normal maps, the space in front of each view's
    integrated surface is carved away too (:func:`refined_hull_field`).
    """
    field = refined_hull_field(views, resolution) if refine else hull_field(views, resolution)
    vertices, faces = grid_surface(field, 0.5, 0.0)
    if len(faces) == 0:
        raise ValueError("the views' masks share no region: every grid node was carved away (are the cameras and "
                         "masks of one object?)")
    return vertices, faces


def grid_surface(field: np.ndarray, level: float, outside: float) -> tuple[np.ndarray, np.ndarray]:
    """The closed surface where ``field`` (inside above ``level``, on the grid over ``[-1, 1]^3``)
    crosses ``level``: marching cubes over the field padded with ``outside``, in the world frame,
    faces outward (positive volume)."""
    from backend.mesh.remesh.marching import marching_cubes

    resolution = field.shape[0]
    padded = np.full(tuple(s + 2 for s in field.shape), outside, dtype=np.float64)
    padded[1:-1, 1:-1, 1:-1] = field
    vertices, faces = marching_cubes(padded, level)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    vertices = (np.asarray(vertices).reshape(-1, 3) - 1.0) * (2.0 * GRID_HALF / (resolution - 1)) - GRID_HALF
    if len(faces):
        t = vertices[faces]
        if np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() < 0:
            faces = faces[:, ::-1]
    return vertices, np.ascontiguousarray(faces)


# -- refinement by the normal maps ----------------------------------------------------------------

#: Agreement (degrees) between the hull's and the observed normal for a pixel to anchor the
#: integrated depth to the hull there; rays more grazing than GRAZING (|cos|) carry no gradient.
ANCHOR_DEGREES = 12.0
GRAZING = 0.15
#: A node is carved when it lies this many voxels in front of a view's integrated surface.
CARVE_MARGIN_VOXELS = 2.0


def _camera_normals(view) -> np.ndarray:
    w2c = np.asarray(view.world_to_camera, dtype=np.float64)
    return view.normal_world.astype(np.float64) @ w2c[:3, :3].T


def integrated_depth(view, hull_depth: np.ndarray) -> np.ndarray:
    """Depth (H, W) of the surface a view's normal map describes, ``nan`` where unknown.

    Perspective normal integration in log depth: along a pixel step the log depth changes by
    ``-n_u / (n . (u - cx, v - cy, f))`` (and likewise for rows), solved in the least-squares
    sense over the mask's pixels, with steps across grazing normals left out (occlusion edges).
    Each connected piece is anchored where the visual hull already has the observed normal
    (there the hull touches the surface); pieces without such a pixel stay unknown.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as graph_components
    from scipy.sparse.linalg import lsqr

    k = intrinsics_matrix(view.intrinsics)
    h, w = hull_depth.shape
    mask = (view.image[..., 3] > 0.99) & np.isfinite(hull_depth)
    n = _camera_normals(view)
    v_idx, u_idx = np.mgrid[0:h, 0:w]
    ray = np.stack([u_idx - k[0, 2], v_idx - k[1, 2], np.full((h, w), k[0, 0])], -1)
    denom = (n * ray).sum(-1)
    facing = mask & (np.abs(denom) > GRAZING * np.linalg.norm(ray, axis=-1))
    safe = np.where(facing, denom, 1.0)
    grad_u, grad_v = -n[..., 0] / safe, -n[..., 1] / safe
    index = np.full((h, w), -1, dtype=np.int64)
    index[facing] = np.arange(int(facing.sum()))
    rows, cols, vals, rhs = [], [], [], []
    eq = 0
    for (a_sl, b_sl, grad) in (((slice(None), slice(0, -1)), (slice(None), slice(1, None)), grad_u),
                               ((slice(0, -1), slice(None)), (slice(1, None), slice(None)), grad_v)):
        both = facing[a_sl] & facing[b_sl]
        ia, ib = index[a_sl][both], index[b_sl][both]
        g = 0.5 * (grad[a_sl][both] + grad[b_sl][both])
        m = len(ia)
        rows += [np.arange(eq, eq + m)] * 2
        cols += [ib, ia]
        vals += [np.ones(m), -np.ones(m)]
        rhs.append(g)
        eq += m
    # Anchors: the hull's own normal (from its depth map) agrees with the observed one.
    with np.errstate(invalid="ignore"):   # inf depth off the hull: nan normals there, never anchors
        points = ray / k[0, 0] * hull_depth[..., None]
        du = np.gradient(points, axis=1)
        dv = np.gradient(points, axis=0)
        hull_n = np.cross(du, dv)
        hull_n /= np.maximum(np.linalg.norm(hull_n, axis=-1, keepdims=True), 1e-12)
    with np.errstate(invalid="ignore"):
        agree = facing & (np.abs((hull_n * n).sum(-1)) > np.cos(np.radians(ANCHOR_DEGREES)))
    ia = index[agree]
    rows.append(np.arange(eq, eq + len(ia)))
    cols.append(ia)
    vals.append(np.ones(len(ia)))
    rhs.append(np.log(hull_depth[agree]))
    eq += len(ia)
    count = int(facing.sum())
    if count == 0 or len(ia) == 0:
        return np.full((h, w), np.nan)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(eq, count)).tocsr()
    solution = lsqr(a, np.concatenate(rhs), atol=1e-8, btol=1e-8, iter_lim=4000)[0]
    # Pieces with no anchor have no depth of their own.
    link = a[: eq - len(ia)]
    adjacency = (link.T @ link).tocsr()
    _, piece = graph_components(adjacency, directed=False)
    anchored = np.zeros(piece.max() + 1, dtype=bool)
    anchored[piece[ia]] = True
    depth = np.full((h, w), np.nan)
    good = anchored[piece]
    vv, uu = np.nonzero(facing)
    depth[vv[good], uu[good]] = np.exp(solution[good])
    return depth


def view_depths(views: PosedViews, resolution: int = 128, *, field: np.ndarray | None = None) -> list[np.ndarray]:
    """Per view, the depth (H, W; camera z) of the surface its normal map describes, ``nan`` where unknown.

    The visual hull at ``resolution`` (or the ``field`` given) anchors each view's integration
    (:func:`integrated_depth`). Views without normal maps get an all-``nan`` map.
    """
    from backend.mesh.texture.projection import zbuffer

    if field is None:
        field = hull_field(views, resolution)
    vertices, faces = grid_surface(field, 0.5, 0.0)
    depths = []
    for view in views.views:
        h, w = view.image.shape[:2]
        if view.normal_world is None or len(faces) == 0:
            depths.append(np.full((h, w), np.nan))
            continue
        w2c = np.asarray(view.world_to_camera, dtype=np.float64)
        hull_depth = zbuffer(vertices @ w2c[:3, :3].T + w2c[:3, 3], faces, view.intrinsics)
        depths.append(integrated_depth(view, hull_depth))
    return depths


def refined_hull_field(views: PosedViews, resolution: int = 128) -> np.ndarray:
    """The hull field with the space in front of every view's integrated surface carved away."""
    field = hull_field(views, resolution)
    if not all(v.normal_world is not None for v in views.views):
        return field
    axis = np.linspace(-GRID_HALF, GRID_HALF, resolution)
    inside = np.argwhere(field > 0.5)
    points = axis[inside]
    step = 2.0 * GRID_HALF / (resolution - 1)
    carve = np.zeros(len(points), dtype=bool)
    for view, depth in zip(views.views, view_depths(views, field=field)):
        w2c = np.asarray(view.world_to_camera, dtype=np.float64)
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        pix = cam @ intrinsics_matrix(view.intrinsics).T
        u = np.round(pix[:, 0] / cam[:, 2]).astype(np.int64)
        v = np.round(pix[:, 1] / cam[:, 2]).astype(np.int64)
        h, w = depth.shape
        ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        known = np.full(len(points), np.nan)
        known[ok] = depth[v[ok], u[ok]]
        with np.errstate(invalid="ignore"):
            carve |= cam[:, 2] < known - CARVE_MARGIN_VOXELS * step
    refined = field.copy()
    refined[tuple(inside[carve].T)] = 0.0
    return refined
