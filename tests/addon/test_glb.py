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
