"""Real renders (pip bpy, Cycles, tiny images) of meshes the tests make; geometry checked against the files.

One ``render.dataset`` run renders every test asset in one Blender process; the tests then
check what a training loader relies on: depth back-projected with cameras.json lands on the
mesh, mesh vertices project into the mask, normal maps agree with the mesh's normals, the
camera-frame normals are the world normals rotated, colour follows the textures, resume
skips finished assets, and a broken file fails alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
Image = pytest.importorskip("PIL.Image")

REPO = Path(__file__).resolve().parents[2]
RES = 64
#: Back-projected depth must lie this close to the surface, as a fraction of the box (side 2 * 0.95).
SURFACE_TOL = 0.005 * 1.9
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run(args, **kw):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300, **kw)
    return proc


# ---------------------------------------------------------------- test assets


def flat_shape():
    """An ellipsoid (icosphere, 80 faces) and a box stuck into it: flat faces, non-convex, off-centre."""
    ell = trimesh.creation.icosphere(subdivisions=1, radius=0.7)
    ell.vertices *= [1.0, 0.6, 1.3]
    box = trimesh.creation.box(extents=[0.5, 0.4, 0.6])
    box.vertices += [0.7, 0.1, -0.3]
    shape = trimesh.util.concatenate([ell, box])
    shape.vertices += [2.0, 3.0, -1.0]
    return shape


def textured_sphere(colour):
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    uv = np.c_[(m.vertices[:, 0] + 0.5), (m.vertices[:, 2] + 0.5)]
    m.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", (8, 8), colour))
    return m


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


# ---------------------------------------------------------------- geometry helpers


def closest_points(points, tri):
    """Closest point on triangles ``tri`` (m, 3, 3) to each of ``points`` (n, 3): (distance, triangle, barycentric)."""
    best = np.full(len(points), np.inf)
    best_tri = np.zeros(len(points), dtype=int)
    best_bary = np.zeros((len(points), 3))
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    for s in range(0, len(points), 128):
        p = points[s:s + 128, None, :]
        # Solve for the unconstrained barycentric coordinates, then clamp onto the triangle by
        # taking the best of the interior projection and the three edges.
        e0, e1, d = b - a, c - a, p - a
        d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
        d20, d21 = (d * e0).sum(-1), (d * e1).sum(-1)
        den = d00 * d11 - d01 * d01
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        inside = (v >= 0) & (w >= 0) & (v + w <= 1)
        cands = [(np.where(inside[..., None], np.stack([1 - v - w, v, w], -1), np.nan))]
        for i, j in ((0, 1), (1, 2), (2, 0)):
            s_, e_ = tri[:, i], tri[:, j]
            t = np.clip(((p - s_) * (e_ - s_)).sum(-1) / ((e_ - s_) ** 2).sum(-1), 0, 1)
            bary = np.zeros(t.shape + (3,))
            bary[..., i], bary[..., j] = 1 - t, t
            cands.append(bary)
        for bary in cands:
            q = np.einsum("nmk,mkd->nmd", np.nan_to_num(bary, nan=0.0), tri)
            dist = np.where(np.isnan(bary[..., 0]), np.inf, np.linalg.norm(q - p, axis=-1))
            j = dist.argmin(1)
            dj = dist[np.arange(len(j)), j]
            better = dj < best[s:s + 128]
            best[s:s + 128][better] = dj[better]
            best_tri[s:s + 128][better] = j[better]
            best_bary[s:s + 128][better] = bary[np.arange(len(j)), j][better]
    return best, best_tri, best_bary


def load_in_world(path, cameras):
    """The asset file's own triangles and vertex normals, moved into the render's world with
    cameras.json's transform."""
    mesh = trimesh.load(path, force="mesh", process=False)
    m = np.asarray(cameras["normalization"]["file_to_world"])
    verts = mesh.vertices @ m[:3, :3].T + m[:3, 3]
    normals = mesh.vertex_normals @ np.linalg.inv(m[:3, :3])  # M^-T n, row form
    return verts, mesh.faces, normals


def view_maps(folder, view):
    f = view["files"]
    mask = np.asarray(Image.open(folder / f["mask"])) > 127
    return (np.load(folder / f["depth"]), np.load(folder / f["normal_world"]),
            np.load(folder / f["normal_camera"]), mask)


def back_project(depth, mask, view):
    k, w2c = view["intrinsics"], np.asarray(view["world_to_camera"])
    v, u = np.nonzero(mask)
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u - k["cx"]) / k["fx"] * z, (v - k["cy"]) / k["fy"] * z, z], axis=1)
    return (cam - w2c[:3, 3]) @ w2c[:3, :3], v, u  # R^T (x - t), row form


def check_geometry(folder, src, *, smooth=False):
    cameras = json.loads((folder / "cameras.json").read_text())
    verts, faces, vnormals = load_in_world(src, cameras)
    tri = verts[faces]
    # The transform puts the file into the canonical box: centred, longest side 2 * 0.95.
    lo, hi = verts.min(0), verts.max(0)
    assert np.allclose((lo + hi) / 2, 0, atol=1e-6) and np.isclose((hi - lo).max(), 1.9, atol=1e-6)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    for view in cameras["views"]:
        depth, nw, nc, mask = view_maps(folder, view)
        assert mask.sum() > 50, "the asset must be in view"
        assert (depth[~mask] == 0).all() and (depth[mask] > 0).all()
        # 1. Depth back-projected with cameras.json lands on the mesh surface.
        pts, v, u = back_project(depth, mask, view)
        dist, idx, bary = closest_points(pts, tri)
        assert dist.max() < SURFACE_TOL, f"view {view['index']}: {dist.max():.2e} off the surface"
        # 2. Every mesh vertex projects inside the mask (within the pixel it rounds to, or next to it).
        w2c, k = np.asarray(view["world_to_camera"]), view["intrinsics"]
        pc = verts @ w2c[:3, :3].T + w2c[:3, 3]
        uu = np.round(k["fx"] * pc[:, 0] / pc[:, 2] + k["cx"]).astype(int)
        vv = np.round(k["fy"] * pc[:, 1] / pc[:, 2] + k["cy"]).astype(int)
        assert ((uu >= 0) & (uu < k["width"]) & (vv >= 0) & (vv < k["height"])).all()
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        assert grown[vv, uu].all()
        strictly = mask[vv, uu].mean()
        assert strictly > 0.5
        # 3. Rendered world normals agree with the mesh's (face normals for flat-shaded files,
        # interpolated vertex normals for smooth ones), facing the camera.
        n = nw[v, u].astype(np.float64)
        if smooth:
            expected = np.einsum("nk,nkd->nd", bary, vnormals[faces[idx]])
            expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        else:
            expected = fn[idx]
        cam_pos = np.linalg.inv(w2c)[:3, 3]
        facing = np.sign(((cam_pos - pts) * fn[idx]).sum(1))[:, None]
        cos = (n * expected * facing).sum(1)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert np.median(angle) < 2.0, f"view {view['index']}: median angle {np.median(angle):.2f}"
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
        # 4. Camera-frame normals are the world normals rotated into the OpenCV camera.
        assert np.allclose(nc[mask], nw[mask] @ w2c[:3, :3].T, atol=1e-5)
        assert (nc[mask][:, 2] <= 1e-4).all(), "normals face the camera (OpenCV camera looks down +z)"
    return cameras


# ---------------------------------------------------------------- tests


def test_dataset_run_renders_every_good_asset_and_records_the_broken_one(dataset, assets):
    out, proc = dataset
    assert proc.returncode == 3, proc.stdout + proc.stderr  # 3: some asset failed
    assert "6 rendered, 0 skipped (already complete), 1 failed" in proc.stdout, proc.stdout + proc.stderr
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["name"] for f in failures] == ["broken"]
    assert failures[0]["error"] and not failures[0]["ok"]
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
