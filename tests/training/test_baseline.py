"""training/baseline.py: the visual hull from posed masks, on views synthesized here."""

from __future__ import annotations

import numpy as np
import pytest

from backend.conventions import BLENDER_FROM_GLTF
from backend.mesh.metrics import connected_components
from backend.mesh.texture.projection import load_views
from backend.mesh.sampling import sample_surface
from tests import meshes
from tests.backend.mesh.texture.assets import synthesize_views
from training.baseline import hull_field, visual_hull


def _world(vertices):
    """synthesize_views' file -> world map: glTF to Blender axes, scaled by 0.9."""
    return vertices @ (BLENDER_FROM_GLTF * 0.9).T


def _one_way(a_points, b_vertices, b_faces):
    from backend.mesh.nearest import SurfaceIndex

    return SurfaceIndex(b_vertices, b_faces).closest(a_points).distance


def test_the_hull_of_a_sphere_hugs_it_and_is_closed(tmp_path):
    v, f = meshes.uv_sphere(24, 48, radius=0.8)
    views = load_views(synthesize_views(v, f, tmp_path / "views", n_views=8, size=128))
    hv, hf = visual_hull(views, resolution=96)
    world = _world(v)
    # Closed, one piece, facing outward.
    from backend.mesh.metrics import is_watertight

    assert is_watertight(hf) and connected_components(hf)[0] == 1
    t = hv[hf]
    assert np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() > 0
    # The hull hugs the sphere; it bulges only where no view looks along the surface (the
    # poles: the views are at +25 and -20 degrees), and it is never inside the object.
    hull_points = sample_surface(hv, hf, 20000, seed=0)[0]
    sphere_points = sample_surface(world, f, 20000, seed=0)[0]
    radius = 0.8 * 0.9
    to_sphere, to_hull = _one_way(hull_points, world, f), _one_way(sphere_points, hv, hf)
    assert np.median(to_sphere) < 0.02 * radius and np.median(to_hull) < 0.02 * radius
    assert np.percentile(to_hull, 99) < 0.08 * radius
    assert np.linalg.norm(hull_points, axis=1).min() > radius * 0.97


def test_carving_uses_every_view(tmp_path):
    v, f = meshes.box(lo=(-0.5, -0.2, -0.2), hi=(0.5, 0.2, 0.2))
    views = load_views(synthesize_views(v, f, tmp_path / "views", n_views=6, size=96))
    field = hull_field(views, resolution=32)
    one = hull_field(type(views)(views.views[:1], views.file_to_world), resolution=32)
    assert (field <= one).all() and field.sum() < one.sum()


def test_masks_that_share_nothing_are_refused(tmp_path):
    v, f = meshes.uv_sphere(8, 16, radius=0.5)
    views = load_views(synthesize_views(v, f, tmp_path / "views", n_views=2, size=64))
    for view in views.views:
        view.image[..., 3] = 0.0
    with pytest.raises(ValueError, match="share no region"):
        visual_hull(views, resolution=16)


def _cup(tmp_path):
    """A square cup (a box with a pit open at the top), meshed from its signed distance; file Y-up."""
    import mcubes

    from backend.mesh.io import mesh_to_bytes
    from backend.mesh.types import Mesh

    axis = np.linspace(-1.0, 1.0, 80)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")

    def box(cx, cy, cz, hx, hy, hz):
        q = np.stack([np.abs(x - cx) - hx, np.abs(y - cy) - hy, np.abs(z - cz) - hz])
        return np.linalg.norm(np.maximum(q, 0), axis=0) + np.minimum(q.max(0), 0)

    field = np.maximum(box(0, 0, 0, 0.8, 0.5, 0.8), -box(0, 0.35, 0, 0.6, 0.5, 0.6))
    v, f = mcubes.marching_cubes(-np.pad(field, 1, constant_values=1.0), 0.0)
    v = (v - 1.0) * (2.0 / 79) - 1.0
    f = np.asarray(f, dtype=np.int64)
    (tmp_path / "cup.obj").write_bytes(mesh_to_bytes(Mesh(v, f), "obj"))
    return tmp_path / "cup.obj"


def test_the_normal_map_refinement_only_carves_and_stays_closed(tmp_path):
    """A cup rendered by Blender (render.views): refining by the normal maps removes hull space
    (never adds any), gives a closed mesh, and without normal maps changes nothing."""
    from backend.mesh.metrics import is_watertight
    from render.views import RenderConfig, render_to_folder
    from training.baseline import refined_hull_field

    render_to_folder(_cup(tmp_path), tmp_path / "views", RenderConfig(width=128, height=128, samples=1, threads=1))
    views = load_views(tmp_path / "views")
    plain, refined = hull_field(views, 64), refined_hull_field(views, 64)
    assert (refined <= plain).all() and (refined > 0.5).sum() < (plain > 0.5).sum()
    assert is_watertight(visual_hull(views, 64)[1])
    bare = type(views)([type(v)(v.image, v.intrinsics, v.world_to_camera, None, v.name) for v in views.views])
    assert np.array_equal(hull_field(bare, 32), refined_hull_field(bare, 32))
