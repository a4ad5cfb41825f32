"""Result GLB/OBJ writing: polygons, UVs and a material survive, read back by trimesh and by hand."""

import io
import json
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.mesh.gltf import POLYGONS_EXTENSION, polygon_triangles, polygons_of
from backend.mesh.io import load_mesh_bytes, mesh_to_bytes
from backend.mesh.types import Material, Mesh


def _png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 2), colour).save(out, "PNG")
    return out.getvalue()


def _quad_and_triangle() -> Mesh:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=float)
    tris, sizes = polygon_triangles([[0, 1, 2, 3], [1, 4, 2]])
    return Mesh(v, tris, sizes, uv=v[:, :2] / 2,
                material=Material(base_color=_png((255, 0, 0)), normal=_png((128, 128, 255))))


def _json_chunk(glb: bytes) -> dict:
    length, kind = struct.unpack_from("<II", glb, 12)
    assert kind == 0x4E4F534A
    return json.loads(glb[20:20 + length])


def test_polygon_triangles_splits_quads_in_order():
    tris, sizes = polygon_triangles(np.array([[0, 1, 2, 3], [4, 5, 6, 7]]))
    assert tris.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    assert sizes.tolist() == [4, 4]
    with pytest.raises(ValueError, match="3 or 4 corners"):
        polygon_triangles([[0, 1, 2, 3, 4]])


def test_glb_keeps_polygons_uvs_and_material():
    mesh = _quad_and_triangle()
    glb = mesh_to_bytes(mesh, "glb")
    doc = _json_chunk(glb)
    assert doc["extensionsUsed"] == [POLYGONS_EXTENSION]
    assert "extensionsRequired" not in doc
    primitive = doc["meshes"][0]["primitives"][0]
    sizes = doc["accessors"][primitive["extensions"][POLYGONS_EXTENSION]["faceSizes"]]
    assert sizes["count"] == 2 and sizes["componentType"] == 5121
    material = doc["materials"][primitive["material"]]
    assert "baseColorTexture" in material["pbrMetallicRoughness"] and "normalTexture" in material

    loaded = list(trimesh.load(io.BytesIO(glb), file_type="glb").geometry.values())[0]
    assert loaded.faces.tolist() == mesh.faces.tolist()
    np.testing.assert_allclose(loaded.visual.uv, mesh.uv, atol=1e-6)     # v flipped on write and read
    assert loaded.visual.material.baseColorTexture.getpixel((0, 0))[:3] == (255, 0, 0)
    assert load_mesh_bytes(glb).faces.shape == (3, 3)


def test_obj_keeps_quads():
    mesh = _quad_and_triangle()
    text = mesh_to_bytes(mesh, "obj").decode()
    faces = [line for line in text.splitlines() if line.startswith("f ")]
    assert faces == ["f 1/1 2/2 3/3 4/4", "f 2/2 5/5 3/3"]
    assert [p.tolist() for p in polygons_of(mesh)] == [[0, 1, 2, 3], [1, 4, 2]]


def test_plain_triangle_mesh_round_trips():
    v = np.random.default_rng(0).normal(size=(10, 3))
    f = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7]])
    back = load_mesh_bytes(mesh_to_bytes(Mesh(v, f), "glb"))
    np.testing.assert_allclose(back.vertices, v, atol=1e-6)
    assert back.faces.tolist() == f.tolist()


def test_uploaded_result_keeps_its_quads():
    mesh = _quad_and_triangle()
    back = load_mesh_bytes(mesh_to_bytes(mesh, "glb"))
    assert back.face_sizes is not None and back.face_sizes.tolist() == [4, 3]
    assert back.faces.tolist() == mesh.faces.tolist()


def test_polygon_sizes_that_do_not_fit_the_triangles_are_ignored():
    mesh = _quad_and_triangle()
    wrong = Mesh(mesh.vertices, mesh.faces, np.array([4, 4], dtype=np.uint8))   # 4 triangles, 3 stored
    back = load_mesh_bytes(mesh_to_bytes(wrong, "glb"))
    assert back.face_sizes is None and len(back.faces) == 3
