"""Training preprocessing: one .npz per asset, resumable batches, failures recorded, genus."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.mesh import sampling
from backend.mesh.io import save_mesh
from backend.mesh.metrics import genus, is_oriented, is_watertight
from backend.mesh.remesh.watertight import watertight
from backend.mesh.types import Mesh
from backend.preprocess import PreprocessOptions, preprocess_dir, preprocess_mesh
from tests import meshes
from tests.backend.server_process import REPO

#: Small counts: the tests check shapes and invariants, not sample quality.
SMALL = {"resolution": 32, "n_surface": 400, "n_sdf_uniform": 300, "n_sdf_near": 200, "n_salient": 64}

EXPECTED = {
    "surface_points": ((400, 3), np.float32),
    "surface_normals": ((400, 3), np.float32),
    "sdf_points": ((500, 3), np.float32),
    "sdf_values": ((500,), np.float32),
    "sdf_group": ((500,), np.int8),
    "salient_points": ((64, 3), np.float32),
    "salient_mask": ((64,), np.bool_),
    "center": ((3,), np.float64),
    "scale": ((), np.float64),
    "genus": ((), np.int64),
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _check_npz(path, *, source_faces: int | None = None) -> dict:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key, (shape, dtype) in EXPECTED.items():
        assert data[key].shape == shape and data[key].dtype == dtype, key
    v, f = data["watertight_vertices"], data["watertight_faces"]
    assert v.dtype == np.float32 and f.dtype == np.int32 and v.shape[1] == 3 and f.shape[1] == 3
    assert is_watertight(f) and is_oriented(f)
    # Everything lives in the canonical box.
    assert np.abs(v).max() <= 1.0 and np.abs(data["surface_points"]).max() <= 1.0
    assert np.abs(data["sdf_points"][data["sdf_group"] == 0]).max() <= 1.0
    assert np.allclose(np.linalg.norm(data["surface_normals"], axis=1), 1.0, atol=1e-5)
    # The stored values are the signed distance to the stored mesh.
    again = sampling.signed_distance(v.astype(np.float64), f, data["sdf_points"].astype(np.float64))
    assert np.abs(again - data["sdf_values"]).max() < 1e-5
    meta = json.loads(str(data["metadata"]))
    assert meta["options"]["seed"] == 0 and meta["options"]["n_salient"] == 64 and meta["watertight"]["faces"] == len(f)
    assert meta["watertight"]["genus"] == int(data["genus"])
    if source_faces is not None:
        assert meta["input"]["faces"] == source_faces
    return data


def test_preprocess_command_end_to_end_resumes_and_records_failures(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    v, f = meshes.broken_mesh()
    save_mesh(Mesh(v, f), src / "torus.ply")
    save_mesh(Mesh(*meshes.sphere_with_holes()), src / "nested" / "ball.obj")
    (src / "corrupt.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n")
    args = ("preprocess", str(src), "--out", str(out), "--resolution", "32", "--surface", "400",
            "--sdf-uniform", "300", "--sdf-near", "200", "--salient", "64", "--seed", "0")

    run = _cli(*args)
    assert run.returncode == 1, run.stderr                           # a failure is reported, the rest done
    assert "Traceback" not in run.stderr
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("torus.ply: faces ") and "genus" in line for line in lines)
    assert any(line.startswith("corrupt.obj: failed") and "NaN" in line for line in lines)
    assert lines[-1].startswith("2 done, 0 skipped, 1 failed")
    torus = _check_npz(out / "torus.npz", source_faces=len(f))
    _check_npz(out / "nested" / "ball.npz")
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [x["input"] for x in failures] == ["corrupt.obj"] and failures[0]["type"] == "BadMesh"
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["name"] for m in manifest) == ["nested/ball.obj", "torus.ply"]
    assert not list(out.rglob("*.part"))

    stamp = (out / "torus.npz").stat().st_mtime_ns
    run = _cli(*args)
    assert "torus.ply: skipped" in run.stdout and "0 done, 2 skipped, 1 failed" in run.stdout
    assert (out / "torus.npz").stat().st_mtime_ns == stamp
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    assert torus["salient_mask"].dtype == np.bool_


def test_preprocess_is_reproducible_by_seed(tmp_path):
    mesh = Mesh(*meshes.torus(1.0, 0.4, 24, 12))
    one = preprocess_mesh(mesh, tmp_path / "a", name="t", seed=5, **SMALL)
    preprocess_mesh(mesh, tmp_path / "b", name="t", seed=5, **SMALL)
    preprocess_mesh(mesh, tmp_path / "c", name="t", seed=6, **SMALL)
    a, b, c = (np.load(tmp_path / d / "t.npz") for d in "abc")
    for key in ("surface_points", "sdf_points", "sdf_values", "salient_points"):
        assert np.array_equal(a[key], b[key]) and not np.array_equal(a[key], c[key]), key
    assert one["genus"] == 1 and one["faces_in"] == len(mesh.faces) and one["output"].endswith("t.npz")


def test_preprocess_checks_options_before_any_work(tmp_path):
    save_mesh(Mesh(*meshes.cube()), tmp_path / "in" / "cube.stl")
    with pytest.raises(ValueError, match="n_surface"):
        preprocess_dir(tmp_path / "in", tmp_path / "out", show_progress=False, n_surface=-1)
    with pytest.raises(ValueError, match="unknown preprocess option"):
        preprocess_dir(tmp_path / "in", tmp_path / "out", show_progress=False, n_points=5)
    with pytest.raises(ValueError, match="resolution"):
        PreprocessOptions(resolution=8)
    with pytest.raises(ValueError, match="name"):
        preprocess_mesh(Mesh(*meshes.cube()), tmp_path / "out")
    assert not (tmp_path / "out" / "cube.npz").exists()


def test_two_inputs_with_one_output_name_keep_the_first(tmp_path):
    save_mesh(Mesh(*meshes.cube()), tmp_path / "in" / "cube.obj")
    save_mesh(Mesh(*meshes.cube(0.5)), tmp_path / "in" / "cube.stl")
    records = []
    totals = preprocess_dir(tmp_path / "in", tmp_path / "out", show_progress=False, on_asset=records.append, **SMALL)
    assert totals["done"] == 1 and totals["failed"] == 1
    assert [r["status"] for r in records] == ["done", "failed"] and "cube.obj" in records[1]["error"]


def test_genus_of_sphere_torus_and_double_torus():
    assert genus(meshes.uv_sphere()[1]) == 0
    assert genus(meshes.torus()[1]) == 1
    # Two tori side by side whose tubes overlap: their watertight union has two handles.
    va, fa = meshes.torus(1.0, 0.4, 32, 12)
    vb = va + [2.6, 0.0, 0.0]
    union = watertight(np.vstack([va, vb]), np.vstack([fa, fa + len(va)]), resolution=48)
    assert genus(union.faces) == 2
    with pytest.raises(ValueError, match="closed"):
        genus(meshes.open_box()[1])
