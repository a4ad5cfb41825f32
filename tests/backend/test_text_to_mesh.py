"""text_to_mesh: both models on tiny weights made here, over real HTTP, with partial results from the worker."""

from __future__ import annotations

import json
import multiprocessing
import time

import numpy as np
import pytest

from backend.mesh.io import load_mesh
from backend.pipelines import get_pipeline
from tests.backend.server_process import BackendProcess
from tests.llm_models import tiny_mesh_lm as tiny_mesh_lm_folder
from tests.llm_models import tiny_transformers


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny_transformers(tmp_path_factory.mktemp("llama") / "tiny")


@pytest.fixture(scope="module")
def tiny_mesh_lm(tmp_path_factory):
    return tiny_mesh_lm_folder(tmp_path_factory.mktemp("meshlm") / "ckpt")


def _run(params: dict):
    pipeline = get_pipeline("text_to_mesh")
    stages = []
    result = pipeline.run({}, pipeline.parse_params(params), lambda f, s: stages.append((f, s)))
    return result, stages


def test_llama_mesh_format_through_transformers_and_the_repairs(tiny_llama):
    result, stages = _run({"prompt": "a chair", "model": "llama-mesh", "weights": str(tiny_llama), "seed": 1,
                           "temperature": 1.0, "max_faces": 40})
    summary = result.summary
    assert summary["runner"] == "transformers" and summary["faces_written"] >= 1
    assert summary["prompt_used"] == "Create a 3D model of a chair."
    assert set(summary["problems"]) <= {"duplicate face"}
    assert any(s.startswith("generating: ") for _, s in stages) and stages[-1] == (1.0, "done")
    assert result.mesh.vertices.min() >= -1.0 - 1e-9 and result.mesh.vertices.max() <= 1.0 + 1e-9
    closed, _ = _run({"prompt": "a chair", "model": "llama-mesh", "weights": str(tiny_llama), "seed": 1,
                      "temperature": 1.0, "max_faces": 40, "repair": "watertight"})
    assert closed.summary["closed"] and closed.summary["manifold"]
    assert closed.summary["faces_written"] == summary["faces_written"]   # same seed, same text


def test_the_meshsmith_model_writes_a_mesh_within_the_face_budget(tiny_mesh_lm):
    result, stages = _run({"prompt": "a stool", "weights": str(tiny_mesh_lm), "max_faces": 12, "temperature": 1.0})
    summary = result.summary
    assert summary["model"] == "meshsmith" and summary["weights_step"] == 3
    assert 1 <= summary["faces_written"] <= 12 and summary["faces"] == len(result.mesh.face_sizes
                                                                           if result.mesh.face_sizes is not None
                                                                           else result.mesh.faces)
    assert any(s.startswith("generating: ") for _, s in stages)


def test_missing_weights_fail_with_what_to_do(tmp_path):
    from backend.errors import BadParams

    with pytest.raises(BadParams, match="huggingface-cli download"):
        _run({"prompt": "a chair", "model": "llama-mesh", "weights": "someone/LLaMA-Mesh-GGUF"})
    with pytest.raises(BadParams, match="not a checkpoint folder"):
        _run({"prompt": "a chair", "weights": str(tmp_path)})


def test_the_worker_sends_partial_results_then_removes_them(tiny_mesh_lm, tmp_path):
    from backend.workers import PARTIAL_NAME, RESULT_NAME, run_job

    here, there = multiprocessing.Pipe()
    params = {"prompt": "a stool", "weights": str(tiny_mesh_lm), "max_faces": 12, "temperature": 1.0}
    final = run_job(there, "job1", "text_to_mesh", params, {}, tmp_path, None)
    messages = []
    while here.poll():
        messages.append(here.recv())
    assert final[0] == "done", final
    partials = [m for m in messages if m[0] == "partial"]
    assert partials and partials[0][1] == PARTIAL_NAME and partials[0][2] >= 1
    assert (tmp_path / RESULT_NAME).is_file() and not (tmp_path / PARTIAL_NAME).exists()


@pytest.mark.slow
def test_text_to_mesh_over_http(tiny_llama, tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data").start()
    try:
        with backend.client() as client:
            spec = {"pipeline": "text_to_mesh", "params": {"prompt": "a cup", "model": "llama-mesh",
                                                           "weights": str(tiny_llama), "seed": 2, "max_faces": 30}}
            answer = client.post("/v1/jobs", data={"params": json.dumps(spec)})
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            assert answer.json()["inputs"] == []
            deadline = time.monotonic() + 120
            while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert job["state"] == "done", job
            assert job["partial"] is None
            assert client.get(f"/v1/jobs/{job_id}/partial").status_code == 404
            result = client.get(f"/v1/jobs/{job_id}/result")
            (tmp_path / "r.glb").write_bytes(result.content)
            assert len(load_mesh(tmp_path / "r.glb").faces) >= job["result"]["summary"]["faces_written"]
            health = client.get("/v1/health").json()
            assert "text_to_mesh" in json.dumps(health)
    finally:
        backend.stop()


def _ply_points(points, normals=None) -> bytes:
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    header = "ply\nformat ascii 1.0\nelement vertex %d\n" % len(points) + \
        "".join(f"property float {n}\n" for n in names) + "end_header\n"
    rows = points if normals is None else np.concatenate([points, normals], 1)
    return (header + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows) + "\n").encode()


def test_points_to_mesh_from_a_mesh_and_from_point_clouds(tiny_mesh_lm):
    from backend.inputs import INPUT_KINDS
    from backend.mesh.io import mesh_to_bytes
    from backend.mesh.points import load_points_bytes
    from backend.mesh.types import Mesh
    from tests import meshes

    pipeline = get_pipeline("points_to_mesh")
    vertices, faces = meshes.uv_sphere(12, 24, radius=3.0)
    vertices = vertices + np.array([10.0, 0.0, 0.0])
    from_mesh = load_points_bytes(mesh_to_bytes(Mesh(vertices, faces), "obj"))
    assert from_mesh.from_mesh and len(from_mesh.points) == 4096
    params = pipeline.parse_params({"weights": str(tiny_mesh_lm), "max_faces": 10, "temperature": 1.0})
    result = pipeline.run({"points": from_mesh}, params, lambda f, s: None)
    summary = result.summary
    assert 1 <= summary["faces"] <= 10 and summary["chamfer_l1"] > 0
    # the deterministic reference hugs the sphere; a random model does not
    assert summary["artist"]["chamfer_l1"] < min(0.1, summary["chamfer_l1"])
    # the result is in the input's frame and scale: inside the sphere's box (to a quantization step)
    box_low, box_high = vertices.min(0) - 0.1, vertices.max(0) + 0.1
    assert np.all(result.mesh.vertices >= box_low) and np.all(result.mesh.vertices <= box_high)
    # a PLY cloud without normals gets normals facing out; with normals they are kept
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    bare = load_points_bytes(_ply_points(p))
    assert not bare.had_normals and np.mean(np.einsum("ij,ij->i", bare.normals, p)) > 0.95
    given = load_points_bytes(_ply_points(p, -p))
    assert given.had_normals and np.allclose(given.normals, -p, atol=1e-4)
    result = pipeline.run({"points": bare}, params, lambda f, s: None)
    assert "artist" not in result.summary and result.summary["input_normals"] == "estimated"
    from backend.errors import BadMesh
    with pytest.raises(BadMesh, match="usable points"):
        INPUT_KINDS["points"].check(_ply_points(p[:5]), "The uploaded points file")
