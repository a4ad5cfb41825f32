"""addon/views.py: a render/ views folder packed into the texture pipeline's zip (bpy-free)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from addon.errors import MeshsmithError
from addon.views import for_gltf_upload, pack_views


def views_folder(root, *, views=2, extra_files=True):
    root.mkdir(parents=True, exist_ok=True)
    cameras = {"format": 1, "views": []}
    for k in range(views):
        files = {"rgb": f"{k:03d}_rgb.png", "mask": f"{k:03d}_mask.png", "depth": f"{k:03d}_depth.npy"}
        cameras["views"].append({"index": k, "world_to_camera": [[1, 0, 0, 0]] * 3, "files": files})
        for name in files.values():
            (root / name).write_bytes(f"data of {name}".encode())
    cameras["files"] = {"mesh": "mesh.glb", "contact_sheet": "contact_sheet.png"}
    if extra_files:
        (root / "mesh.glb").write_bytes(b"glTF")
        (root / "notes.txt").write_text("not part of the views")
    (root / "cameras.json").write_text(json.dumps(cameras))
    return cameras


def test_zip_holds_cameras_json_and_every_file_the_views_name(tmp_path):
    cameras = views_folder(tmp_path / "views")
    archive = zipfile.ZipFile(io.BytesIO(pack_views(tmp_path / "views")))
    names = archive.namelist()
    assert names[0] == "cameras.json"
    assert sorted(names[1:]) == sorted(n for v in cameras["views"] for n in v["files"].values())
    assert json.loads(archive.read("cameras.json")) == cameras  # no normalization record: unchanged
    assert archive.read("001_depth.npy") == b"data of 001_depth.npy"
    assert archive.getinfo("000_rgb.png").compress_type == zipfile.ZIP_STORED


@pytest.mark.parametrize(
    ("prepare", "match"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "has no cameras.json"),
        (lambda root: (root.mkdir(), (root / "cameras.json").write_text("{torn")), "cannot be read as JSON"),
        (lambda root: (root.mkdir(), (root / "cameras.json").write_text('{"views": []}')), "lists no views"),
        (lambda root: (views_folder(root), (root / "001_mask.png").unlink()), "not there: 001_mask.png"),
    ],
)
def test_unusable_folders_get_a_sentence(tmp_path, prepare, match):
    root = tmp_path / "views"
    prepare(root)
    with pytest.raises(MeshsmithError, match=match):
        pack_views(root)


def test_views_without_colour_or_with_escaping_names_are_refused(tmp_path):
    root = tmp_path / "views"
    cameras = views_folder(root)
    del cameras["views"][1]["files"]["rgb"]
    (root / "cameras.json").write_text(json.dumps(cameras))
    with pytest.raises(MeshsmithError, match="view 1 has no colour image"):
        pack_views(root)
    cameras["views"][1]["files"]["rgb"] = "../../etc/passwd"
    (root / "cameras.json").write_text(json.dumps(cameras))
    with pytest.raises(MeshsmithError, match="must be inside the views folder"):
        pack_views(root)


def test_an_unset_folder_says_where_to_set_it():
    with pytest.raises(MeshsmithError, match="Choose the folder of posed images"):
        pack_views("  ")


def apply(matrix, point):
    return [sum(matrix[r][c] * v for c, v in enumerate((*point, 1.0))) for r in range(3)]


def test_a_z_up_assets_frame_record_is_rewritten_for_the_gltf_upload(tmp_path):
    # render/ for a PLY (Z-up): world = N @ file, with N = scale 2, then move +1 in x.
    n = [[2.0, 0, 0, 1.0], [0, 2.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1.0]]
    cameras = views_folder(tmp_path / "views")
    cameras["normalization"] = {"center": [0, 0, 0], "scale": 2.0, "file_up_axis": "Z", "file_to_world": n}
    (tmp_path / "views" / "cameras.json").write_text(json.dumps(cameras))
    packed = json.loads(zipfile.ZipFile(io.BytesIO(pack_views(tmp_path / "views"))).read("cameras.json"))
    norm = packed["normalization"]
    assert norm["file_up_axis"] == "Y" and norm["scale"] == 2.0
    # The add-on uploads Blender (x, y, z) = (1, 2, 3) as glTF (1, 3, -2); the record must take
    # that to N @ (1, 2, 3) = (3, 4, 6), where render/ put the asset's point.
    assert apply(norm["file_to_world"], (1.0, 3.0, -2.0)) == pytest.approx([3.0, 4.0, 6.0])
    assert packed["views"] == cameras["views"]


def test_y_up_and_unnormalized_records_are_sent_as_they_are():
    y_up = {"views": [], "normalization": {"file_up_axis": "Y", "file_to_world": [[1, 0, 0, 0]] * 4}}
    assert for_gltf_upload(y_up) is y_up
    bare = {"views": []}
    assert for_gltf_upload(bare) is bare
    with pytest.raises(MeshsmithError, match="4 x 4"):
        for_gltf_upload({"normalization": {"file_up_axis": "Z", "file_to_world": [[1, 2]]}})
