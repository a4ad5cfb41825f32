"""The /v1 job API over real HTTP against a real backend process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import platform
import os
import signal
import stat
import time

import numpy as np
import pytest
import trimesh

from backend.mesh.io import mesh_to_bytes
from tests import meshes
from tests.backend.mesh.texture.assets import sphere_source, synthesize_views
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


def test_health_says_which_python_runs_the_backend_and_what_it_lacks(server):
    with server.client(token="") as anonymous:
        runtime = anonymous.get("/v1/health").json()["runtime"]
    assert runtime["python"] == platform.python_version() and runtime["executable"]
    assert runtime["kernels"] in ("compiled", "numpy")
    assert runtime["unavailable"] == {}            # this environment has every optional package


def test_a_pipeline_whose_package_is_missing_says_so_and_refuses_only_the_jobs_that_need_it(tmp_path):
    """As on a platform without xatlas and Instant Meshes builds (an Intel Mac): health names the
    gap, a job that needs the missing package gets a 501 with what to install, not a failure deep in
    the job, and the modes that do without it still run."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # sitecustomize runs at the server's start-up (and its workers'): it blocks the modules the standard way.
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['xatlas'] = sys.modules['pyinstantmeshes'] = sys.modules['torch'] = None\n")
    backend = BackendProcess(tmp_path / "state", tmp_path / "data", python_path=(str(hide),)).start()
    try:
        with backend.client(token="") as anonymous:
            unavailable = anonymous.get("/v1/health").json()["runtime"]["unavailable"]
        assert set(unavailable) == {"artist", "points_to_mesh"} and "pyinstantmeshes" in unavailable["artist"]
        with backend.client() as c:
            refused = [_submit_texture(c, dict(zip(("source", "mesh"), _texture_files())),
                                       {"texture_size": 128, "uv_method": "xatlas"}),
                       _submit(c, _glb(*meshes.uv_sphere(10, 20)), raw_params=json.dumps(
                           {"pipeline": "artist", "params": {"faces": 200, "mode": "quads"}})),
                       c.post("/v1/jobs", data={"params": json.dumps(
                           {"pipeline": "text_to_mesh", "params": {"prompt": "a chair"}})})]
            assert "llama-mesh" in refused[2].json()["message"]                     # what does without it
            for answer, package in zip(refused, ("xatlas", "pyinstantmeshes", "torch")):
                assert answer.status_code == 501, answer.text
                assert answer.json()["code"] == "missing_dependency"
                assert package in answer.json()["message"] and "pip install" in answer.json()["message"]
            accepted = [_submit_texture(c, dict(zip(("source", "mesh"), _texture_files()))),
                        _submit(c, _glb(*meshes.uv_sphere(10, 20)), raw_params=json.dumps(
                            {"pipeline": "artist", "params": {"faces": 200, "mode": "triangles"}}))]
            for answer in accepted:
                assert answer.status_code == 201, answer.text
                job = _wait(c, answer.json()["id"])
                assert job["state"] == "done", job
            texture = c.get(f"/v1/jobs/{accepted[0].json()['id']}").json()
            assert texture["result"]["summary"]["uv_method"] == "project"           # auto without xatlas
    finally:
        backend.stop()


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


def test_jobs_survive_a_restart_and_a_killed_job_runs_again(tmp_path):
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
            assert killed["state"] in ("queued", "running") and killed["error"] is None, killed
            assert killed["attempts"] >= 1
            c.delete(f"/v1/jobs/{running['id']}")
    finally:
        backend.stop()


# -- texture jobs: several named inputs ------------------------------------------------------


def _texture_files():

    source, _ = sphere_source(12, 24)
    target_v, target_f = meshes.uv_sphere(10, 20)
    return mesh_to_bytes(source, "glb"), _glb(target_v, target_f)


def _submit_texture(client, files: dict, params: dict | None = None, pipeline: str = "texture"):
    spec = json.dumps({"pipeline": pipeline, "params": params if params is not None else {"texture_size": 128}})
    return client.post("/v1/jobs", data={"params": spec},
                       files={k: (f"{k}.bin", v, "application/octet-stream") for k, v in files.items()})


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _glb_json(glb: bytes) -> dict:
    import struct

    length = struct.unpack_from("<I", glb, 12)[0]
    return json.loads(glb[20:20 + length])


def test_health_says_which_inputs_each_pipeline_takes(server):
    with server.client(token="") as anonymous:
        health = anonymous.get("/v1/health").json()
    texture = health["pipeline_inputs"]["texture"]
    assert set(texture["accepts"]) == {"mesh", "source", "views"}
    assert texture["required"] == ["mesh"] and texture["one_of"] == [["source", "views"]]
    assert health["pipeline_inputs"]["watertight"]["accepts"].keys() == {"mesh"}
    assert "texture_size" in health["pipelines"]["texture"]["properties"]


def test_texture_job_with_a_source_end_to_end(client, server):
    source, target = _texture_files()
    answer = _submit_texture(client, {"mesh": target, "source": source})
    assert answer.status_code == 201, answer.text
    job = _wait(client, answer.json()["id"])
    assert job["state"] == "done", job
    assert job["inputs"] == ["mesh", "source"]
    summary = job["result"]["summary"]
    assert summary["texture_size"] == 128 and summary["normal_map"] is True and summary["colour_from"] == "source"
    result = client.get(f"/v1/jobs/{job['id']}/result")
    doc = _glb_json(result.content)
    primitive = doc["meshes"][0]["primitives"][0]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(primitive["attributes"])
    material = doc["materials"][primitive["material"]]
    assert "baseColorTexture" in material["pbrMetallicRoughness"] and "normalTexture" in material
    png = client.get(f"/v1/jobs/{job['id']}/result", params={"name": "base_color.png"})
    assert png.status_code == 200
    from PIL import Image

    assert Image.open(io.BytesIO(png.content)).size == (128, 128)
    # Every upload is kept in the job's folder, so the job can run again after a restart.
    folder = server.data_dir / "jobs" / job["id"]
    assert (folder / "source.glb").read_bytes() == source and (folder / "input.glb").read_bytes() == target


def test_texture_job_from_posed_views(client, tmp_path):
    v, f = meshes.uv_sphere(12, 24)
    folder = synthesize_views(v, f, tmp_path / "views", n_views=4, size=64)
    views = _zip_bytes({p.name: p.read_bytes() for p in folder.iterdir()})
    answer = _submit_texture(client, {"mesh": _glb(v, f), "views": views}, {"texture_size": 128, "normal_map": False})
    assert answer.status_code == 201, answer.text
    job = _wait(client, answer.json()["id"])
    assert job["state"] == "done", job
    assert job["result"]["summary"]["colour_from"] == "views" and job["inputs"] == ["mesh", "views"]


def _views_zip_without(name_to_drop: str | None = None, extra: dict | None = None) -> bytes:
    cameras = {"views": [{"intrinsics": {"fx": 50, "fy": 50, "cx": 15.5, "cy": 15.5, "width": 32, "height": 32},
                          "world_to_camera": np.eye(4).tolist(), "files": {"rgb": "000_rgb.png"}}]}
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (32, 32), (200, 100, 50, 255)).save(buf, "PNG")
    files = {"cameras.json": json.dumps(cameras).encode(), "000_rgb.png": buf.getvalue(), **(extra or {})}
    files.pop(name_to_drop, None)
    return _zip_bytes(files)


@pytest.mark.parametrize("files,status,code,words", [
    ({"views": b"this is not a zip"}, 422, "bad_views", "not a readable ZIP"),
    ({"views": "no-cameras"}, 422, "bad_views", "no cameras.json"),
    ({"views": "traversal"}, 422, "bad_views", "outside the archive"),
    ({"views": "bad-image"}, 422, "bad_views", "not an image"),
    ({"source": "uncoloured"}, 422, "bad_source", "no colour"),
    ({"source": "good", "views": "good"}, 422, "bad_inputs", "exactly one of 'source' or 'views'"),
    ({}, 422, "bad_inputs", "exactly one of 'source' or 'views'"),
    ({"source": "good", "extra": b"x"}, 422, "bad_inputs", "does not take 'extra'"),
])
def test_bad_texture_inputs_get_a_message(client, files, status, code, words):
    source, target = _texture_files()
    made = {"no-cameras": _views_zip_without("cameras.json"),
            "traversal": _zip_bytes({"../cameras.json": b"{}"}),
            "bad-image": _views_zip_without(extra={"000_rgb.png": b"\x89PNG\r\n\x1a\n broken"}),
            "uncoloured": _glb(*meshes.cube()),
            "good": None}
    uploads = {"mesh": target}
    for name, value in files.items():
        if isinstance(value, str):
            value = made[value] if made[value] is not None else (source if name == "source" else _views_zip_without())
        uploads[name] = value
    answer = _submit_texture(client, uploads)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code and words in body["message"], body
    assert "Traceback" not in body["message"]


def test_inputs_a_pipeline_does_not_take_or_needs_are_named(client):
    source, target = _texture_files()
    watertight = _submit_texture(client, {"mesh": target, "source": source}, {"resolution": 32}, pipeline="watertight")
    assert watertight.status_code == 422 and "does not take 'source'" in watertight.json()["message"]
    missing = _submit_texture(client, {"source": source})
    assert missing.status_code == 422 and missing.json()["code"] == "bad_inputs"
    assert "needs 'mesh'" in missing.json()["message"]


def test_the_size_cap_counts_all_uploads_together(client):
    # Each file under the 2 MB cap of this server, together over it.
    big = b"solid x\n" + b" " * (1200 * 1024)
    answer = _submit_texture(client, {"mesh": big, "source": big})
    assert answer.status_code == 413 and answer.json()["code"] == "too_large"


def test_a_queued_texture_job_runs_after_a_restart_from_its_stored_inputs(tmp_path):
    backend = BackendProcess(tmp_path, tmp_path / "data").start()
    try:
        with backend.client() as c:
            v, f = meshes.uv_sphere(32, 64)
            running = _submit(c, _glb(v, f), {"resolution": 1024}).json()
            _wait(c, running["id"], states=("running",))
            source, target = _texture_files()
            queued = _submit_texture(c, {"mesh": target, "source": source}).json()
            assert queued["state"] == "queued"
    finally:
        backend.stop(signal.SIGKILL)
    backend.start()
    try:
        with backend.client() as c:
            job = _wait(c, queued["id"], timeout=300.0)   # after the 1024 job runs again (~1 min, more on a busy machine)
            assert job["state"] == "done", job
            assert c.get(f"/v1/jobs/{queued['id']}/result").status_code == 200
    finally:
        backend.stop()


# -- hardening -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example"])
def test_requests_addressed_to_another_host_are_refused(server, host):
    # A DNS-rebinding page reaches 127.0.0.1 under its own name; its requests carry that name.
    with server.client(token="") as anonymous:
        answer = anonymous.get("/v1/health", headers={"Host": host})
    assert answer.status_code == 421 and answer.json()["code"] == "bad_host", answer.text
    with server.client(token="") as anonymous:
        for good in ("127.0.0.1", "localhost:1234", "LOCALHOST"):
            assert anonymous.get("/v1/health", headers={"Host": good}).status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_no_schema_or_docs_pages(client, path):
    assert client.get(path).status_code == 404


def test_a_slash_in_a_job_id_is_a_404_with_a_message(client):
    answer = client.get("/v1/jobs/%2F")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found", answer.text


def test_job_files_and_folders_are_private(client, server):
    job = _wait(client, _submit(client, _glb(*meshes.cube()), {"resolution": 32}).json()["id"])
    folder = server.data_dir / "jobs" / job["id"]
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_the_listening_socket_says_tcp_so_asyncio_sets_nodelay():
    import socket

    from backend.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


# -- validation at the door ------------------------------------------------------------------


def _gltf_with(primitive_extra: dict, scale=None) -> bytes:
    """A one-triangle GLB whose primitive (and node) carry the given odd fields."""
    import struct

    positions = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 36}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, **primitive_extra}]}],
           "nodes": [{"mesh": 0, **({"scale": scale} if scale else {})}], "scenes": [{"nodes": [0]}], "scene": 0}
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", 36, 0x004E4942) + positions
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


@pytest.mark.parametrize("data,words", [
    (_obj("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n"), "no surface"),
    (_obj("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n"), "no surface"),                  # collinear
    (_gltf_with({}, scale=[0, 0, 0]), "no surface"),                                  # a zero-scale node
    (_obj("v 1e12 0 0\nv 1000000000000.01 0 0\nv 1e12 0.01 0\nf 1 2 3\n"), "too far"),
])
def test_meshes_no_pipeline_can_work_on_are_refused_at_upload(client, data, words):
    # Before: accepted (201), then failed as `internal` ("vertices span 0.0", "faces have zero total area").
    answer = _submit(client, data)
    assert answer.status_code == 422 and answer.json()["code"] == "bad_mesh", answer.text
    assert words in answer.json()["message"]


@pytest.mark.parametrize("extensions", [[], None, "x"])
def test_odd_glb_extension_fields_are_read_not_a_500(client, extensions):
    answer = _submit(client, _gltf_with({"extensions": extensions}))
    assert answer.status_code in (201, 422), answer.text
    if answer.status_code == 201:
        assert _wait(client, answer.json()["id"])["state"] == "done"


def test_deeply_nested_params_are_a_422(client):
    answer = _submit(client, _glb(*meshes.cube()), raw_params="[" * 100_000 + "]" * 100_000)
    assert answer.status_code == 422 and answer.json()["code"] == "bad_params", answer.text


def test_a_deeply_nested_cameras_json_is_a_422(client):
    views = _zip_bytes({"cameras.json": b'{"views": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"})
    source, target = _texture_files()
    answer = _submit_texture(client, {"mesh": target, "views": views})
    assert answer.status_code == 422 and answer.json()["code"] == "bad_views", answer.text


def test_a_chunked_upload_is_refused_once_it_passes_the_cap_not_after_it_arrived(server):
    # Before: a 2 GB chunked body (no Content-Length) was written to a temp file whole, then 413.
    # Here the body never ends; the answer must come once ~2 MB (the test server's cap) are in.
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {server.token}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = b'--b0undary\r\nContent-Disposition: form-data; name="mesh"; filename="m.obj"\r\n\r\n'
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = b"v 0 0 0\n" * (1 << 17)                     # 1 MB
        for _ in range(4):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        answer = b""
        while b'"message"' not in answer and (data := sock.recv(65536)):
            answer += data
        answer = answer.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"too_large"' in answer and "--max-upload-mb" in answer


def test_too_many_form_parts_have_a_documented_code(client):
    files = [("mesh", (f"m{k}.obj", b"v 0 0 0\n", "application/octet-stream")) for k in range(8)]
    answer = client.post("/v1/jobs", data={"params": json.dumps({"pipeline": "watertight"})}, files=files)
    assert answer.status_code == 400 and answer.json()["code"] == "bad_request", answer.text
    assert answer.json()["message"]


def test_an_upload_that_stops_arriving_is_closed_with_a_408(tmp_path):
    # Before: a request whose body stalled stayed open for more than 90 s.
    import socket
    from urllib.parse import urlsplit

    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--upload-stall-seconds", "1").start()
    try:
        url = urlsplit(backend.url)
        with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
            sock.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {backend.token}\r\n"
                          "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n").encode())
            start = time.monotonic()
            answer = b""
            while b'"message"' not in answer and (data := sock.recv(65536)):
                answer += data
        assert answer.startswith(b"HTTP/1.1 408") and b"upload_stalled" in answer, answer[:300]
        assert time.monotonic() - start < 10
    finally:
        backend.stop()


def test_a_glb_with_an_external_buffer_gets_a_sentence_not_a_python_error(client):
    # Before: "TypeError: 'NoneType' object is not subscriptable".
    from backend.reliability import RAW_TEXT

    glb = _gltf_with({})
    length = int.from_bytes(glb[12:16], "little")
    doc = json.loads(glb[20:20 + length])
    doc["buffers"][0]["uri"] = "mesh.bin"
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    import struct

    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    answer = _submit(client, struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert not RAW_TEXT.search(message), message
