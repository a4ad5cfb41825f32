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

from addon import glb

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
                                                        "texture_size", "padding", "normal_map", "keep_uvs")}
    yield settings
    settings = bpy.context.scene.meshsmith  # an undo in the test frees the old reference
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
    """(world z of the face centre, sRGB colour of the base colour texture at the face's UV centroid), per face.

    Centroids, not corners: a corner's UV sits on its island's border, where texels blend
    with the padding around the island.
    """
    mesh = obj.data
    material = mesh.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    image = bsdf.inputs["Base Color"].links[0].from_node.image
    width, height = image.size
    pixels = array("f", bytes(16 * width * height))
    image.pixels.foreach_get(pixels)
    layer = mesh.uv_layers.active
    out = []
    for polygon in mesh.polygons:
        u = sum(layer.uv[i].vector[0] for i in polygon.loop_indices) / polygon.loop_total
        v = sum(layer.uv[i].vector[1] for i in polygon.loop_indices) / polygon.loop_total
        x, y = min(int(u * width), width - 1), min(int(v * height), height - 1)
        texel = pixels[4 * (y * width + x) : 4 * (y * width + x) + 3]
        out.append(((obj.matrix_world @ polygon.center).z, tuple(texel)))
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
    assert all(p.use_smooth for p in result.polygons)
    faces_of_edge: dict[tuple[int, int], list[int]] = {}
    for polygon in result.polygons:
        for key in polygon.edge_keys:
            faces_of_edge.setdefault(key, []).append(polygon.index)
    on_box, total = 0.0, 0.0
    for edge in result.edges:
        a, b = (result.vertices[i].co for i in edge.vertices)
        f, g = faces_of_edge[edge.key]
        angle = result.polygons[f].normal.angle(result.polygons[g].normal)
        # Marked sharp exactly where the faces meet at more than the panel's angle (radians reached Blender right).
        if abs(math.degrees(angle) - 30.0) > 1.0:
            assert edge.use_edge_sharp == (math.degrees(angle) > 30.0), (tuple(a), tuple(b), math.degrees(angle))
        if edge.use_edge_sharp:
            total += (a - b).length
            on_box += (a - b).length if sum(abs(abs(c) - 1.0) < 0.05 for c in (a + b) / 2) >= 2 else 0.0
    # The box's 12 edges (length 2 each) are kept, and they are most of what is sharp.
    assert on_box >= 0.8 * 24.0 and on_box >= 0.8 * total, (on_box, total)
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


def test_texture_mode_keeps_the_targets_quads(settings, runtime, offered):
    # Regression (field test, issue 14): a 1,963-face quad mesh came back as 3,780 triangles.
    need(offered, "texture")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.6)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=3, use_grid_fill=True)
    mesh = bpy.data.meshes.new("QuadBox")
    bm.to_mesh(mesh)
    bm.free()
    target = link_new_object("QuadBox", mesh)
    assert all(len(p.vertices) == 4 for p in mesh.polygons)
    dense = icosphere("QuadBoxColour", 4, radius=1.2)
    paint_top_red_bottom_blue(dense)
    select(target, dense, active=target)
    settings.mode, settings.texture_source, settings.texture_size, settings.normal_map = "TEXTURE", "OBJECT", "256", False
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    result = bpy.data.objects["QuadBox_textured"].data
    quads_out = sum(len(p.vertices) == 4 for p in result.polygons)
    # A UV seam along a quad's diagonal splits that quad in two; every other quad stays.
    assert quads_out >= 0.9 * len(mesh.polygons)
    assert len(result.polygons) == len(mesh.polygons) + (len(mesh.polygons) - quads_out)


def _uv_box(name: str) -> bpy.types.Object:
    """A subdivided quad box with Blender's own cube UV layout (a cross of six squares in 0..1)."""
    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")
    bmesh.ops.create_cube(bm, size=1.6, calc_uvs=True)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=2, use_grid_fill=True)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    return link_new_object(name, mesh)


def _corner_uvs(mesh: bpy.types.Mesh) -> list[tuple]:
    """Every corner as (position, uv), rounded, sorted: equal for two meshes with one layout."""
    layer = mesh.uv_layers.active
    rows = [
        (*(round(c, 4) for c in mesh.vertices[loop.vertex_index].co), *(round(c, 4) for c in layer.uv[loop.index].vector))
        for loop in mesh.loops
    ]
    return sorted(rows)


def test_texture_mode_keeps_the_targets_own_uvs(settings, runtime, offered):
    # Regression (field test, issue 14): the target's UVs were replaced by a new unwrap, which
    # broke the Artist-then-Texture route (an artist lays out UVs, then bakes).
    need(offered, "texture")
    target = _uv_box("UVBox")
    mesh = target.data
    dense = icosphere("UVBoxColour", 4, radius=1.2)
    paint_top_red_bottom_blue(dense)
    select(target, dense, active=target)
    settings.mode, settings.texture_source, settings.texture_size, settings.normal_map = "TEXTURE", "OBJECT", "256", True
    assert settings.keep_uvs  # the default
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    result = bpy.data.objects["UVBox_textured"].data
    # The same polygons, welded back into one closed piece along the layout's seams ...
    assert len(result.polygons) == len(mesh.polygons) and all(len(p.vertices) == 4 for p in result.polygons)
    assert len(result.vertices) == len(mesh.vertices)
    # ... and every corner keeps its UV.
    assert _corner_uvs(result) == _corner_uvs(mesh)
    # The colour landed where the layout says: texels of the top face (+z) are red.
    image = next(n.image for n in result.materials[0].node_tree.nodes if n.type == "TEX_IMAGE" and n.image.name.endswith("base_color"))
    width, height = image.size
    pixels = list(image.pixels)
    layer = mesh.uv_layers.active
    top = [layer.uv[loop.index].vector for p in mesh.polygons if p.normal.z > 0.9 for loop in (mesh.loops[i] for i in p.loop_indices)]
    u = sum(v.x for v in top) / len(top)
    v = sum(v.y for v in top) / len(top)
    k = 4 * (int(v * height) * width + int(u * width))
    red, _, blue = pixels[k : k + 3]
    assert red > 0.5 > blue, (red, blue)


def test_texture_mode_says_what_to_do_with_uvs_it_cannot_keep(settings, runtime, offered):
    need(offered, "texture")
    target = _uv_box("TiledBox")
    for data in target.data.uv_layers.active.uv:
        data.vector = (data.vector.x + 1.0, data.vector.y)   # the second UDIM tile
    dense = icosphere("TiledBoxColour", 3, radius=1.2)
    paint_top_red_bottom_blue(dense)
    select(target, dense, active=target)
    settings.mode, settings.texture_source, settings.texture_size = "TEXTURE", "OBJECT", "256"
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "failed" and "Pack Islands" in job.message and "Keep UVs off" in job.message, job.message
    # Off, the same object unwraps anew and bakes.
    settings.keep_uvs = False
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message


def write_ply_with_colours(obj: bpy.types.Object, path) -> None:
    """The object's mesh as an ASCII PLY (Z-up, like Blender), red vertices above z = 0, blue below."""
    vertices, polygons = obj.data.vertices, obj.data.polygons
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}"]
    lines += [f"property float {a}" for a in "xyz"] + [f"property uchar {c}" for c in ("red", "green", "blue")]
    lines += [f"element face {len(polygons)}", "property list uchar int vertex_indices", "end_header"]
    for v in vertices:
        colour = "230 26 26" if v.co.z > 0 else "26 26 230"
        lines.append(f"{v.co.x:.6f} {v.co.y:.6f} {v.co.z:.6f} {colour}")
    lines += [f"{len(p.vertices)} " + " ".join(map(str, p.vertices)) for p in polygons]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("asset_format", ["glb", "ply"])
def test_texture_mode_projects_a_render_views_folder(settings, runtime, offered, tmp_path, asset_format):
    """Posed images made by render/ from an asset file, projected back onto the asset's surface.

    GLB is a Y-up file and PLY a Z-up one: the add-on's upload is glTF axes either way.
    """
    import subprocess

    from .conftest import REPO, backend_python

    need(offered, "texture")
    # The asset: a sphere, red on top and blue below.
    asset = icosphere(f"PaintedAsset_{asset_format}", 3)
    asset_path = tmp_path / f"asset.{asset_format}"
    if asset_format == "ply":
        write_ply_with_colours(asset, asset_path)
    else:  # a texture through UVs with v = 0.5 + z / 2
        layer = asset.data.uv_layers.new(name="UVMap")
        for loop in asset.data.loops:
            layer.uv[loop.index].vector = (0.5, 0.5 + 0.5 * asset.data.vertices[loop.vertex_index].co.z)
        # Tall, so that linear filtering and repeat wrapping blend the two colours only within
        # half a texel (1/128 of v) of the equator and the poles.
        image = bpy.data.images.new("RedBlue", 2, 64)
        image.pixels.foreach_set([0.1, 0.1, 0.9, 1.0] * 64 + [0.9, 0.1, 0.1, 1.0] * 64)  # bottom half blue, top red
        material = bpy.data.materials.new("RedBlue")
        if material.node_tree is None:
            material.use_nodes = True
        texture = material.node_tree.nodes.new("ShaderNodeTexImage")
        texture.image = image
        bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        material.node_tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
        asset.data.materials.append(material)
        scene_io = import_module(ADDON_MODULE + ".scene_io")
        asset_path.write_bytes(scene_io.export_textured_glb(asset, bpy.context.evaluated_depsgraph_get()))
    views = tmp_path / "views"
    done = subprocess.run(
        [backend_python(), "-m", "render.views", "--input", str(asset_path), "--out", str(views),
         "--layout", "sphere:8", "--resolution", "96", "--samples", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # The target: the asset's shape at a lower resolution, placed anywhere in the scene.
    target = icosphere(f"ViewsTarget_{asset_format}", 2)
    target.location = (5.0, 5.0, 3.0)
    bpy.context.view_layer.update()
    select(target, active=target)
    settings.mode, settings.texture_source, settings.texture_size, settings.normal_map = "TEXTURE", "VIEWS", "256", False
    settings.views_dir = str(views)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    result = bpy.data.objects[f"ViewsTarget_{asset_format}_textured"]
    colour, normal = material_nodes(result)
    assert normal is None and tuple(colour.image.size) == (256, 256)
    assert_red_above_blue_below(result, centre_z=3.0, band=0.3)


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
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + 2 * JOB_TIMEOUT
    while True:
        more = runtime.poll_jobs()
        seen.append((job.progress, job.stage))
        if more is None:
            break
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.1)
    assert job.phase.value == "imported", job.message

    # Two backend jobs, the second fed by the first; progress over both, never going back.
    first_remote = job.remote_ids[0]
    assert job.remote_ids == [first_remote, job.remote_id] and job.remote_id != first_remote and job.step == 1
    assert job.client.job(first_remote).pipeline == "artist" and job.client.job(job.remote_id).pipeline == "texture"
    assert job.client.job(first_remote).params["faces"] == 400
    assert job.client.job(job.remote_id).params["normal_map"] is True
    progress = [p for p, _ in seen]
    assert progress == sorted(progress), seen
    assert progress[-1] == 1.0 and seen[-1][1] == "imported"
    assert any(stage.startswith("artist 1/2") for _, stage in seen) and any(stage.startswith("texture 2/2") for _, stage in seen)

    result = bpy.data.objects["DenseSphere_artist_textured"]
    mesh = result.data
    # The texture step kept the artist step's surface: the same triangles (quads count as two).
    artist = glb.read_glb(job.client.result(first_remote))
    assert 360 <= artist.polygon_count <= 440 and list(artist.face_sizes).count(4) > artist.polygon_count / 2
    assert sum(len(p.vertices) - 2 for p in mesh.polygons) == artist.triangle_count
    assert matrices_equal(result.matrix_world, dense.matrix_world)
    colour, normal = material_nodes(result)
    assert colour.image.packed_file is not None and normal is not None
    assert normal.inputs["Color"].links[0].from_node.image.packed_file is not None
    assert_red_above_blue_below(result, centre_z=2.0, band=0.3)

    assert undo_steps(capfd)[len(steps_before) :] == ["Meshsmith: Generate"]
    with bpy.context.temp_override(window=window):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert "DenseSphere_artist_textured" not in bpy.data.objects and "DenseSphere" in bpy.data.objects


def test_the_presets_result_keeps_the_artist_steps_quads(settings, runtime, offered):
    need(offered, "artist", "texture")
    dense = icosphere("QuadDense", 4)
    paint_top_red_bottom_blue(dense)
    select(dense, active=dense)
    settings.mode, settings.artist_faces, settings.texture_size = "ARTIST_TEXTURE", 400, "256"
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=2 * JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    artist = glb.read_glb(job.client.result(job.remote_ids[0]))
    mesh = bpy.data.objects["QuadDense_artist_textured"].data
    # The texture step's UV atlas may cut a few quads along their diagonal (a seam there):
    # each such quad arrives as its two triangles; every other quad stays a quad.
    quads_in = list(artist.face_sizes).count(4)
    quads_out = sum(len(p.vertices) == 4 for p in mesh.polygons)
    assert quads_out >= 0.95 * quads_in
    assert len(mesh.polygons) == artist.polygon_count + (quads_in - quads_out)


def test_the_preset_can_be_cancelled_in_its_second_step(settings, runtime, offered):
    need(offered, "artist", "texture")
    dense = icosphere("CancelDense", 4)
    paint_top_red_bottom_blue(dense)
    select(dense, active=dense)
    settings.mode, settings.artist_faces, settings.texture_size = "ARTIST_TEXTURE", 300, "4096"
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.step < 1 and not job.is_final:
        runtime.poll_jobs()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job.step == 1 and not job.is_final, job.message
    assert bpy.ops.meshsmith.cancel() == {"FINISHED"}
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "cancelled", job.message
    assert job.client.job(job.remote_id).state in ("cancelled", "done")  # done: it finished before the cancel arrived
    assert "CancelDense_artist_textured" not in bpy.data.objects
