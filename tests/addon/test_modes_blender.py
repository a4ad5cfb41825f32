"""Artist, Texture and Artist + Texture end to end: the installed add-on in real ``bpy`` against a real backend.

Each test needs the backend to offer its pipelines; a backend that does not (one built
before the ``artist`` / ``texture`` pipelines) skips them and says so.
"""

from __future__ import annotations

import math
import time
from array import array
from importlib import import_module

import pytest

from .conftest import ADDON_MODULE
from .test_addon_blender import JOB_TIMEOUT, closed_and_oriented, link_new_object, matrices_equal, world_bounds

import bpy  # first: bmesh and mathutils exist only once bpy is imported
import bmesh  # isort: skip
from mathutils import Matrix, Vector  # isort: skip

from .test_textures_blender import undo_steps


@pytest.fixture(scope="module")
def offered(backend) -> set[str]:
    from addon.client import Client

    return set(Client(backend.url).health().pipelines)


def need(offered: set[str], *pipelines: str) -> None:
    missing = [p for p in pipelines if p not in offered]
    if missing:
        pytest.skip(f"this backend offers no {', '.join(repr(p) for p in missing)} pipeline (it has: {', '.join(sorted(offered))})")


@pytest.fixture
def settings(runtime):
    settings = bpy.context.scene.meshsmith
    saved = {name: getattr(settings, name) for name in ("mode", "artist_faces", "topology", "keep_sharp", "texture_source",
                                                        "texture_size", "padding", "normal_map")}
    yield settings
    for name, value in saved.items():
        setattr(settings, name, value)


def icosphere(name: str, subdivisions: int, *, radius: float = 1.0) -> bpy.types.Object:
    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=subdivisions, radius=radius)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    return link_new_object(name, mesh)


def paint_top_red_bottom_blue(obj: bpy.types.Object) -> None:
    """A point colour attribute: red where the local z > 0, blue below (a hard edge at the equator)."""
    attribute = obj.data.color_attributes.new("Col", "BYTE_COLOR", "POINT")
    for vertex, item in zip(obj.data.vertices, attribute.data):
        item.color_srgb = (0.9, 0.1, 0.1, 1.0) if vertex.co.z > 0 else (0.1, 0.1, 0.9, 1.0)
    obj.data.color_attributes.active_color = attribute


def select(*objects: bpy.types.Object, active: bpy.types.Object) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = active


def quad_ratio(mesh: bpy.types.Mesh) -> float:
    return sum(len(p.vertices) == 4 for p in mesh.polygons) / len(mesh.polygons)


def base_colour_samples(obj: bpy.types.Object) -> list[tuple[float, tuple[float, float, float]]]:
    """(world z of the loop's vertex, 8-bit sRGB colour of the base colour texture at the loop's UV), per loop."""
    mesh = obj.data
    material = mesh.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    image = bsdf.inputs["Base Color"].links[0].from_node.image
    width, height = image.size
    pixels = array("f", bytes(16 * width * height))
    image.pixels.foreach_get(pixels)
    layer = mesh.uv_layers.active
    out = []
    for loop in mesh.loops:
        u, v = layer.uv[loop.index].vector
        x, y = min(int(u * width), width - 1), min(int(v * height), height - 1)
        texel = pixels[4 * (y * width + x) : 4 * (y * width + x) + 3]
        out.append(((obj.matrix_world @ mesh.vertices[loop.vertex_index].co).z, tuple(texel)))
    return out


def assert_red_above_blue_below(obj: bpy.types.Object, centre_z: float, band: float) -> None:
    samples = base_colour_samples(obj)
    above = [c for z, c in samples if z > centre_z + band]
    below = [c for z, c in samples if z < centre_z - band]
    assert above and below
    red_above = sum(r > 2 * b for r, g, b in above) / len(above)
    blue_below = sum(b > 2 * r for r, g, b in below) / len(below)
    assert red_above > 0.9 and blue_below > 0.9, (red_above, blue_below)


def material_nodes(obj: bpy.types.Object) -> tuple[bpy.types.Node, bpy.types.Node | None]:
    """(base colour image node, normal map node or None) of the result's material."""
    (material,) = obj.data.materials
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    colour = bsdf.inputs["Base Color"].links[0].from_node
    normal = bsdf.inputs["Normal"].links[0].from_node if bsdf.inputs["Normal"].is_linked else None
    return colour, normal


# -- Artist ----------------------------------------------------------------------------------------


def test_artist_mode_makes_quads_at_the_face_budget(settings, runtime, offered):
    need(offered, "artist")
    source = icosphere("ArtistSphere", 4)  # 5120 triangles
    source.location, source.rotation_euler, source.scale = (2.0, -1.0, 0.5), (0.2, 0.4, 0.6), (1.2, 0.8, 1.0)
    bpy.context.view_layer.update()
    settings.mode, settings.artist_faces, settings.topology, settings.keep_sharp = "ARTIST", 600, "QUADS", False
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    params = job.client.job(job.remote_id).params
    assert (params["faces"], params["mode"], params["sharp_edges"]) == (600, "quads", False)

    result = bpy.data.objects["ArtistSphere_artist"]
    mesh = result.data
    assert [c.name for c in result.users_collection] == ["Meshsmith"]
    assert matrices_equal(result.matrix_world, source.matrix_world)
    assert 540 <= len(mesh.polygons) <= 660  # within 10% of the target
    assert quad_ratio(mesh) >= 0.98
    closed, oriented, _ = closed_and_oriented(mesh)
    assert closed and oriented
    assert all(p.use_smooth for p in mesh.polygons)
    low, high = world_bounds(result)
    source_low, source_high = world_bounds(source)
    assert (low - source_low).length < 0.1 and (high - source_high).length < 0.1


def test_artist_keeps_sharp_edges_of_a_box_and_marks_them(settings, runtime, offered):
    need(offered, "artist")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=2.0)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=6, use_grid_fill=True)
    bmesh.ops.triangulate(bm, faces=bm.faces[:])
    mesh = bpy.data.meshes.new("SharpBox")
    bm.to_mesh(mesh)
    bm.free()
    source = link_new_object("SharpBox", mesh)
    settings.mode, settings.artist_faces, settings.topology, settings.keep_sharp = "ARTIST", 300, "QUAD_DOMINANT", True
    settings.sharp_angle = math.radians(30.0)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    result = bpy.data.objects["SharpBox_artist"].data
    sharp = [e for e in result.edges if e.use_edge_sharp]
    # The box's 12 edges, each split into several result edges, are sharp; flat faces are not.
    assert len(sharp) >= 12
    for edge in sharp:
        a, b = (result.vertices[i].co for i in edge.vertices)
        on_box_edge = sum(abs(abs(c) - 1.0) < 0.05 for c in (a + b) / 2) >= 2
        assert on_box_edge, (a, b)
    assert source.name == "SharpBox"


# -- Texture -----------------------------------------------------------------------------------------


def test_texture_mode_bakes_the_other_objects_colour(settings, runtime, offered):
    need(offered, "texture")
    target = icosphere("LowSphere", 2)
    target.location = (0.0, 3.0, 1.0)
    dense = icosphere("ColourSphere", 4, radius=2.0)  # twice as big in its own space ...
    dense.location, dense.scale = (0.0, 3.0, 1.0), (0.5, 0.5, 0.5)  # ... and the same sphere in the world
    paint_top_red_bottom_blue(dense)
    bpy.context.view_layer.update()
    select(target, dense, active=target)
    settings.mode, settings.texture_source, settings.texture_size, settings.normal_map = "TEXTURE", "OBJECT", "256", True
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    params = job.client.job(job.remote_id).params
    assert (params["texture_size"], params["padding"], params["normal_map"]) == (256, 4, True)

    result = bpy.data.objects["LowSphere_textured"]
    assert matrices_equal(result.matrix_world, target.matrix_world)
    assert [layer.name for layer in result.data.uv_layers] == ["UVMap"]
    colour, normal = material_nodes(result)
    assert tuple(colour.image.size) == (256, 256) and colour.image.packed_file is not None
    assert normal is not None and normal.space == "TANGENT" and normal.uv_map == "UVMap"
    closed, _, _ = closed_and_oriented(result.data)
    assert closed  # one connected mesh again: the UV seams were welded
    assert_red_above_blue_below(result, centre_z=1.0, band=0.3)


# -- Artist + Texture ------------------------------------------------------------------------------------


def test_the_preset_remeshes_then_bakes_in_one_generate_and_one_undo_step(settings, runtime, offered, capfd):
    need(offered, "artist", "texture")
    dense = icosphere("DenseSphere", 4)
    dense.location = (-3.0, 0.0, 2.0)
    paint_top_red_bottom_blue(dense)
    bpy.context.view_layer.update()
    select(dense, active=dense)
    settings.mode, settings.artist_faces, settings.texture_size = "ARTIST_TEXTURE", 400, "256"
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="before the preset")
    steps_before = undo_steps(capfd)

    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    first_remote = job.remote_id
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + 2 * JOB_TIMEOUT
    while runtime.poll_jobs() is not None:
        seen.append((job.progress, job.stage))
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.1)
    assert job.phase.value == "imported", job.message

    # Two backend jobs, the second fed by the first; progress over both, never going back.
    assert job.remote_id != first_remote and job.step == 1
    assert job.client.job(first_remote).pipeline == "artist" and job.client.job(job.remote_id).pipeline == "texture"
    assert job.client.job(first_remote).params["faces"] == 400
    assert job.client.job(job.remote_id).params["normal_map"] is True
    progress = [p for p, _ in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(stage.startswith("artist 1/2") for _, stage in seen) and any(stage.startswith("texture 2/2") for _, stage in seen)

    result = bpy.data.objects["DenseSphere_artist_textured"]
    mesh = result.data
    assert 360 <= len(mesh.polygons) <= 440 and quad_ratio(mesh) > 0.5
    assert matrices_equal(result.matrix_world, dense.matrix_world)
    colour, normal = material_nodes(result)
    assert colour.image.packed_file is not None and normal is not None and normal.image.packed_file is not None
    assert_red_above_blue_below(result, centre_z=2.0, band=0.3)

    assert undo_steps(capfd)[len(steps_before) :] == ["Meshsmith: Generate"]
    with bpy.context.temp_override(window=window):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert "DenseSphere_artist_textured" not in bpy.data.objects and "DenseSphere" in bpy.data.objects


def test_the_preset_can_be_cancelled_in_its_second_step(settings, runtime, offered):
    need(offered, "artist", "texture")
    dense = icosphere("CancelDense", 4)
    paint_top_red_bottom_blue(dense)
    select(dense, active=dense)
    settings.mode, settings.artist_faces, settings.texture_size = "ARTIST_TEXTURE", 300, "4096"
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.step == 0 and not job.is_final:
        runtime.poll_jobs()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job.step == 1 and not job.is_final, job.message
    assert bpy.ops.meshsmith.cancel() == {"FINISHED"}
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "cancelled", job.message
    assert job.client.job(job.remote_id).state in ("cancelled", "done")  # done: it finished before the cancel arrived
    assert "CancelDense_artist_textured" not in bpy.data.objects
