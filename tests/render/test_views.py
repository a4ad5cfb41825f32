"""Real renders (pip bpy, Cycles, tiny images) of meshes the tests make; geometry checked against the files.

One ``render.dataset`` run renders every test asset in one Blender process; the tests then
check what a training loader relies on: depth back-projected with cameras.json lands on the
mesh, mesh vertices project into the mask, normal maps agree with the mesh's normals, the
camera-frame normals are the world normals rotated, colour follows the textures, resume
skips finished assets, and a broken file fails alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.render.checks import RES, check_geometry, flat_shape, run, textured_sphere, view_maps


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    src = tmp_path_factory.mktemp("assets")
    shape = flat_shape()
    (src / "flat.obj").write_text(trimesh.exchange.obj.export_obj(shape, include_normals=False))
    (src / "flat_z.stl").write_bytes(shape.export(file_type="stl"))
    coloured = shape.copy()
    coloured.visual.vertex_colors = np.tile([20, 30, 220, 255], (len(shape.vertices), 1))
    (src / "flat_ply.ply").write_bytes(trimesh.exchange.ply.export_ply(coloured, vertex_normal=False))
    smooth = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    smooth.vertices *= [1.0, 1.0, 0.5]
    smooth.vertex_normals  # noqa: B018 - computed and written to the PLY as smooth normals
    (src / "smooth.ply").write_bytes(trimesh.exchange.ply.export_ply(smooth, vertex_normal=True))
    (src / "red.glb").write_bytes(textured_sphere((230, 20, 20)).export(file_type="glb", include_normals=False))
    tex_dir = src / "green"
    tex_dir.mkdir()
    textured_sphere((20, 200, 20)).export(tex_dir / "green.obj", include_normals=False)  # + .mtl + .png
    (src / "broken.glb").write_bytes(b"glTF" + b"\x02\x00\x00\x00" + b"\x00" * 40)
    return src


@pytest.fixture(scope="module")
def dataset(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    proc = run(["-m", "render.dataset", "--input-dir", str(assets), "--out", str(out), "--workers", "1",
                "--resolution", str(RES), "--samples", "4", "--no-progress"])
    return out, proc


# ---------------------------------------------------------------- tests


def test_dataset_run_renders_every_good_asset_and_records_the_broken_one(dataset, assets):
    out, proc = dataset
    assert proc.returncode == 3, proc.stdout + proc.stderr  # 3: some asset failed
    assert "6 rendered, 0 skipped (already complete), 1 failed" in proc.stdout, proc.stdout + proc.stderr
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["name"] for f in failures] == ["broken"]
    assert "Blender cannot import it" in failures[0]["error"] and not failures[0]["ok"]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["name"] for m in manifest) == ["flat", "flat_ply", "flat_z", "green__green", "red", "smooth"]
    for entry in manifest:
        assert entry["views"] == 6 and entry["layout"] == "zero123pp" and entry["width"] == RES
        assert "file_to_world" in entry["normalization"]
        folder = out / entry["dir"]
        for name in (entry["files"]["mesh"], entry["files"]["contact_sheet"]):
            assert (folder / name).stat().st_size > 0
        for files in entry["files"]["views"]:
            assert {"rgb", "normal_world", "normal_camera", "depth", "mask"} <= set(files)
            assert all((folder / f).is_file() for f in files.values())
    assert not list(out.glob(".*tmp*")), "no temporary folders left behind"


@pytest.mark.parametrize("name, file", [("flat", "flat.obj"), ("flat_z", "flat_z.stl"), ("flat_ply", "flat_ply.ply")])
def test_flat_assets_geometry_is_exact(dataset, assets, name, file):
    out, _ = dataset
    cameras = check_geometry(out / name, assets / file)
    assert cameras["normalization"]["file_up_axis"] == ("Y" if file.endswith(".obj") else "Z")


def test_smooth_normals_follow_the_files_vertex_normals(dataset, assets):
    out, _ = dataset
    check_geometry(out / "smooth", assets / "smooth.ply", smooth=True)


@pytest.mark.parametrize("name, file, channel", [
    ("red", "red.glb", 0), ("green__green", "green/green.obj", 1), ("flat_ply", "flat_ply.ply", 2),
])
def test_textures_show_and_colour_matches_mask(dataset, assets, name, file, channel):
    out, _ = dataset
    cameras = check_geometry(out / name, assets / file)
    for view in cameras["views"]:
        rgba = np.asarray(Image.open(out / name / view["files"]["rgb"])).astype(float)
        _, _, _, mask = view_maps(out / name, view)
        alpha = rgba[..., 3] > 127
        assert (alpha ^ mask).sum() <= 0.1 * mask.sum(), "colour and exact mask cover the same pixels"
        inside = rgba[mask & (rgba[..., 3] == 255)][:, :3]
        others = [c for c in range(3) if c != channel]
        assert (inside[:, channel] > 2 * inside[:, others].max(1)).mean() > 0.9, "the texture's colour dominates"
        assert (rgba[..., :3][rgba[..., 3] == 0] == 0).all(), "transparent background, no colour"
    assert cameras["render"]["seed"] == 0 and cameras["render"]["samples"] == 4
    assert {s["name"] for s in cameras["render"]["light_rig"]["suns"]} == {"key", "fill", "rim"}


def test_assets_without_colours_render_grey(dataset):
    out, _ = dataset
    for name in ("smooth", "flat_z"):  # a PLY without vertex colours, an STL
        rgba = np.asarray(Image.open(out / name / "000_rgb.png")).astype(float)
        rgb = rgba[rgba[..., 3] == 255][:, :3]
        assert np.allclose(rgb[:, 0], rgb[:, 1]) and np.allclose(rgb[:, 1], rgb[:, 2])
        assert rgb.mean() > 100, f"{name} renders dark: {rgb.mean():.0f}"


def test_mesh_glb_is_the_normalized_mesh(dataset, assets):
    out, _ = dataset
    glb = trimesh.load(out / "flat" / "mesh.glb", force="mesh")
    cameras = json.loads((out / "flat" / "cameras.json").read_text())
    src = trimesh.load(assets / "flat.obj", force="mesh", process=False)
    m = np.asarray(cameras["normalization"]["file_to_world"])
    world = src.vertices @ m[:3, :3].T + m[:3, 3]
    # glTF is Y-up: Blender (x, y, z) is glTF (x, z, -y).
    expected = np.c_[world[:, 0], world[:, 2], -world[:, 1]]
    assert np.allclose(np.sort(glb.bounds, 0), np.sort(np.array([expected.min(0), expected.max(0)]), 0), atol=1e-5)
    assert np.isclose(glb.area, trimesh.Trimesh(expected, src.faces).area, rtol=1e-5)


def test_second_run_resumes_without_rendering(dataset, assets):
    out, _ = dataset
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    proc = run(["-m", "render.dataset", "--input-dir", str(assets), "--out", str(out), "--workers", "1",
                "--resolution", str(RES), "--samples", "4", "--no-progress"])
    # Only the broken asset is tried again.
    assert "0 rendered, 6 skipped (already complete), 1 failed" in proc.stdout, proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 6


def test_blender_style_entry_point_non_square_sphere_layout(assets, tmp_path):
    """`blender -b -P render/views.py -- ...` as Blender runs it: the script file, argv with `--`."""
    out = tmp_path / "views"
    code = ("import runpy, sys; sys.argv = ['blender', '-b', '-P', 'render/views.py', '--', "
            f"'--input', {str(assets / 'flat_z.stl')!r}, '--out', {str(out)!r}, '--layout', 'sphere:4', "
            "'--resolution', '72x48', '--no-colour']; runpy.run_path('render/views.py', run_name='__main__')")
    proc = run(["-c", code])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 views at 72x48" in proc.stdout
    cameras = check_geometry(out, assets / "flat_z.stl")
    assert [v["intrinsics"]["width"] for v in cameras["views"]] == [72] * 4
    assert all(np.load(out / v["files"]["depth"]).shape == (48, 72) for v in cameras["views"])


def test_cli_refuses_bad_input_with_a_sentence(tmp_path):
    proc = run(["-m", "render.views", "--input", str(tmp_path / "nope.obj"), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2 and "is not a file" in proc.stderr
    (tmp_path / "x.fbx").write_text("")
    proc = run(["-m", "render.views", "--input", str(tmp_path / "x.fbx"), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2 and "must end in one of" in proc.stderr


def test_cameras_json_is_a_layout(assets, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--input", str(assets / "flat.obj"), "--resolution", "40", "--no-colour"]
    assert run(["-m", "render.views", *common, "--out", str(first), "--layout", "orbit:3", "--fov", "40"]).returncode == 0
    proc = run(["-m", "render.views", *common, "--out", str(second), "--layout", str(first / "cameras.json")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = (json.loads((d / "cameras.json").read_text()) for d in (first, second))
    for va, vb in zip(a["views"], b["views"], strict=True):
        assert np.allclose(va["world_to_camera"], vb["world_to_camera"]) and va["intrinsics"] == vb["intrinsics"]
        assert np.array_equal(np.load(first / va["files"]["depth"]), np.load(second / vb["files"]["depth"]))
