"""addon/views.py: a render/ views folder packed into the texture pipeline's zip (bpy-free)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from addon.errors import MeshsmithError
from addon.views import pack_views


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
    assert json.loads(archive.read("cameras.json")) == cameras
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
