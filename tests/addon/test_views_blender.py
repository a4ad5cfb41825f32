"""From Views end to end: Render Views on a scene object, then Generate from the folder or a grid
image, in real ``bpy`` against a real backend."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from .test_addon_blender import JOB_TIMEOUT, link_new_object, world_bounds
from .test_modes_blender import need, offered, select  # noqa: F401  (fixtures)

import bpy  # first: bmesh and mathutils exist only once bpy is imported
import bmesh  # isort: skip
from mathutils import Matrix, Vector  # isort: skip


@pytest.fixture
def settings(runtime):
    settings = bpy.context.scene.meshsmith
    names = ("mode", "views_input", "views_dir", "grid_image", "views_method", "views_resolution", "texture_size")
    saved = {name: getattr(settings, name) for name in names}
    yield settings
    settings = bpy.context.scene.meshsmith
    for name, value in saved.items():
        setattr(settings, name, value)


def _capsule(name: str) -> bpy.types.Object:
    """A stretched icosphere away from the origin: 3 x 1 x 1 at (4, -2, 1), turned about z."""
    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=3, radius=1.0)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    obj = link_new_object(name, mesh)
    obj.matrix_world = Matrix.Translation((4.0, -2.0, 1.0)) @ Matrix.Rotation(0.5, 4, "Z") @ Matrix.Diagonal(
        (1.5, 0.5, 0.5, 1.0))
    bpy.context.view_layer.update()
    return obj


def _welded_closed(obj: bpy.types.Object) -> bool:
    """Closed once the texture seams' split vertices are welded back together."""
    bm = bmesh.new()
    bm.from_mesh(obj.data)
    bmesh.ops.remove_doubles(bm, verts=bm.verts, dist=1e-6)
    closed = all(e.is_manifold and not e.is_boundary for e in bm.edges)
    bm.free()
    return closed


def _generate(runtime, settings, result_name: str) -> bpy.types.Object:
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    return bpy.data.objects[result_name]


@pytest.fixture(scope="module")
def rendered(addon, tmp_path_factory) -> tuple[str, tuple[Vector, Vector]]:
    """Render Views of a capsule: the folder, and the capsule's world bounds."""
    obj = _capsule("ViewsCapsule")
    select(obj, active=obj)
    folder = tmp_path_factory.mktemp("capsule-views")
    from importlib import import_module

    from .conftest import ADDON_MODULE

    capture = import_module(ADDON_MODULE + ".capture")
    steps = list(capture.render_views(bpy.context, obj, str(folder), size=128, samples=4))
    assert steps[-1] == (6, 6)
    return str(folder), world_bounds(obj)


def test_render_views_writes_a_views_folder_and_leaves_the_scene_as_it_was(rendered):
    folder, _ = rendered
    cameras = json.loads((Path(folder) / "cameras.json").read_text())
    assert cameras["layout"] == "zero123pp" and len(cameras["views"]) == 6
    for view in cameras["views"]:
        assert (Path(folder) / view["files"]["rgb"]).is_file()
        assert (Path(folder) / view["files"]["normal_world"]).is_file()
    # The temporary scene, camera, lights and stand-in are gone.
    assert [s.name for s in bpy.data.scenes] == [bpy.context.scene.name]
    assert not [o for o in bpy.data.objects if o.name.startswith(("Meshsmith", "ViewsCapsule_views"))]


@pytest.mark.parametrize("method", ["HULL", "MODEL"])
def test_from_views_lands_a_closed_textured_mesh_over_the_object(settings, runtime, offered, rendered, method):
    need(offered, "views_to_mesh")
    folder, (low, high) = rendered
    settings.mode, settings.views_input, settings.views_dir = "VIEWS", "FOLDER", folder
    settings.views_method, settings.views_resolution, settings.texture_size = method, 64, "256"
    name = Path(folder).name + "_from_views"
    if name in bpy.data.objects:
        bpy.data.objects.remove(bpy.data.objects[name])
    result = _generate(runtime, settings, name)
    assert _welded_closed(result)
    r_low, r_high = world_bounds(result)
    size = max(high - low)
    # The hull of six views bulges a little where no silhouette cuts; the box is the object's.
    tolerance = 0.12 if method == "HULL" else 0.2
    for axis in range(3):
        assert abs(r_low[axis] - low[axis]) < tolerance * size and abs(r_high[axis] - high[axis]) < tolerance * size, \
            (method, tuple(r_low), tuple(r_high), tuple(low), tuple(high))
    assert result.data.materials and result.data.uv_layers


def test_from_views_takes_a_zero123pp_grid_image(settings, runtime, offered, rendered, tmp_path):
    import numpy as np

    need(offered, "views_to_mesh")
    folder, _ = rendered
    cameras = json.loads((Path(folder) / "cameras.json").read_text())
    tiles = []
    for view in cameras["views"]:
        image = bpy.data.images.load(str(Path(folder) / view["files"]["rgb"]))
        w, h = image.size
        pixels = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        bpy.data.images.remove(image)
        tiles.append(pixels.reshape(h, w, 4)[::-1])                      # Blender's rows run bottom-up
    grid = np.concatenate([np.concatenate(tiles[r * 2:r * 2 + 2], 1) for r in range(3)], 0)
    out = bpy.data.images.new("grid", grid.shape[1], grid.shape[0], alpha=True)
    out.pixels.foreach_set(grid[::-1].reshape(-1))
    path = tmp_path / "capsule_grid.png"
    out.filepath_raw, out.file_format = str(path), "PNG"
    out.save()
    bpy.data.images.remove(out)
    settings.mode, settings.views_input, settings.grid_image = "VIEWS", "GRID", str(path)
    settings.views_method, settings.views_resolution, settings.texture_size = "HULL", 64, "256"
    result = _generate(runtime, settings, "capsule_grid_from_views")
    assert _welded_closed(result)
    low, high = world_bounds(result)
    # A grid has no placement: the result fills the canonical box around the origin (longest side ~1.9).
    assert 1.7 < max(high - low) < 2.1 and (low + high).length < 0.2


def test_from_views_without_a_folder_says_what_to_choose(settings, runtime):
    settings.mode, settings.views_input, settings.views_dir = "VIEWS", "FOLDER", ""
    from .conftest import ADDON_MODULE
    from importlib import import_module

    errors = import_module(ADDON_MODULE + ".errors")
    with pytest.raises(errors.MeshsmithError, match="Choose the folder of posed images"):
        runtime.generate(bpy.context)
