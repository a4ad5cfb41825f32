"""addon/client.py, connection.py, backend_process.py against a real backend (bpy-free)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from addon import glb
from addon.backend_process import BackendProcess, guess_backend_dir, probe_python, resolve_python, start_backend
from addon.client import Client
from addon.connection import normalize_address, resolve_connection, state_dir
from addon.errors import START_HINT, BackendError, BackendStartError, BackendUnavailable

from .conftest import REPO, backend_python
from .test_glb import CUBE_POSITIONS, CUBE_TRIANGLES

CUBE_GLB = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def client(backend) -> Client:
    return Client(backend.url, backend.token)


def wait_final(client: Client, job_id: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.is_final:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


# -- the add-on imports none of Blender for these modules ------------------------------------


def test_bpy_free_modules_import_without_blender():
    code = (
        "import sys; sys.modules['bpy'] = None; sys.modules['mathutils'] = None; sys.modules['numpy'] = None\n"
        "import addon, addon.client, addon.connection, addon.protocol, addon.jobs, addon.glb, addon.backend_process,"
        " addon.png, addon.corners, addon.views, addon.modes"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- state file and connection ----------------------------------------------------------------


def test_state_dir_follows_docs_api(tmp_path):
    assert state_dir({"MESHSMITH_STATE_DIR": "/s", "XDG_STATE_HOME": "/x"}, "linux") == Path("/s")
    assert state_dir({"XDG_STATE_HOME": "/x", "HOME": "/h"}, "linux") == Path("/x/meshsmith")
    assert state_dir({"HOME": "/h"}, "linux") == Path("/h/.local/state/meshsmith")
    assert state_dir({"LOCALAPPDATA": "C:/L", "HOME": "/h"}, "win32") == Path("C:/L/meshsmith")
    assert state_dir({"MESHSMITH_STATE_DIR": "/s", "LOCALAPPDATA": "C:/L"}, "win32") == Path("/s")


def test_resolve_connection_reads_the_state_file(tmp_path):
    (tmp_path / "backend.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9/", "token": "t0k", "pid": os.getpid(), "port": 9})
    )
    connection = resolve_connection(environ={"MESHSMITH_STATE_DIR": str(tmp_path)})
    assert (connection.url, connection.token, connection.pid) == ("http://127.0.0.1:9", "t0k", os.getpid())
    # An address from the preferences wins, and still uses the state file's token.
    override = resolve_connection("localhost:1234", environ={"MESHSMITH_STATE_DIR": str(tmp_path)})
    assert (override.url, override.token, override.source) == ("http://localhost:1234", "t0k", "preferences")


def test_missing_or_stale_state_file_means_not_running(tmp_path):
    env = {"MESHSMITH_STATE_DIR": str(tmp_path)}
    with pytest.raises(BackendUnavailable, match="no state file") as missing:
        resolve_connection(environ=env)
    assert START_HINT in missing.value.message
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "backend.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "t", "pid": dead.pid}))
    with pytest.raises(BackendUnavailable, match=f"process {dead.pid}, which has exited"):
        resolve_connection(environ=env)
    (tmp_path / "backend.json").write_text("{torn")
    with pytest.raises(BackendUnavailable, match="not valid JSON"):
        resolve_connection(environ=env)


def test_normalize_address():
    assert normalize_address(" 127.0.0.1:8765/ ") == "http://127.0.0.1:8765"
    with pytest.raises(ValueError, match="ftp"):
        normalize_address("ftp://host")


# -- HTTP against the real backend -------------------------------------------------------------


def test_health_needs_no_token(backend):
    health = Client(backend.url).health()
    assert health.status == "ok" and health.device
    assert "watertight" in health.pipelines
    assert health.describe() == f"running ({health.device})"


def test_the_runtime_line_says_why_the_kernels_are_numpy_in_the_backends_words():
    from addon.protocol import Health

    def line(**runtime) -> str:
        return Health.from_json({"status": "ok", "runtime": {"python": "3.11.7", **runtime}}).describe_runtime()

    assert line(kernels="compiled", kernels_note="") == "Python 3.11.7, compiled kernels"
    assert line(kernels="numpy", kernels_note="MESHSMITH_NATIVE=0") == \
        "Python 3.11.7, numpy kernels (about 2x slower: MESHSMITH_NATIVE=0)"
    assert line(kernels="numpy") == "Python 3.11.7, numpy kernels (about 2x slower: no compiled build for this platform)"


def test_submit_poll_download_list(client):
    job = client.submit("watertight", {"resolution": 32}, CUBE_GLB)
    assert job.pipeline == "watertight" and job.state in ("queued", "running", "done")
    final = wait_final(client, job.id)
    assert final.state == "done", final.error
    assert final.result is not None and "result.glb" in final.result.files
    mesh = glb.read_glb(client.result(job.id))
    assert mesh.triangle_count > 0
    # The result is in the frame of the upload: the 2 x 2 x 2 cube, within a voxel or two.
    for axis in range(3):
        values = mesh.positions[axis::3]
        assert min(values) == pytest.approx(-1.0, abs=0.2) and max(values) == pytest.approx(1.0, abs=0.2)
    assert client.jobs()[0].id == job.id


def test_cancel_a_big_job(client):
    job = client.submit("watertight", {"resolution": 512}, CUBE_GLB)
    client.cancel(job.id)
    assert wait_final(client, job.id, timeout=60).state == "cancelled"
    with pytest.raises(BackendError) as not_ready:
        client.result(job.id)
    assert not_ready.value.status in (404, 409)


def test_a_chain_runs_on_the_real_backend_each_result_feeding_the_next(client):
    """The add-on's chain logic against the real server, with the pipeline every backend has."""
    from addon.jobs import ChainStep, JobTracker, Phase, TrackedJob

    first = client.submit("watertight", {"resolution": 32}, CUBE_GLB)
    tracker = JobTracker()
    job = tracker.add(
        TrackedJob(
            id=first.id, client=client, pipeline="watertight", result_name="Cube_chain",
            next_steps=[ChainStep("watertight", {"resolution": 48, "target_faces": 200}, {})],
        )
    )  # fmt: skip
    imported: list[bytes] = []
    progress: list[float] = []
    deadline = time.monotonic() + 120
    while tracker.active() and time.monotonic() < deadline:
        tracker.poll_once(lambda j, data: imported.append(data) or j.result_name)
        progress.append(job.progress)
        time.sleep(0.1)
    assert job.phase is Phase.IMPORTED, job.message
    assert progress == sorted(progress) and progress[-1] == 1.0
    second = client.job(job.remote_id)
    assert job.remote_id != first.id and second.params["target_faces"] == 200
    assert client.job(first.id).finished <= second.created  # sent on only once the first was done
    (data,) = imported
    assert data == client.result(job.remote_id)
    mesh = glb.read_glb(data)
    assert 150 <= mesh.triangle_count <= 230
    for axis in range(3):  # still the 2 x 2 x 2 cube's frame after two remeshes
        values = mesh.positions[axis::3]
        assert min(values) == pytest.approx(-1.0, abs=0.25) and max(values) == pytest.approx(1.0, abs=0.25)


def test_submit_sends_extra_files_as_their_own_fields(client):
    with pytest.raises(BackendError) as refused:  # the field arrives, and watertight has no use for it
        client.submit("watertight", {"resolution": 32}, CUBE_GLB, files={"source": ("source.glb", CUBE_GLB)})
    assert refused.value.status == 422 and "'source'" in refused.value.message
    with pytest.raises(ValueError, match="field name 'mesh'"):
        client.submit("watertight", {}, CUBE_GLB, files={"mesh": ("m.glb", CUBE_GLB)})
    with pytest.raises(ValueError, match="files\\['views'\\] is empty"):
        client.submit("watertight", {}, CUBE_GLB, files={"views": ("views.zip", b"")})


def test_a_vertex_coloured_source_is_baked_into_a_texture(backend, client):
    if "texture" not in Client(backend.url).health().pipelines:
        pytest.skip("this backend offers no 'texture' pipeline")
    # Red on the top half of the cube (z > 0 in Blender axes), blue below; COLOR_0 is linear.
    colours = [c for i in range(0, 24, 3) for c in ((1.0, 0.0, 0.0, 1.0) if CUBE_POSITIONS[i + 2] > 0 else (0.0, 0.0, 1.0, 1.0))]
    source = glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES, colors=colours)
    job = client.submit("texture", {"texture_size": 64, "padding": 2, "normal_map": False}, CUBE_GLB,
                        files={"source": ("source.glb", source)})
    final = wait_final(client, job.id)
    assert final.state == "done", final.error
    result = glb.read_glb(client.result(job.id))
    assert result.uvs is not None and result.material.base_color.mime_type == "image/png"
    assert result.material.normal is None


def test_error_answers_become_backend_errors_with_their_message(backend, client):
    with pytest.raises(BackendError) as unauthorized:
        Client(backend.url, "wrong-token").jobs()
    assert (unauthorized.value.code, unauthorized.value.status) == ("unauthorized", 401)
    with pytest.raises(BackendError) as missing:
        client.job("no-such-job")
    assert (missing.value.code, missing.value.status) == ("not_found", 404)
    with pytest.raises(BackendError) as bad_params:
        client.submit("watertight", {"resolution": 5}, CUBE_GLB)
    assert bad_params.value.code == "bad_params" and bad_params.value.status == 422
    assert "resolution" in bad_params.value.message
    with pytest.raises(BackendError) as bad_file:
        client.submit("watertight", {"resolution": 64}, b"\x00\x01 definitely not a mesh")
    assert bad_file.value.code in ("unsupported_format", "bad_mesh") and bad_file.value.status in (415, 422)
    assert bad_file.value.message.endswith(".")


def test_a_proxy_setting_does_not_capture_local_calls(client, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert Client(client.url, client.token).health().status == "ok"


def test_connection_refused_says_how_to_start_the_backend():
    with pytest.raises(BackendUnavailable) as refused:
        Client(f"http://127.0.0.1:{free_port()}", "t").job("x")
    assert "nothing answers" in refused.value.message
    assert refused.value.message.endswith(START_HINT)


def test_client_checks_its_arguments():
    with pytest.raises(ValueError, match="url"):
        Client("127.0.0.1:8765")
    with pytest.raises(ValueError, match="mesh is empty"):
        Client("http://127.0.0.1:1").submit("watertight", {}, b"")


def test_a_job_without_a_mesh_sends_only_its_files(client):
    with pytest.raises(BackendError) as refused:   # nothing at all: the backend says what the pipeline needs
        client.submit("views_to_mesh", {"method": "hull"}, None)
    assert "exactly one of 'views' or 'grid'" in refused.value.message
    with pytest.raises(BackendError) as refused:   # a grid that is no image: the backend read what was sent
        client.submit("views_to_mesh", {"method": "hull"}, None, files={"grid": ("grid.png", b"not an image")})
    assert refused.value.code == "bad_views" and "not a readable image" in refused.value.message


# -- backend process --------------------------------------------------------------------------


def test_resolve_python_order(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("")
    assert resolve_python(str(fake), environ={}) == str(fake)
    assert resolve_python("", environ={"MESHSMITH_BACKEND_PYTHON": str(fake)}) == str(fake)
    with pytest.raises(BackendStartError, match="does not exist"):
        resolve_python(str(tmp_path / "missing"), environ={})
    with pytest.raises(BackendStartError, match="No Python found"):
        resolve_python("", environ={"PATH": str(tmp_path / "empty")})


def test_a_bundled_backend_runs_on_this_python_unless_one_is_named(tmp_path, monkeypatch):
    from addon import backend_process

    fake = tmp_path / "python"
    fake.write_text("")
    bundle = tmp_path / "bundled"
    monkeypatch.setattr(backend_process, "BUNDLED", bundle)
    assert backend_process.bundled_dir() == "" and not backend_process.uses_bundled("", environ={})
    (bundle / "backend").mkdir(parents=True)
    (bundle / "backend" / "__main__.py").write_text("")
    assert backend_process.bundled_dir() == str(bundle)
    assert resolve_python("", environ={"PATH": str(tmp_path / "empty")}) == sys.executable
    # A Python named in the preferences or the environment wins over the bundle.
    assert resolve_python(str(fake), environ={}) == str(fake)
    assert resolve_python("", environ={"MESHSMITH_BACKEND_PYTHON": str(fake)}) == str(fake)
    assert not backend_process.uses_bundled("", environ={"MESHSMITH_BACKEND_PYTHON": str(fake)})


def test_the_bundled_backend_imports_the_bundle_then_the_wheels_then_model_support(tmp_path, monkeypatch):
    """The bundled backend's imports come from the bundle first, then Blender's wheel folder, then
    model support: the newer copies pip put there of a shared dependency must not shadow the zip's pin."""
    from addon import backend_process

    bundle, site, support = tmp_path / "bundled", tmp_path / "site-packages", tmp_path / "model-support"
    (bundle / "backend").mkdir(parents=True)
    (bundle / "backend" / "__main__.py").write_text(
        "import json, os, shared_dependency\n"
        "print(json.dumps([os.environ['PYTHONPATH'], shared_dependency.WHERE]))\n")
    for folder in (site, support):
        folder.mkdir()
        (folder / "shared_dependency.py").write_text(f"WHERE = {folder.name!r}\n")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    extra = backend_process.bundled_paths(str(site), str(support))
    assert backend_process.bundled_paths(str(site), "") == (str(site),)      # model support not installed
    # The process runs in the bundle (its cwd, sys.path[0] under -m): the order is PYTHONPATH's.
    process = BackendProcess(sys.executable, backend_dir=str(bundle), extra_paths=extra, log_path=tmp_path / "log.txt")
    process.start()
    process._process.wait(30)
    process.stop()
    python_path, where = json.loads((tmp_path / "log.txt").read_text().strip().splitlines()[-1])
    assert python_path.split(os.pathsep) == [str(bundle), str(site), str(support)]
    assert where == "site-packages"


def test_guess_backend_dir_from_a_checkout_venv(tmp_path):
    assert guess_backend_dir(str(REPO / ".venv" / "bin" / "python")) == str(REPO)
    assert guess_backend_dir(str(tmp_path / "bin" / "python")) == ""


@pytest.mark.skipif(sys.platform == "win32", reason="the shim is a POSIX shell script")
def test_probe_sees_through_a_shim_and_tells_whether_the_backend_imports(tmp_path, monkeypatch):
    # Regression (field test, issue 14): the preferences said "Start uses ~/.pyenv/shims/python3",
    # an interpreter without the backend, and Start then failed with "No module named backend".
    import venv

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv.create(tmp_path / "bare", with_pip=False)
    bare = next(p for p in ((tmp_path / "bare" / "bin" / name) for name in ("python3", "python")) if p.exists())
    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{bare}" "$@"\n')
    shim.chmod(0o755)
    found = probe_python(str(shim))
    assert os.path.realpath(found.executable) == os.path.realpath(bare) and not found.has_backend, found
    assert probe_python(backend_python()).has_backend
    broken = tmp_path / "shims" / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    found = probe_python(str(broken))
    assert found.executable == "" and not found.has_backend and "could not be run" in found.error, found


def test_start_failure_reports_the_log(tmp_path):
    env = {**os.environ, "MESHSMITH_STATE_DIR": str(tmp_path / "state")}
    with pytest.raises(BackendStartError, match="exited with code") as failed:
        start_backend(backend_python(), args=("--port", "-5"), log_path=tmp_path / "log.txt", environ=env, timeout=60)
    assert "port" in failed.value.message


def test_start_and_stop_a_backend_process(tmp_path):
    env = {**os.environ, "MESHSMITH_STATE_DIR": str(tmp_path / "state"), "MESHSMITH_DATA_DIR": str(tmp_path / "data")}
    process, health = start_backend(
        backend_python(), args=("--port", "0"), log_path=tmp_path / "log.txt", environ=env, timeout=120
    )
    try:
        assert health.status == "ok" and process.running
        assert resolve_connection(environ=env).pid == process.pid
    finally:
        process.stop()
    assert not process.running
    assert not (tmp_path / "state" / "backend.json").exists()  # it shut down cleanly
    with pytest.raises(BackendUnavailable):
        resolve_connection(environ=env)


def test_stop_leaves_processes_it_did_not_start_alone(backend):
    BackendProcess(backend_python()).stop()  # never started: nothing to stop
    assert Client(backend.url).health().status == "ok"
