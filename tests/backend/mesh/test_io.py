"""Mesh files in and out: format sniffing, validation messages, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.errors import BadMesh, UnsupportedFormat
from backend.mesh.io import load_mesh, load_mesh_bytes, save_mesh, sniff_format, validate_mesh
from backend.mesh.types import Mesh
from tests import meshes


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply", "stl"])
def test_round_trip_through_every_format_sniffed_by_content(tmp_path, fmt):
    v, f = meshes.cube()
    path = save_mesh(Mesh(v, f), tmp_path / f"cube.{fmt}")
    misnamed = path.rename(tmp_path / "cube.bin")  # the suffix must not matter when reading
    assert sniff_format(misnamed.read_bytes()) == fmt
    mesh = load_mesh(misnamed)
    back = trimesh.Trimesh(mesh.vertices, mesh.faces)
    assert back.is_watertight and np.isclose(back.volume, trimesh.Trimesh(v, f).volume)


def test_binary_stl_whose_header_says_solid_is_binary():
    data = trimesh.Trimesh(*meshes.cube()).export(file_type="stl")
    data = b"solid but binary".ljust(80, b" ") + data[80:]
    assert sniff_format(data) == "stl"
    assert len(load_mesh_bytes(data).faces) == 12


def test_scene_glb_is_flattened_with_node_transforms():
    a = trimesh.Trimesh(*meshes.cube())
    scene = trimesh.Scene()
    scene.add_geometry(a, transform=trimesh.transformations.translation_matrix([10, 0, 0]))
    scene.add_geometry(a.copy(), transform=np.eye(4))
    mesh = load_mesh_bytes(scene.export(file_type="glb"))
    assert len(mesh.faces) == 24 and mesh.vertices[:, 0].max() > 9


@pytest.mark.parametrize("vertices,faces,words", [
    (np.zeros((0, 3)), np.zeros((0, 3), int), "no triangles"),
    (np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]]), "NaN"),
    (np.eye(3), np.array([[0, 1, 5]]), "face indices from 0 to 5"),
    (np.eye(3), np.array([[0.0, 1.0, 2.0]]), "integers"),
    (np.zeros((3, 2)), np.array([[0, 1, 2]]), "shape (n, 3)"),
])
def test_validation_names_the_problem(vertices, faces, words):
    with pytest.raises(BadMesh, match=None) as err:
        validate_mesh(vertices, faces)
    assert words in err.value.message


def test_unknown_content_is_unsupported():
    with pytest.raises(UnsupportedFormat, match="GLB, OBJ, PLY or STL"):
        sniff_format(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_save_is_atomic_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = save_mesh(Mesh(*meshes.cube()), tmp_path / "m.ply")
    before = target.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", explode)
    with pytest.raises(OSError):
        save_mesh(Mesh(*meshes.uv_sphere(8, 16)), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ply"]


def test_save_refuses_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="path must end in one of"):
        save_mesh(Mesh(*meshes.cube()), tmp_path / "m.fbx")
