"""addon/glb.py: the GLB writer/reader and the one Blender <-> glTF axis conversion (bpy-free)."""

from __future__ import annotations

import io
import json
import math
import struct
from array import array

import pytest

from addon import glb

# A closed, outward-facing unit cube in Blender axes (counter-clockwise seen from outside).
CUBE_POSITIONS = [c for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0) for c in (x, y, z)]
CUBE_TRIANGLES = [
    0, 1, 3, 0, 3, 2,  # x = -1
    4, 6, 7, 4, 7, 5,  # x = +1
    0, 4, 5, 0, 5, 1,  # y = -1
    2, 3, 7, 2, 7, 6,  # y = +1
    0, 2, 6, 0, 6, 4,  # z = -1
    1, 5, 7, 1, 7, 3,  # z = +1
]  # fmt: skip


def signed_volume(positions, indices) -> float:
    """Positive for a closed mesh whose triangles face outward."""
    total = 0.0
    for t in range(0, len(indices), 3):
        a, b, c = (positions[3 * indices[t + k] : 3 * indices[t + k] + 3] for k in range(3))
        total += (
            a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0]) + a[2] * (b[0] * c[1] - b[1] * c[0])
        )
    return total / 6.0


def parse(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    return document, data[28 + json_length : 28 + json_length + bin_length]


def make_glb(document: dict, binary: bytes) -> bytes:
    """A GLB from a hand-written glTF document, to test the reader on what other writers produce."""
    json_chunk = json.dumps(document).encode()
    json_chunk += b" " * (-len(json_chunk) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(json_chunk), 0x4E4F534A) + json_chunk + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def triangle_document(nodes: list[dict], index_type: int = 5125, stride: int | None = None) -> tuple[dict, bytes]:
    """One glTF triangle (0,0,0) (1,0,0) (0,1,0) in glTF axes, shown by ``nodes``."""
    positions = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if stride:  # interleave 4 padding bytes after each position
        vertex_bytes = b"".join(struct.pack("<3f", *positions[i : i + 3]) + b"\xff" * (stride - 12) for i in (0, 3, 6))
    else:
        vertex_bytes = struct.pack("<9f", *positions)
    index_format = {5121: "<3B", 5123: "<3H", 5125: "<3I"}[index_type]
    index_bytes = struct.pack(index_format, 0, 1, 2)
    index_bytes += b"\0" * (-len(index_bytes) % 4)
    view = {"buffer": 0, "byteOffset": 0, "byteLength": len(vertex_bytes)}
    if stride:
        view["byteStride"] = stride
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [i for i, n in enumerate(nodes) if not n.pop("_child", False)]}],
        "nodes": nodes,
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 1, "componentType": index_type, "count": 3, "type": "SCALAR"},
        ],
        "bufferViews": [view, {"buffer": 0, "byteOffset": len(vertex_bytes), "byteLength": 3 * struct.calcsize(index_format[-1])}],
        "buffers": [{"byteLength": len(vertex_bytes) + len(index_bytes)}],
    }
    return document, vertex_bytes + index_bytes


def points(mesh: glb.TriangleMesh) -> list[tuple[float, float, float]]:
    return [tuple(round(v, 5) for v in mesh.positions[i : i + 3]) for i in range(0, len(mesh.positions), 3)]


def test_write_is_valid_glb_in_gltf_axes():
    data = glb.write_glb([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0, 1, 2])
    assert len(data) % 4 == 0
    document, binary = parse(data)
    assert document["asset"]["version"] == "2.0"
    position = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    # Blender (x, y, z) is glTF (x, z, -y).
    assert struct.unpack_from("<3f", binary, 0) == (1.0, 3.0, -2.0)
    assert position["min"] == [0.0, 0.0, -2.0] and position["max"] == [1.0, 3.0, 0.0]
    indices = document["accessors"][document["meshes"][0]["primitives"][0]["indices"]]
    assert (indices["componentType"], indices["count"]) == (5125, 3)


def test_round_trip_keeps_positions_indices_normals_and_orientation():
    normals = [0.0, 0.0, 1.0] * 8
    mesh = glb.read_glb(glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, normals))
    assert list(mesh.positions) == CUBE_POSITIONS
    assert list(mesh.indices) == CUBE_TRIANGLES
    assert list(mesh.normals) == normals
    assert signed_volume(mesh.positions, mesh.indices) == pytest.approx(8.0)


def test_axis_conversion_is_a_rotation_and_inverts():
    values = array("f", [1.0, 2.0, 3.0, -4.0, 5.0, -6.0])
    assert list(glb.blender_to_gltf(values)) == [1.0, 3.0, -2.0, -4.0, -6.0, -5.0]
    assert list(glb.gltf_to_blender(glb.blender_to_gltf(values))) == list(values)
    # Rotation, not reflection: the orientation of the cube is kept in glTF axes.
    assert signed_volume(glb.blender_to_gltf(CUBE_POSITIONS), CUBE_TRIANGLES) == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("positions", "indices", "match"),
    [
        ([0.0, 0.0], [0, 0, 0], "triples"),
        ([0.0] * 9, [0, 1], "triangles"),
        ([0.0] * 9, [], "needs vertices and triangles"),
        ([0.0] * 9, [0, 1, 3], "only 3 vertices"),
        ([math.nan] + [0.0] * 8, [0, 1, 2], "NaN"),
    ],
)
def test_write_rejects_bad_input(positions, indices, match):
    with pytest.raises(ValueError, match=match):
        glb.write_glb(positions, indices)


@pytest.mark.parametrize("index_type", [5121, 5123, 5125])
def test_reader_takes_every_unsigned_index_type(index_type):
    document, binary = triangle_document([{"mesh": 0}], index_type=index_type)
    mesh = glb.read_glb(make_glb(document, binary))
    assert list(mesh.indices) == [0, 1, 2]
    # glTF (1, 0, 0) -> Blender (1, 0, 0); glTF (0, 1, 0) (up) -> Blender (0, 0, 1) (up).
    assert points(mesh) == [(0, 0, 0), (1, 0, 0), (0, 0, 1)]


def test_reader_handles_strided_vertex_buffers():
    document, binary = triangle_document([{"mesh": 0}], stride=16)
    assert points(glb.read_glb(make_glb(document, binary))) == [(0, 0, 0), (1, 0, 0), (0, 0, 1)]


def test_reader_applies_node_hierarchy_trs_and_matrix():
    half = math.sqrt(0.5)
    nodes = [
        # Parent: translate +10 along glTF x, in column-major matrix form.
        {"matrix": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 10, 0, 0, 1], "children": [1]},
        # Child: scale 2, then 90 degrees about glTF +z (x -> y), then translate +1 along glTF y.
        {"mesh": 0, "translation": [0, 1, 0], "rotation": [0, 0, half, half], "scale": [2, 2, 2], "_child": True},
    ]
    document, binary = triangle_document(nodes)
    mesh = glb.read_glb(make_glb(document, binary))
    # glTF: (0,0,0) -> (10,1,0); (1,0,0) -> (10,3,0); (0,1,0) -> (8,1,0); Blender: (X, -Z, Y).
    assert points(mesh) == [(10, 0, 1), (10, 0, 3), (8, 0, 1)]


def test_reader_merges_instances_and_flips_winding_under_mirroring():
    document, binary = triangle_document([{"mesh": 0}, {"mesh": 0, "scale": [-1, 1, 1]}])
    mesh = glb.read_glb(make_glb(document, binary))
    assert mesh.vertex_count == 6 and mesh.triangle_count == 2
    assert list(mesh.indices) == [0, 1, 2, 4, 3, 5]
    assert points(mesh)[3:] == [(0, 0, 0), (-1, 0, 0), (0, 0, 1)]


def test_reader_converts_triangle_strips():
    document, binary = triangle_document([{"mesh": 0}])
    document["meshes"][0]["primitives"][0]["mode"] = 5
    document["meshes"][0]["primitives"][0].pop("indices")
    assert list(glb.read_glb(make_glb(document, binary)).indices) == [0, 1, 2]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(extensionsRequired=["KHR_draco_mesh_compression"]), "KHR_draco_mesh_compression"),
        (lambda d: d["meshes"][0]["primitives"][0].update(mode=1), "no triangles"),
        (lambda d: d["accessors"][0].update(count=2), "index 2 past its 2 vertices"),
        (lambda d: d["accessors"][0].update(count=99), "past the end of its buffer"),
        (lambda d: d["buffers"][0].update(uri="mesh.bin"), "external buffer"),
    ],
)
def test_reader_rejects_what_it_cannot_read(mutate, match):
    document, binary = triangle_document([{"mesh": 0}])
    mutate(document)
    with pytest.raises(ValueError, match=match):
        glb.read_glb(make_glb(document, binary))


def test_reader_rejects_non_glb_and_truncated_data():
    with pytest.raises(ValueError, match="not a GLB"):
        glb.read_glb(b"solid cube\nendsolid\n")
    data = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES)
    with pytest.raises(ValueError, match="truncated"):
        glb.read_glb(data[:-8])


def test_trimesh_reads_what_we_write_in_gltf_axes():
    trimesh = pytest.importorskip("trimesh")
    np = pytest.importorskip("numpy")
    loaded = trimesh.load(io.BytesIO(glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES)), file_type="glb", force="mesh", process=False)
    expected = np.array(CUBE_POSITIONS).reshape(-1, 3)[:, [0, 2, 1]] * [1, 1, -1]
    assert np.allclose(loaded.vertices, expected)
    assert loaded.is_watertight and loaded.is_winding_consistent and loaded.volume == pytest.approx(8.0)


def test_we_read_trimesh_scenes_with_transforms():
    """The backend writes results with trimesh: several meshes, node transforms, its own index type."""
    trimesh = pytest.importorskip("trimesh")
    np = pytest.importorskip("numpy")
    box = trimesh.creation.box(extents=(1, 2, 3))
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="box", transform=trimesh.transformations.translation_matrix((5, 0, 0)))
    rotation = trimesh.transformations.rotation_matrix(0.7, (0, 1, 1))
    scene.add_geometry(sphere, node_name="ball", transform=trimesh.transformations.scale_and_translate(2.0, (0, 3, 0)) @ rotation)
    mesh = glb.read_glb(scene.export(file_type="glb"))
    flat = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
    expected = np.asarray(flat.vertices)[:, [0, 2, 1]] * [1, -1, 1]  # glTF (X, Y, Z) -> Blender (X, -Z, Y)
    got = np.array(mesh.positions).reshape(-1, 3)
    assert got.shape == expected.shape
    assert np.allclose(np.sort(got, axis=0), np.sort(expected, axis=0), atol=1e-5)
    # Both parts stay closed and outward-facing after the transforms and the axis change.
    assert signed_volume(mesh.positions, mesh.indices) == pytest.approx(float(box.volume + 8 * sphere.volume), rel=1e-4)


# -- results: polygons, UVs, material (the format of backend/mesh/gltf.py) ---------------------

# A unit cube of 6 quads in Blender axes (outward, counter-clockwise), and a pyramid-ish cap:
# one quad and four triangles share no vertex order trick.
QUAD_CUBE = [
    (0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3),
]  # fmt: skip


def backend_mesh(polygons, uv=None, material=None, positions=CUBE_POSITIONS):
    """A result GLB as the backend writes it (backend.mesh.gltf.write_glb), from Blender-axes input."""
    np = pytest.importorskip("numpy")
    from backend.mesh.gltf import polygon_triangles, write_glb
    from backend.mesh.types import Mesh

    # The backend works in glTF axes: the add-on sends Blender (x, y, z) as (x, z, -y).
    vertices = np.asarray(positions, dtype=np.float64).reshape(-1, 3)[:, [0, 2, 1]] * [1, 1, -1]
    faces, sizes = polygon_triangles([list(p) for p in polygons])
    has_quads = bool((sizes == 4).any())
    mesh = Mesh(vertices, faces, face_sizes=sizes if has_quads else None,
                uv=None if uv is None else np.asarray(uv, dtype=np.float64), material=material)
    return write_glb(mesh)


def polygon_lists(mesh: glb.TriangleMesh) -> list[tuple[int, ...]]:
    starts, corners = mesh.polygons()
    ends = list(starts[1:]) + [len(corners)]
    return [tuple(corners[a:b]) for a, b in zip(starts, ends)]


def test_quads_from_the_backend_come_back_as_the_same_quads():
    mesh = glb.read_glb(backend_mesh(QUAD_CUBE))
    assert list(mesh.face_sizes) == [4] * 6 and mesh.polygon_count == 6 and mesh.triangle_count == 12
    assert polygon_lists(mesh) == QUAD_CUBE
    assert points(mesh) == [tuple(float(c) for c in CUBE_POSITIONS[i : i + 3]) for i in range(0, 24, 3)]
    # The triangles other readers see still close the cube, facing outward.
    assert signed_volume(mesh.positions, mesh.indices) == pytest.approx(8.0)


def test_mixed_triangles_and_quads_keep_their_order():
    polygons = [(0, 1, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7, 3)]
    mesh = glb.read_glb(backend_mesh(polygons))
    assert list(mesh.face_sizes) == [len(p) for p in polygons]
    assert polygon_lists(mesh) == polygons


def test_a_glb_without_the_extension_is_all_triangles():
    mesh = glb.read_glb(glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES))
    assert mesh.face_sizes is None and mesh.polygon_count == 12
    assert polygon_lists(mesh) == [tuple(CUBE_TRIANGLES[i : i + 3]) for i in range(0, 36, 3)]


def test_mirroring_node_reverses_quads_and_keeps_them_quads():
    data = backend_mesh(QUAD_CUBE)
    document, binary = parse(data)
    document["nodes"][0]["scale"] = [-1, 1, 1]
    mesh = glb.read_glb(make_glb(document, binary))
    expected = [(a, d, c, b) for a, b, c, d in QUAD_CUBE]
    assert polygon_lists(mesh) == expected
    assert signed_volume(mesh.positions, mesh.indices) == pytest.approx(8.0)  # still outward


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        (b"\x04" * 5, "for 10 triangles, the primitive has 12"),
        (b"\x05" + b"\x04" * 5, "may only be 3 or 4"),
        (b"\x03" * 12, None),  # twelve triangles: valid, just no quads
    ],
)
def test_polygon_sizes_that_do_not_fit_give_triangles_and_a_warning(sizes, match):
    document, binary = parse(backend_mesh(QUAD_CUBE))
    accessor = document["meshes"][0]["primitives"][0]["extensions"][glb.POLYGONS_EXTENSION]["faceSizes"]
    view = document["accessors"][accessor]["bufferView"]
    # Append new sizes at the end of the binary chunk and point the accessor at them.
    document["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(sizes)})
    document["accessors"][accessor].update(bufferView=len(document["bufferViews"]) - 1, count=len(sizes))
    binary += sizes + b"\0" * (-len(sizes) % 4)
    document["buffers"][0]["byteLength"] = len(binary)
    assert view != len(document["bufferViews"]) - 1
    mesh = glb.read_glb(make_glb(document, binary))
    assert mesh.polygon_count == 12 and mesh.triangle_count == 12      # every triangle kept
    if match is None:
        assert mesh.warnings == []
    else:
        assert len(mesh.warnings) == 1 and match in mesh.warnings[0] and "imported as triangles" in mesh.warnings[0]


def test_quads_whose_triangles_do_not_share_the_diagonal_come_as_triangles_with_a_warning():
    # Regression (field test, Artist + Texture): one such quad made the reader refuse the
    # whole result, after the backend's work was done.
    document, binary = parse(backend_mesh(QUAD_CUBE))
    index_view = document["bufferViews"][document["accessors"][document["meshes"][0]["primitives"][0]["indices"]]["bufferView"]]
    start = index_view.get("byteOffset", 0)
    # Second triangle of the first quad: (a, c, d) -> (c, a, d), the same corners, not the quad layout.
    a, c, d = struct.unpack_from("<3I", binary, start + 12)
    binary = binary[: start + 12] + struct.pack("<3I", c, a, d) + binary[start + 24 :]
    mesh = glb.read_glb(make_glb(document, binary))
    assert mesh.face_sizes is None and mesh.triangle_count == 12
    assert len(mesh.warnings) == 1 and "polygon 0 is marked a quad" in mesh.warnings[0]


def test_uvs_arrive_in_blenders_convention():
    # Blender-convention UVs per vertex: u = x-ish, v = z-ish, all distinct and not symmetric in v.
    uv = [(0.1 * i, 0.05 + 0.11 * i) for i in range(8)]
    data = backend_mesh(QUAD_CUBE, uv=uv)
    document, binary = parse(data)
    accessor = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
    stored = struct.unpack_from("<16f", binary, document["bufferViews"][accessor["bufferView"]]["byteOffset"])
    assert stored[1] == pytest.approx(1.0 - 0.05)  # glTF holds 1 - v
    mesh = glb.read_glb(data)
    assert [tuple(round(x, 5) for x in mesh.uvs[i : i + 2]) for i in range(0, 16, 2)] == [
        (round(u, 5), round(v, 5)) for u, v in uv
    ]


def tiny_png(rgb: tuple[int, int, int]) -> bytes:
    from addon import png

    return png.encode_rgba([c / 255 for c in rgb] + [1.0], 1, 1)


def test_material_images_and_factors_come_through():
    from backend.mesh.types import Material

    base, normal = tiny_png((200, 40, 10)), tiny_png((128, 128, 255))
    data = backend_mesh(QUAD_CUBE, uv=[(0.5, 0.5)] * 8, material=Material(base_color=base, normal=normal, roughness=0.3))
    mesh = glb.read_glb(data)
    assert mesh.material.base_color == glb.Texture(base, "image/png")
    assert mesh.material.normal == glb.Texture(normal, "image/png")
    assert (mesh.material.roughness, mesh.material.metallic, mesh.material.normal_scale) == (pytest.approx(0.3), 0.0, 1.0)


def test_textures_in_data_uris_are_read_and_external_ones_rejected():
    import base64

    document, binary = triangle_document([{"mesh": 0}])
    png_bytes = tiny_png((1, 2, 3))
    document.update(
        images=[{"uri": "data:image/png;base64," + base64.b64encode(png_bytes).decode()}],
        textures=[{"source": 0}],
        materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
    )
    document["meshes"][0]["primitives"][0]["material"] = 0
    assert glb.read_glb(make_glb(document, binary)).material.base_color.data == png_bytes
    document["images"] = [{"uri": "colour.png"}]
    with pytest.raises(ValueError, match="external file"):
        glb.read_glb(make_glb(document, binary))


def test_normalized_integer_uvs_and_rgb_colours_are_read():
    document, binary = triangle_document([{"mesh": 0}])
    extra = struct.pack("<6H", 0, 65535, 65535, 65535, 0, 0) + struct.pack("<9B", 255, 0, 0, 0, 255, 0, 0, 0, 255)
    base = len(binary)
    binary += extra + b"\0" * (-len(extra) % 4)
    document["bufferViews"] += [
        {"buffer": 0, "byteOffset": base, "byteLength": 12},
        {"buffer": 0, "byteOffset": base + 12, "byteLength": 9},
    ]
    document["accessors"] += [
        {"bufferView": 2, "componentType": 5123, "normalized": True, "count": 3, "type": "VEC2"},
        {"bufferView": 3, "componentType": 5121, "normalized": True, "count": 3, "type": "VEC3"},
    ]
    document["buffers"][0]["byteLength"] = len(binary)
    document["meshes"][0]["primitives"][0]["attributes"].update(TEXCOORD_0=2, COLOR_0=3)
    mesh = glb.read_glb(make_glb(document, binary))
    assert list(mesh.uvs) == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # v flipped
    assert list(mesh.colors) == [1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1]
    # Integer UVs that are not normalized have no meaning as texture coordinates.
    document["accessors"][2]["normalized"] = False
    with pytest.raises(ValueError, match="normalized"):
        glb.read_glb(make_glb(document, binary))


# -- uploads: UVs, colours and a base colour texture --------------------------------------------


def test_uvs_colours_and_texture_round_trip():
    uvs = [0.25 * (i % 4) + 0.01 * i for i in range(16)]
    colors = [0.1, 0.2, 0.3, 1.0] * 8
    image = tiny_png((10, 20, 30))
    data = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, uvs=uvs, colors=colors, base_color=image, name="Src")
    document, _ = parse(data)
    attributes = document["meshes"][0]["primitives"][0]["attributes"]
    assert set(attributes) == {"POSITION", "TEXCOORD_0", "COLOR_0"}
    assert document["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] == {"index": 0}
    assert document["images"][0]["mimeType"] == "image/png"
    mesh = glb.read_glb(data)
    assert list(mesh.uvs) == pytest.approx(uvs)
    assert list(mesh.colors) == pytest.approx(colors)
    assert mesh.material.base_color.data == image and mesh.material.name == "Src"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"uvs": [0.0] * 15}, "uvs must hold 2 values per vertex"),
        ({"colors": [0.0] * 8}, "colors must hold 4 values per vertex"),
        ({"base_color": b"\x89PNG\r\n\x1a\n"}, "needs uvs"),
        ({"uvs": [0.0] * 16, "base_color": b"GIF89a"}, "must be PNG"),
        ({"uvs": [math.nan] * 16}, "uvs contain NaN"),
    ],
)
def test_writer_rejects_bad_attributes(options, match):
    with pytest.raises(ValueError, match=match):
        glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, **options)


def test_trimesh_reads_our_uvs_colours_and_texture():
    trimesh = pytest.importorskip("trimesh")
    np = pytest.importorskip("numpy")
    image_module = pytest.importorskip("PIL.Image")
    from addon import png

    # A 2 x 2 texture, Blender layout (bottom row first): bottom red, green; top blue, white.
    pixels = [1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1]
    uvs = [0.25, 0.25, 0.75, 0.25, 0.25, 0.75, 0.75, 0.75] * 2  # each vertex at one texel's centre
    data = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, uvs=uvs, base_color=png.encode_rgba(pixels, 2, 2))
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    picture = np.asarray(loaded.visual.material.baseColorTexture.convert("RGBA"))
    # PIL rows run top-down: top row blue, white; bottom row red, green.
    assert picture.tolist() == [[[0, 0, 255, 255], [255, 255, 255, 255]], [[255, 0, 0, 255], [0, 255, 0, 255]]]
    # trimesh keeps glTF's UVs flipped back to bottom-left, so sampling them finds the texel we meant.
    sampled = loaded.visual.to_color().vertex_colors[:, :3].tolist()
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]] * 2
    assert sampled == expected
    assert image_module is not None

    colours = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, colors=[0.0, 0.5, 1.0, 1.0] * 8)
    loaded = trimesh.load(io.BytesIO(colours), file_type="glb", force="mesh", process=False)
    assert loaded.visual.vertex_colors[0].tolist() == [0, 128, 255, 255]


def test_quads_and_triangles_keeps_quads_and_takes_blenders_triangles_for_ngons():
    # A quad, a triangle and a concave pentagon (Blender's triangles of it given, not a fan).
    loop_totals = [4, 3, 5]
    loop_vertices = [0, 1, 2, 3, 1, 4, 2, 5, 6, 7, 8, 9]
    triangles = [0, 1, 3, 1, 2, 3, 1, 4, 2, 5, 6, 9, 6, 7, 9, 7, 8, 9]   # the quad split b-d, as Blender may
    triangle_polygons = [0, 0, 1, 2, 2, 2]
    indices, sizes = glb.quads_and_triangles(loop_totals, loop_vertices, triangles, triangle_polygons)
    assert list(sizes) == [4, 3, 3, 3, 3]
    assert list(indices) == [0, 1, 2, 0, 2, 3, 1, 4, 2, 5, 6, 9, 6, 7, 9, 7, 8, 9]


def test_written_quads_come_back_as_quads():
    # Regression (field test, issue 14): the add-on uploaded quads as triangles, so Texture
    # returned a quad mesh as twice as many triangles.
    indices, sizes = glb.quads_and_triangles([4] * 6, [i for quad in QUAD_CUBE for i in quad],
                                             CUBE_TRIANGLES, [i // 2 for i in range(12)])
    mesh = glb.read_glb(glb.write_glb(CUBE_POSITIONS, indices, face_sizes=sizes))
    assert polygon_lists(mesh) == QUAD_CUBE and mesh.warnings == []
    with pytest.raises(ValueError, match="face_sizes describe"):
        glb.write_glb(CUBE_POSITIONS, indices, face_sizes=sizes[:5])


def test_vertex_ids_keep_coincident_vertices_apart_and_join_seam_copies():
    # Regression (field test, issue 14): welding a textured result by position joined two
    # distinct vertices of CesiumMilkTruck that coincide, and an edge got four faces.
    import numpy as np

    from addon import corners
    from backend.mesh.gltf import write_glb
    from backend.mesh.types import Mesh

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0],       # triangle A
                  [0, 0, 0], [1, 0, 0], [0, -1, 0],      # triangle B: its first two corners coincide with A's
                  [1, 0, 0]], dtype=float)               # a seam copy of vertex 1
    f = np.array([[0, 1, 2], [3, 4, 5]])
    ids = np.array([0, 1, 2, 3, 4, 5, 1])
    uv = np.zeros((7, 2))
    mesh = glb.read_glb(write_glb(Mesh(v, f, uv=uv, vertex_ids=ids)))
    assert list(mesh.vertex_ids) == ids.tolist()
    positions, corners_ = corners.weld(mesh.positions, mesh.indices, mesh.vertex_ids)
    assert len(positions) // 3 == 6                      # the seam copy joins vertex 1; A and B stay apart
    by_position, _ = corners.weld(mesh.positions, mesh.indices)
    assert len(by_position) // 3 == 4                    # what position alone would have done
