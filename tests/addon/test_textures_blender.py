"""Quads, UVs, materials and colour sources in the real ``bpy`` module: result import, textured export,
selection messages and the undo step (no backend pipeline beyond ``watertight`` needed)."""

from __future__ import annotations

import io
import math
from array import array
from importlib import import_module

import pytest

from .conftest import ADDON_MODULE
from .test_addon_blender import closed_and_oriented, link_new_object, matrices_equal, signed_volume

import bpy  # first: bmesh and mathutils exist only once bpy is imported
import bmesh  # isort: skip
from mathutils import Matrix, Vector  # isort: skip

from addon import glb, png

from .test_glb import CUBE_POSITIONS, QUAD_CUBE, backend_mesh

# Four colours as 8-bit sRGB, on purpose not 0/255 so a gamma mistake shows.
BLOCK_COLOURS = {(0, 0): (200, 30, 60), (1, 0): (20, 180, 90), (0, 1): (40, 70, 220), (1, 1): (250, 240, 10)}


def scene_io():
    return import_module(ADDON_MODULE + ".scene_io")


def srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def block_pixels(size: int = 8, *, linear: bool = False) -> list[float]:
    """Blender-layout RGBA of a size x size image split in 2 x 2 blocks of BLOCK_COLOURS."""
    out = []
    for y in range(size):
        for x in range(size):
            rgb = [c / 255 for c in BLOCK_COLOURS[(2 * x // size, 2 * y // size)]]
            out += [srgb_to_linear(c) if linear else c for c in rgb] + [1.0]
    return out


def image_bytes(image: bpy.types.Image) -> list[tuple[int, ...]]:
    """Pixels (bottom row first) as 8-bit RGBA tuples, as Blender decoded them."""
    width, height = image.size
    values = array("f", bytes(16 * width * height))
    image.pixels.foreach_get(values)
    return [tuple(round(v * 255) for v in values[i : i + 4]) for i in range(0, len(values), 4)]


def decoded(data: bytes, name: str = "decoded") -> bpy.types.Image:
    """PNG bytes decoded by Blender itself."""
    image = bpy.data.images.new(name, 8, 8)
    image.pack(data=data, data_len=len(data))
    image.source = "FILE"
    return image


def grid_object(name: str) -> bpy.types.Object:
    """A 2 x 2 grid of quads in the XY plane (cells (i, j) from (0, 0) to (2, 2)), facing +Z."""
    vertices = [(x, y, 0.0) for y in range(3) for x in range(3)]
    faces = [(3 * j + i, 3 * j + i + 1, 3 * (j + 1) + i + 1, 3 * (j + 1) + i) for j in range(2) for i in range(2)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    mesh.update()
    return link_new_object(name, mesh)


def cell_of(polygon_or_point) -> tuple[int, int]:
    x, y = polygon_or_point[0], polygon_or_point[1]
    return int(math.floor(x)), int(math.floor(y))


def uv_per_cell(obj: bpy.types.Object, name: str = "UVMap") -> bpy.types.MeshUVLoopLayer:
    """UVs that put each grid cell inside its own colour block, 0.1 around the block's centre (a seam everywhere)."""
    mesh = obj.data
    layer = mesh.uv_layers.new(name=name)
    for polygon in mesh.polygons:
        i, j = cell_of(polygon.center)
        for loop in polygon.loop_indices:
            co = mesh.vertices[mesh.loops[loop].vertex_index].co
            di, dj = co.x - i, co.y - j  # 0 or 1
            layer.uv[loop].vector = (0.25 + 0.5 * i + 0.2 * (di - 0.5), 0.25 + 0.5 * j + 0.2 * (dj - 0.5))
    return layer


def image_material(name: str, image: bpy.types.Image, uv_map: str | None = None) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if material.node_tree is None:
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    reroute = tree.nodes.new("NodeReroute")  # the add-on looks through reroutes
    tree.links.new(texture.outputs["Color"], reroute.inputs[0])
    tree.links.new(reroute.outputs[0], bsdf.inputs["Base Color"])
    if uv_map:
        uv_node = tree.nodes.new("ShaderNodeUVMap")
        uv_node.uv_map = uv_map
        tree.links.new(uv_node.outputs["UV"], texture.inputs["Vector"])
    return material


def textured_grid(name: str, image: bpy.types.Image) -> bpy.types.Object:
    obj = grid_object(name)
    uv_per_cell(obj)
    obj.data.materials.append(image_material(name, image))
    return obj


def assert_triangles_show_their_cells_colour(data: bytes) -> glb.TriangleMesh:
    """Every exported triangle samples, at its UV centroid, the colour of the grid cell it lies in."""
    mesh = glb.read_glb(data)
    assert mesh.uvs is not None and mesh.material is not None and mesh.material.base_color is not None
    image = decoded(mesh.material.base_color.data, "exported")
    width, height = image.size
    pixels = image_bytes(image)
    assert mesh.triangle_count == 8
    for t in range(mesh.triangle_count):
        corners_ = mesh.indices[3 * t : 3 * t + 3]
        centroid = [sum(mesh.positions[3 * v + a] for v in corners_) / 3 for a in range(3)]
        u = sum(mesh.uvs[2 * v] for v in corners_) / 3
        v = sum(mesh.uvs[2 * v + 1] for v in corners_) / 3
        texel = pixels[int(v * height) * width + int(u * width)]
        assert texel[:3] == BLOCK_COLOURS[cell_of(centroid)], (t, centroid, (u, v))
    bpy.data.images.remove(image)
    return mesh


# -- import of results ---------------------------------------------------------------------------


def test_quads_from_the_backend_arrive_as_quads(addon):
    polygons = [(0, 1, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    data = glb.read_glb(backend_mesh(polygons))
    obj = scene_io().import_result(bpy.context.scene, "Quads_artist", data, Matrix.Identity(4), smooth=True)
    mesh = obj.data
    assert [tuple(p.vertices) for p in mesh.polygons] == polygons
    assert sum(len(p.vertices) == 4 for p in mesh.polygons) == 5
    assert closed_and_oriented(mesh) == (True, True, 7)
    assert signed_volume(mesh) == pytest.approx(8.0)
    assert all(p.use_smooth for p in mesh.polygons) and not mesh.uv_layers and not mesh.materials
    assert [c.name for c in obj.users_collection] == ["Meshsmith"]


def test_sharp_angle_marks_the_cube_edges_sharp(addon):
    data = glb.read_glb(backend_mesh(QUAD_CUBE))
    obj = scene_io().import_result(bpy.context.scene, "Sharp_artist", data, Matrix.Identity(4), sharp_angle=math.radians(30))
    mesh = obj.data
    assert all(p.use_smooth for p in mesh.polygons)
    assert len(mesh.edges) == 12 and all(e.use_edge_sharp for e in mesh.edges)  # 90 degree edges > 30
    flat = scene_io().import_result(bpy.context.scene, "Flat_watertight", data, Matrix.Identity(4))
    assert not any(p.use_smooth for p in flat.data.polygons)


def split_cube_result(material=None):
    """A cube of 6 quads with 24 vertices (each face its own 4, as a UV-split result is), with UVs
    per face: face f corner k at (0.1 f + 0.02 k, 0.9 - 0.1 f - 0.03 k)."""
    positions, polygons, uvs = [], [], []
    for f, quad in enumerate(QUAD_CUBE):
        base = len(positions) // 3
        for k, v in enumerate(quad):
            positions += CUBE_POSITIONS[3 * v : 3 * v + 3]
            uvs.append((0.1 * f + 0.02 * k, 0.9 - 0.1 * f - 0.03 * k))
        polygons.append(tuple(range(base, base + 4)))
    return backend_mesh(polygons, uv=uvs, material=material, positions=positions), uvs


def test_uvs_material_and_packed_images_of_a_textured_result(addon, tmp_path):
    from backend.mesh.types import Material

    base = png.encode_rgba(block_pixels(), 8, 8)
    normal = png.encode_rgba([0.5, 0.5, 1.0, 1.0] * 16, 4, 4)
    data, uvs = split_cube_result(Material(base_color=base, normal=normal, roughness=0.35))
    result = glb.read_glb(data)
    assert result.vertex_count == 24
    obj = scene_io().import_result(bpy.context.scene, "Tex_textured", result, Matrix.Translation((3, 0, 0)))
    mesh = obj.data

    # Welded into one closed cube of quads; the seams live in the UV layer.
    assert (len(mesh.vertices), len(mesh.polygons)) == (8, 6)
    assert closed_and_oriented(mesh) == (True, True, 6)
    assert [layer.name for layer in mesh.uv_layers] == ["UVMap"]
    layer = mesh.uv_layers["UVMap"]
    for f, polygon in enumerate(mesh.polygons):
        got = [tuple(round(c, 5) for c in layer.uv[loop].vector) for loop in polygon.loop_indices]
        assert got == [(round(u, 5), round(v, 5)) for u, v in uvs[4 * f : 4 * f + 4]]  # v as Blender has it
    assert all(p.use_smooth for p in mesh.polygons)  # the normal map was baked for smooth shading

    (material,) = mesh.materials
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    output = tree.get_output_node("ALL")
    assert output.inputs["Surface"].links[0].from_node == bsdf
    colour_node = bsdf.inputs["Base Color"].links[0].from_node
    assert colour_node.type == "TEX_IMAGE" and bsdf.inputs["Base Color"].links[0].from_socket.name == "Color"
    normal_map = bsdf.inputs["Normal"].links[0].from_node
    assert normal_map.type == "NORMAL_MAP" and normal_map.space == "TANGENT" and normal_map.uv_map == "UVMap"
    if hasattr(normal_map, "convention"):  # Blender 5.x can also read DirectX maps
        assert normal_map.convention == "OPENGL"
    normal_node = normal_map.inputs["Color"].links[0].from_node
    assert normal_node.type == "TEX_IMAGE"
    assert bsdf.inputs["Roughness"].default_value == pytest.approx(0.35)
    assert bsdf.inputs["Metallic"].default_value == 0.0

    colour, normal_image = colour_node.image, normal_node.image
    assert colour.colorspace_settings.name == "sRGB" and normal_image.colorspace_settings.name == "Non-Color"
    for image, source in ((colour, base), (normal_image, normal)):
        assert image.packed_file is not None and bytes(image.packed_file.data) == source
        assert image.source == "FILE" and not image.filepath
    assert tuple(colour.size) == (8, 8) and tuple(normal_image.size) == (4, 4)
    expected = [tuple(round(v * 255) for v in block_pixels()[i : i + 4]) for i in range(0, 256, 4)]
    assert image_bytes(colour) == expected
    assert set(image_bytes(normal_image)) == {(128, 128, 255, 255)}

    # Packed means it travels in the .blend: save, and read the image back from that file.
    path = tmp_path / "textured.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    with bpy.data.libraries.load(str(path)) as (source_data, target_data):
        assert colour.name in source_data.images
        target_data.images = [colour.name]
    (loaded,) = target_data.images
    assert loaded.packed_file is not None and image_bytes(loaded) == expected


def test_normals_of_a_result_become_its_custom_normals(addon):
    """A normal map is only right on the normals it was baked against: Blender must shade with those."""
    data, uvs = split_cube_result()
    result = glb.read_glb(data)
    # Normals that Blender would never compute for a cube: tilted up, (x, y, z + 3) normalized.
    def tilted(co) -> Vector:
        return (Vector(co) + Vector((0.0, 0.0, 3.0))).normalized()

    normals = array("f")
    for v in range(result.vertex_count):
        normals.extend(tilted(result.positions[3 * v : 3 * v + 3]))
    written = glb.write_glb(result.positions, result.indices, normals, uvs=result.uvs)
    obj = scene_io().import_result(bpy.context.scene, "Normals_textured", glb.read_glb(written), Matrix.Identity(4))
    mesh = obj.data
    assert len(mesh.vertices) == 8 and mesh.has_custom_normals
    assert all(p.use_smooth for p in mesh.polygons)
    corner_normals = [tuple(n.vector) for n in mesh.corner_normals] if hasattr(mesh, "corner_normals") else [
        tuple(loop.normal) for loop in mesh.loops
    ]
    for loop, normal in zip(mesh.loops, corner_normals):
        expected = tilted(mesh.vertices[loop.vertex_index].co)
        assert Vector(normal).dot(expected) > 0.9999, (tuple(expected), normal)


def test_a_result_with_textures_but_no_uvs_is_refused(addon):
    result = glb.read_glb(backend_mesh(QUAD_CUBE))
    result.material = glb.Material(base_color=glb.Texture(png.encode_rgba([1.0] * 4, 1, 1), "image/png"))
    meshes_before = len(bpy.data.meshes)
    with pytest.raises(Exception, match="textures but no UVs"):
        scene_io().import_result(bpy.context.scene, "NoUV_textured", result, Matrix.Identity(4))
    assert len(bpy.data.meshes) == meshes_before  # nothing half-made is left behind


# -- export of colour sources ----------------------------------------------------------------------


def generated_image(name: str, *, float_buffer: bool = False) -> bpy.types.Image:
    image = bpy.data.images.new(name, 8, 8, float_buffer=float_buffer)
    image.pixels.foreach_set(block_pixels(linear=float_buffer))
    return image


def test_export_of_a_painted_image_encodes_its_pixels(addon):
    obj = textured_grid("PaintedGrid", generated_image("Painted"))
    data = scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get())
    mesh = assert_triangles_show_their_cells_colour(data)
    # Every cell has its own UVs, so no vertex is shared between cells: 4 cells x 4 corners.
    assert mesh.vertex_count == 16 and mesh.colors is None


def test_export_of_a_float_image_converts_linear_to_srgb(addon):
    obj = textured_grid("FloatGrid", generated_image("LinearPaint", float_buffer=True))
    assert_triangles_show_their_cells_colour(scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get()))


def test_export_sends_a_png_file_or_packed_png_unchanged(addon, tmp_path):
    source = png.encode_rgba(block_pixels(), 8, 8)
    path = tmp_path / "blocks.png"
    path.write_bytes(source)
    on_disk = textured_grid("FileGrid", bpy.data.images.load(str(path)))
    packed = textured_grid("PackedGrid", decoded(source, "PackedBlocks"))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for obj in (on_disk, packed):
        data = scene_io().export_textured_glb(obj, depsgraph)
        assert glb.read_glb(data).material.base_color.data == source
        assert_triangles_show_their_cells_colour(data)


def test_export_reencodes_a_jpeg_as_the_png_of_what_blender_decoded(addon, tmp_path):
    painted = generated_image("ToJpeg")
    path = tmp_path / "blocks.jpg"
    painted.file_format, painted.filepath_raw = "JPEG", str(path)
    painted.save()
    jpeg = bpy.data.images.load(str(path))
    assert path.read_bytes()[:3] == b"\xff\xd8\xff" and jpeg.source == "FILE"
    obj = textured_grid("JpegGrid", jpeg)
    mesh = glb.read_glb(scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get()))
    assert mesh.material.base_color.mime_type == "image/png"
    assert image_bytes(decoded(mesh.material.base_color.data, "FromJpeg")) == image_bytes(jpeg)


def test_export_follows_the_uv_map_node_of_the_image(addon):
    obj = grid_object("TwoUVGrid")
    decoy = obj.data.uv_layers.new(name="Decoy")  # first, so it is the active (render) map
    uv_per_cell(obj, name="Painted")
    for item in decoy.uv:
        item.vector = (0.9, 0.9)  # all in the yellow block: wrong for three cells
    obj.data.materials.append(image_material("TwoUV", generated_image("TwoUVPaint"), uv_map="Painted"))
    assert [layer.name for layer in obj.data.uv_layers if layer.active_render] == ["Decoy"]
    assert_triangles_show_their_cells_colour(scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get()))


def test_blenders_gltf_importer_sees_our_uvs_and_texture(addon, tmp_path):
    """An independent reader: Blender's own glTF importer, on both Blender versions."""
    import addon_utils

    addon_utils.enable("io_scene_gltf2", default_set=True)
    obj = textured_grid("GltfGrid", generated_image("GltfPaint"))
    path = tmp_path / "grid.glb"
    path.write_bytes(scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get()))
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=str(path))
    (imported,) = set(bpy.data.objects) - before
    mesh = imported.data
    layer = mesh.uv_layers.active
    expected_uv = {}
    source_layer = obj.data.uv_layers["UVMap"]
    for loop in obj.data.loops:
        co = tuple(round(c, 4) for c in obj.data.vertices[loop.vertex_index].co)
        expected_uv.setdefault(co, set()).add(tuple(round(c, 4) for c in source_layer.uv[loop.index].vector))
    for loop in mesh.loops:
        co = tuple(round(c, 4) for c in imported.matrix_world @ mesh.vertices[loop.vertex_index].co)
        assert tuple(round(c, 4) for c in layer.uv[loop.index].vector) in expected_uv[co]
    tree = mesh.materials[0].node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    image = bsdf.inputs["Base Color"].links[0].from_node.image
    assert image_bytes(image) == [tuple(round(v * 255) for v in block_pixels()[i : i + 4]) for i in range(0, 256, 4)]


def test_trimesh_samples_the_colours_we_exported(addon):
    trimesh = pytest.importorskip("trimesh")
    obj = textured_grid("TrimeshGrid", generated_image("TrimeshPaint"))
    data = scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get())
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    colours = loaded.visual.to_color().vertex_colors
    centroid_cells = []
    for face in loaded.faces:
        centre = loaded.vertices[face].mean(axis=0)
        cell = cell_of((centre[0], -centre[2]))  # glTF (X, Y, Z) is Blender (X, -Z, Y)
        centroid_cells.append(cell)
        assert all(tuple(colours[v][:3]) == BLOCK_COLOURS[cell] for v in face), (cell, colours[face].tolist())
    assert len(set(centroid_cells)) == 4


def test_export_of_colour_attributes_writes_linear_color_0(addon):
    depsgraph = bpy.context.evaluated_depsgraph_get()
    points = grid_object("PointColours")
    attribute = points.data.color_attributes.new("Col", "BYTE_COLOR", "POINT")
    for i, item in enumerate(attribute.data):
        item.color_srgb = (i / 8, 0.5, 1 - i / 8, 1.0)
    points.data.color_attributes.active_color = attribute
    mesh = glb.read_glb(scene_io().export_textured_glb(points, depsgraph))
    assert mesh.vertex_count == 9 and mesh.uvs is None and mesh.material is None
    for v in range(9):
        x, y = mesh.positions[3 * v], mesh.positions[3 * v + 1]
        source = attribute.data[3 * round(y) + round(x)]
        assert list(mesh.colors[4 * v : 4 * v + 4]) == pytest.approx(list(source.color), abs=1e-6)
        assert mesh.colors[4 * v + 1] == pytest.approx(srgb_to_linear(128 / 255), abs=2e-3)  # linear, not sRGB

    corners_ = grid_object("CornerColours")
    attribute = corners_.data.color_attributes.new("Paint", "FLOAT_COLOR", "CORNER")
    for polygon in corners_.data.polygons:
        i, j = cell_of(polygon.center)
        for loop in polygon.loop_indices:
            attribute.data[loop].color = (i, j, 0.25, 1.0)
    corners_.data.color_attributes.active_color = attribute
    mesh = glb.read_glb(scene_io().export_textured_glb(corners_, depsgraph))
    assert mesh.vertex_count == 16  # each cell's colour splits the shared grid vertices
    for t in range(mesh.triangle_count):
        ids = mesh.indices[3 * t : 3 * t + 3]
        centre = [sum(mesh.positions[3 * v + a] for v in ids) / 3 for a in range(2)]
        i, j = cell_of(centre)
        for v in ids:
            assert list(mesh.colors[4 * v : 4 * v + 4]) == pytest.approx([i, j, 0.25, 1.0])


def test_export_moves_the_source_into_the_targets_space(addon):
    obj = textured_grid("MovedGrid", generated_image("MovedPaint"))
    obj.location = (10.0, 0.0, 0.0)
    target_matrix = Matrix.Translation((4.0, 0.0, 0.0)) @ Matrix.Rotation(math.pi / 2, 4, "Z")
    bpy.context.view_layer.update()
    transform = target_matrix.inverted() @ obj.matrix_world
    mesh = glb.read_glb(scene_io().export_textured_glb(obj, bpy.context.evaluated_depsgraph_get(), transform=transform))
    for v in range(mesh.vertex_count):
        local = Vector(mesh.positions[3 * v : 3 * v + 3])
        world = target_matrix @ local
        assert 10.0 - 1e-4 <= world.x <= 12.0 + 1e-4 and -1e-4 <= world.y <= 2.0 + 1e-4
    assert len(obj.data.vertices) == 9 and obj.data.vertices[0].co.x == 0.0  # the object itself is untouched


def test_sources_without_one_colour_get_a_sentence(addon):
    MeshsmithError = import_module(ADDON_MODULE + ".errors").MeshsmithError
    plain = grid_object("PlainGrid")
    with pytest.raises(MeshsmithError, match="'PlainGrid' has no colour to bake from"):
        scene_io().export_textured_glb(plain, bpy.context.evaluated_depsgraph_get())
    two = textured_grid("TwoImageGrid", generated_image("First"))
    two.data.materials.append(image_material("Second", generated_image("Second")))
    two.data.polygons[0].material_index = 1
    with pytest.raises(MeshsmithError, match="uses 2 base colour images \\(First, Second\\)"):
        scene_io().colour_source(two)
    two.data.polygons[0].material_index = 0  # the second material is now unused: one image again
    assert scene_io().colour_source(two).image.name == "First"
    no_uv = grid_object("NoUVGrid")
    no_uv.data.materials.append(image_material("NoUV", generated_image("NoUVPaint")))
    with pytest.raises(MeshsmithError, match="has no UV map"):
        scene_io().export_textured_glb(no_uv, bpy.context.evaluated_depsgraph_get())


# -- selection and input messages (checked before anything is sent) -----------------------------------


def select(*objects: bpy.types.Object, active: bpy.types.Object) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = active


@pytest.fixture
def settings(runtime):
    settings = bpy.context.scene.meshsmith
    yield settings
    settings = bpy.context.scene.meshsmith  # an undo in the test frees the old reference
    settings.mode, settings.texture_source, settings.views_dir = "WATERTIGHT", "OBJECT", ""


def reported(settings) -> str:
    jobs_before = len(import_module(ADDON_MODULE + ".runtime").jobs())
    job_before = settings.job_id
    with pytest.raises(RuntimeError) as error:
        bpy.ops.meshsmith.generate()
    assert len(import_module(ADDON_MODULE + ".runtime").jobs()) == jobs_before and settings.job_id == job_before
    message = str(error.value)
    assert message.startswith("Error: ") and "Traceback" not in message
    return message


def test_texture_from_an_object_needs_exactly_one_other_selected_mesh(settings):
    settings.mode = "TEXTURE"
    target = grid_object("LowPoly")
    select(target, active=target)
    assert "Texture mode bakes from a second object" in reported(settings)
    assert "'LowPoly'" in reported(settings)
    first, second = textured_grid("SourceA", generated_image("A")), textured_grid("SourceB", generated_image("B"))
    select(target, first, second, active=target)
    message = reported(settings)
    assert "2 other meshes are selected ('SourceA', 'SourceB')" in message
    plain = grid_object("PlainSource")
    select(target, plain, active=target)
    assert "'PlainSource' has no colour to bake from" in reported(settings)


def test_a_flattened_target_cannot_receive_a_bake(settings, backend):
    settings.mode = "TEXTURE"
    target = grid_object("FlatTarget")
    target.scale = (1.0, 1.0, 0.0)
    source = textured_grid("FlatSource", generated_image("FlatPaint"))
    bpy.context.view_layer.update()
    select(target, source, active=target)
    assert "'FlatTarget' is scaled to zero along an axis" in reported(settings)


def test_texture_from_images_needs_a_views_folder(settings, tmp_path):
    settings.mode, settings.texture_source = "TEXTURE", "VIEWS"
    target = grid_object("ViewsTarget")
    select(target, active=target)
    assert "Choose the folder of posed images" in reported(settings)
    settings.views_dir = str(tmp_path)
    assert "has no cameras.json" in reported(settings)


def test_the_preset_needs_a_coloured_object(settings):
    settings.mode = "ARTIST_TEXTURE"
    dense = grid_object("DenseNoColour")
    select(dense, active=dense)
    message = reported(settings)
    assert "'DenseNoColour' has no colour to bake from" in message and "Artist mode" in message


# -- one undo step --------------------------------------------------------------------------------


def undo_steps(capfd) -> list[str]:
    """The names on Blender's undo stack, oldest first (``print_undo_steps`` writes them from C)."""
    capfd.readouterr()
    bpy.context.window_manager.print_undo_steps()
    out = capfd.readouterr().out
    return [line.split("name='", 1)[1].rsplit("'", 1)[0] for line in out.splitlines() if "name='" in line]


def test_a_textured_result_is_one_undo_step(runtime, capfd):
    from backend.mesh.types import Material

    jobs = import_module(ADDON_MODULE + ".jobs")
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message="before the result")
    before = undo_steps(capfd)
    data, _ = split_cube_result(Material(base_color=png.encode_rgba(block_pixels(), 8, 8),
                                         normal=png.encode_rgba([0.5, 0.5, 1.0, 1.0] * 4, 2, 2)))
    job = jobs.TrackedJob(id="local", client=None, pipeline="texture", scene_name=bpy.context.scene.name,
                          result_name="Undo_textured", extra={"matrix_world": [list(r) for r in Matrix.Identity(4)], "smooth": True})
    assert runtime._import_result(job, data) == "Undo_textured"
    after = undo_steps(capfd)
    assert after[: len(before)] == before and after[len(before) :] == ["Meshsmith: Generate"]
    images = {"Undo_textured_base_color", "Undo_textured_normal"}

    with bpy.context.temp_override(window=window):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert "Undo_textured" not in bpy.data.objects and not images & set(bpy.data.images.keys())
    with bpy.context.temp_override(window=window):
        assert bpy.ops.ed.redo() == {"FINISHED"}
    obj = bpy.data.objects["Undo_textured"]
    material = obj.data.materials[0]
    assert images <= set(bpy.data.images.keys())
    assert all(bpy.data.images[name].packed_file is not None for name in images)
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Normal"].links[0].from_node.type == "NORMAL_MAP"
    assert matrices_equal(obj.matrix_world, Matrix.Identity(4))
