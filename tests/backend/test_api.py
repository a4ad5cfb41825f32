"""The /v1 job API over real HTTP against a real backend process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import time

import numpy as np
import pytest
import trimesh

from tests import meshes
from tests.backend.server_process import BackendProcess

pytestmark = pytest.mark.slow


def _glb(vertices, faces) -> bytes:
    return trimesh.Trimesh(vertices, faces, process=False).export(file_type="glb")


def _submit(client, data: bytes, params: dict | None = None, filename: str = "mesh.glb", raw_params: str | None = None):
    spec = raw_params if raw_params is not None else json.dumps(
        {"pipeline": "watertight", "params": params or {"resolution": 32}})
    return client.post("/v1/jobs", data={"params": spec}, files={"mesh": (filename, data, "application/octet-stream")})


def _wait(client, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend")
    backend = BackendProcess(root / "state", root / "data", "--max-upload-mb", "2").start()
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def test_health_is_open_and_lists_watertight(server):
    with server.client(token="") as anonymous:
        health = anonymous.get("/v1/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["pipelines"]["watertight"]["properties"]["resolution"]["maximum"] == 1024


@pytest.mark.parametrize("token", ["", "wrong-token"])
@pytest.mark.parametrize("method,path", [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
                                         ("DELETE", "/v1/jobs/x"), ("GET", "/v1/jobs/x/result")])
def test_every_job_call_needs_the_token(server, token, method, path):
    with server.client(token=token) as c:
        answer = c.request(method, path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized" and "token" in answer.json()["message"]


def test_state_file_is_private_and_server_listens_on_loopback_only(server):
    assert stat.S_IMODE(os.stat(server.state_file).st_mode) == 0o600
    port = json.loads(server.state_file.read_text())["port"]
    # /proc/net/tcp lists listening sockets with their local address in hex: 0100007F is 127.0.0.1.
    listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    ours = [cols[1] for cols in listening if int(cols[1].split(":")[1], 16) == port and cols[3] == "0A"]
    assert ours == [f"0100007F:{port:04X}"]


def test_job_lifecycle(client):
    v, f = meshes.sphere_with_holes()
    answer = _submit(client, _glb(v, f), {"resolution": 32})
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["state"] in ("queued", "running") and job["params"] == {"resolution": 32, "keep": "all", "cavities": "fill", "target_faces": None, "sharp_features": True}
    job = _wait(client, job["id"])
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["result"]["summary"]["watertight"] is True
    result = client.get(f"/v1/jobs/{job['id']}/result")
    assert result.status_code == 200 and result.headers["content-type"] == "model/gltf-binary"
    mesh = trimesh.load(io.BytesIO(result.content), file_type="glb", force="mesh")
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert len(mesh.faces) == job["result"]["summary"]["faces"]
    assert client.get("/v1/jobs").json()["jobs"][0]["id"] == job["id"]
    missing = client.get(f"/v1/jobs/{job['id']}/result", params={"name": "../job.json"})
    assert missing.status_code == 404


def test_unknown_job_is_404_and_unfinished_result_is_409(client):
    assert client.get("/v1/jobs/nope").json()["code"] == "not_found"
    v, f = meshes.uv_sphere(16, 32)
    job = _submit(client, _glb(v, f), {"resolution": 512}).json()
    early = client.get(f"/v1/jobs/{job['id']}/result")
    client.delete(f"/v1/jobs/{job['id']}")
    assert early.status_code == 409 and early.json()["code"] == "not_ready"


def test_cancel_stops_a_running_job(client):
    v, f = meshes.uv_sphere(32, 64)
    job = _submit(client, _glb(v, f), {"resolution": 512}).json()
    _wait(client, job["id"], states=("running",))
    answer = client.delete(f"/v1/jobs/{job['id']}")
    assert answer.status_code == 200
    job = _wait(client, job["id"], timeout=30)
    assert job["state"] == "cancelled" and job["result"] is None


def _obj(text: str) -> bytes:
    return text.encode()


@pytest.mark.parametrize("data,status,code,words", [
    (b"", 422, "bad_mesh", "empty"),
    (b"\x00\x01garbage" * 10, 415, "unsupported_format", "GLB, OBJ, PLY or STL"),
    (_obj("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n"), 422, "bad_mesh", "NaN"),
    (_obj("v 0 0 0\nv 1 0 0\nv inf 1 0\nf 1 2 3\n"), 422, "bad_mesh", "infinite"),
    (_obj("v 0 0 0\nv 1 0 0\nv 0 1 0\n"), 422, "bad_mesh", "no triangles"),
    (b"glTF\x02\x00\x00\x00garbage-after-the-magic", 422, "bad_mesh", "could not be read"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
     b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
     422, "bad_mesh", "face indices"),
])
def test_bad_uploads_get_a_message(client, data, status, code, words):
    answer = _submit(client, data)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code and words in body["message"], body


def test_upload_over_the_cap_is_413(client):
    answer = _submit(client, b"solid x\n" + b" " * (3 * 2**20))
    assert answer.status_code == 413 and answer.json()["code"] == "too_large"
    assert "--max-upload-mb" in answer.json()["message"]


@pytest.mark.parametrize("spec,words", [
    ("not json", "must be JSON"),
    (json.dumps({"pipeline": "nope"}), "Unknown pipeline"),
    (json.dumps({"pipeline": "watertight", "params": {"resolution": 4}}), "resolution"),
    (json.dumps({"pipeline": "watertight", "params": {"resolution": "high"}}), "resolution"),
    (json.dumps({"pipeline": "watertight", "params": {"colour": 1}}), "colour"),
    (json.dumps({"pipeline": "watertight", "extra": 1}), "extra"),
])
def test_bad_params_get_a_message(client, spec, words):
    v, f = meshes.cube()
    answer = _submit(client, _glb(v, f), raw_params=spec)
    assert answer.status_code == 422 and answer.json()["code"] == "bad_params"
    assert words in answer.json()["message"]


def test_jobs_survive_a_restart_and_a_killed_job_is_reported_failed(tmp_path):
    backend = BackendProcess(tmp_path, tmp_path / "data").start()
    try:
        with backend.client() as c:
            v, f = meshes.cube()
            done = _wait(c, _submit(c, _glb(v, f), {"resolution": 32}).json()["id"])
            v, f = meshes.uv_sphere(32, 64)
            running = _submit(c, _glb(v, f), {"resolution": 1024}).json()
            _wait(c, running["id"], states=("running",))
    finally:
        backend.stop(signal.SIGKILL)

    backend.start()
    try:
        with backend.client() as c:
            jobs = {j["id"]: j for j in c.get("/v1/jobs").json()["jobs"]}
            assert jobs[done["id"]]["state"] == "done"
            assert c.get(f"/v1/jobs/{done['id']}/result").status_code == 200
            killed = jobs[running["id"]]
            assert killed["state"] == "failed" and killed["error"]["code"] == "interrupted"
            assert "Submit it again" in killed["error"]["message"]
    finally:
        backend.stop()
