"""Jobs run in worker processes: the API answers while they work, cancel and limits kill them,
a dying worker fails only its job, and stops and crashes keep the queue (real servers on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from backend.jobs import JobRunner, JobStore
from backend.workers import TMP_PREFIX, Worker, remove_stale_folders
from tests import meshes
from tests.backend.server_process import REPO, BackendProcess
from tests.backend.test_api import _glb, _submit, _wait

pytestmark = pytest.mark.slow

#: An artist job of about 25 s here, most of it in Instant Meshes' compiled remeshing: when
#: pipelines ran in the server's threads the API reset connections and went silent through it
#: (the issue measured 99-286 s of silence at resolution 1024).
HEAVY = {"pipeline": "artist", "params": {"faces": 100000, "resolution": 256}}


def _heavy(client) -> dict:
    data = (REPO / "assets" / "spot_broken.obj").read_bytes()
    answer = client.post("/v1/jobs", data={"params": json.dumps(HEAVY)},
                         files={"mesh": ("spot_broken.obj", data, "application/octet-stream")})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _small(client) -> dict:
    answer = _submit(client, _glb(*meshes.cube()), {"resolution": 32})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _children(pid: int) -> list[int]:
    """The worker processes ``pid`` started (Linux /proc; not multiprocessing's resource tracker)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                out.append(int(child))
    return out


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def backend(tmp_path):
    server = BackendProcess(tmp_path / "state", tmp_path / "data").start()
    yield server
    server.stop()


def test_the_api_answers_while_a_heavy_job_runs_and_cancel_kills_it_within_seconds(backend):
    with backend.client() as c:
        job = _heavy(c)
        # Every call answers, through the remeshing too (before workers: a connection reset
        # or minutes of silence once it began).
        remeshing_since = None
        with httpx.Client(base_url=backend.url, headers=c.headers, timeout=5) as quick:
            while remeshing_since is None or time.monotonic() - remeshing_since < 3.0:
                assert quick.get("/v1/health").status_code == 200
                now = quick.get(f"/v1/jobs/{job['id']}").json()
                assert now["state"] in ("queued", "running"), now
                if now["stage"] == "remeshing" and remeshing_since is None:
                    remeshing_since = time.monotonic()
                time.sleep(0.05)
        worker = _children(backend.proc.pid)
        assert worker, "no worker process"
        # Instant Meshes' files are in the worker's own temporary folder ...
        (folder,) = Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}{backend.proc.pid}-*")
        assert list(folder.glob("meshsmith-im-*/in.ply")), list(folder.iterdir())
        start = time.monotonic()
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 200
        ended = _wait(c, job["id"], timeout=30)
        assert ended["state"] == "cancelled", ended
        assert time.monotonic() - start < 10.0            # the issue measured 99.5 s
        # ... which goes with the killed worker (they stayed in /tmp, 6 MB a job, before).
        assert not folder.exists()
        # The next job runs on a fresh worker.
        assert _wait(c, _small(c)["id"])["state"] == "done"


def test_a_worker_that_dies_fails_only_its_job(backend):
    with backend.client() as c:
        job = _heavy(c)
        # Killed in the job's work (a kill while the worker still imports is the test below).
        while (now := c.get(f"/v1/jobs/{job['id']}").json())["stage"] in ("queued", "starting a worker"):
            assert now["state"] in ("queued", "running"), now
            time.sleep(0.02)
        (worker,) = _children(backend.proc.pid)
        os.kill(worker, signal.SIGKILL)
        failed = _wait(c, job["id"], timeout=30)
        assert failed["state"] == "failed" and failed["error"]["code"] == "worker_died", failed
        assert "SIGKILL" in failed["error"]["message"], failed
        assert _wait(c, _small(c)["id"])["state"] == "done"


def test_a_worker_killed_while_it_starts_fails_its_job_as_a_dead_worker(tmp_path):
    # In a server that had just started, a job met a worker still importing the pipelines; killed
    # then, the job read "internal: could not start a worker" (a fresh-clone CI run).
    store = JobStore(tmp_path)
    job = store.create("artist", {"faces": 100}, {"mesh": (b"", "obj")})
    worker = Worker()
    worker.process.kill()
    assert JobRunner(store)._run(worker, job) is False
    assert job.state == "failed" and job.error["code"] == "worker_died", job.error
    assert "SIGKILL" in job.error["message"] and "starting" in job.error["message"], job.error
    assert not Path(worker.tmp).exists()


def test_a_job_past_the_time_limit_fails_with_a_message_that_names_the_limit(tmp_path):
    # 9 s: the heavy job needs far more; the small one after it fits even on a loaded machine.
    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--max-job-minutes", "0.15").start()
    try:
        with backend.client() as c:
            failed = _wait(c, _heavy(c)["id"], timeout=60)
            assert failed["state"] == "failed" and failed["error"]["code"] == "time_limit", failed
            assert "9 s" in failed["error"]["message"] and "--max-job-minutes" in failed["error"]["message"]
            assert _wait(c, _small(c)["id"])["state"] == "done"
    finally:
        backend.stop()


def test_a_worker_past_its_memory_limit_fails_the_job_with_a_message_that_names_the_limit(tmp_path):
    # The server refuses jobs whose estimate is over the limit (below); this is the hard limit
    # under it, for a job that needs more than estimated: a real worker process at 0.4 GB.
    from backend.workers import Worker

    (tmp_path / "input.glb").write_bytes(_glb(*meshes.uv_sphere(32, 64)))
    (tmp_path / "log.txt").touch()
    worker = Worker(memory_limit_bytes=int(0.4 * 2**30))
    try:
        assert worker.wait_ready(60)
        worker.conn.send(("run", "j1", "watertight", {"resolution": 1024}, {"mesh": "input.glb"}, str(tmp_path)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            message = worker.conn.recv()
            if message[0] != "progress":
                break
        assert message[0] == "failed" and message[1] == "out_of_memory", message
        assert "0.4 GB" in message[2] and "--max-job-memory-gb" in message[2]
        assert worker.alive                                # it stays usable for the next job
    finally:
        worker.stop()


def test_a_clean_stop_keeps_the_queue_and_reruns_the_interrupted_job(tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data").start()
    try:
        with backend.client() as c:
            heavy = _heavy(c)
            _wait(c, heavy["id"], states=("running",))
            queued = [_small(c)["id"] for _ in range(4)]
            assert {c.get(f"/v1/jobs/{j}").json()["state"] for j in queued} == {"queued"}
    finally:
        backend.stop(signal.SIGTERM)
    assert "Application shutdown complete" in backend.read_log()      # a clean stop, not a kill
    backend.start()
    try:
        with backend.client() as c:
            again = c.get(f"/v1/jobs/{heavy['id']}").json()
            assert again["state"] in ("queued", "running") and again["error"] is None, again
            c.delete(f"/v1/jobs/{heavy['id']}")           # let the four run
            for job_id in queued:
                assert _wait(c, job_id)["state"] == "done"
    finally:
        backend.stop()


def test_a_job_the_backend_died_under_runs_once_more_then_fails(tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data")
    heavy = None
    for crash in range(2):
        backend.start()
        try:
            with backend.client() as c:
                heavy = heavy or _heavy(c)
                assert _wait(c, heavy["id"], states=("running",))["error"] is None
                workers = _children(backend.proc.pid)
        finally:
            backend.stop(signal.SIGKILL)
        # The worker does not outlive its server.
        assert all(_gone(w) for w in workers), workers
    backend.start()
    try:
        with backend.client() as c:
            failed = c.get(f"/v1/jobs/{heavy['id']}").json()
            assert failed["state"] == "failed" and failed["error"]["code"] == "interrupted", failed
            assert "2 times" in failed["error"]["message"]
    finally:
        backend.stop()


def test_a_job_over_the_memory_budget_is_refused_at_submit_with_what_to_lower(tmp_path):
    from tests.backend.test_api import _submit_texture, _texture_files

    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--max-job-memory-gb", "4").start()
    try:
        with backend.client() as c:
            source, target = _texture_files()
            # The case: 8192 px passed 16 GB before it was killed, ~10 minutes in.
            answer = _submit_texture(c, {"mesh": target, "source": source}, {"texture_size": 8192})
            assert answer.status_code == 422, answer.text
            body = answer.json()
            assert body["code"] == "over_budget", body
            assert "4.0 GB" in body["message"] and "texture_size (e.g. to 4096)" in body["message"], body
            answer = _submit(c, _glb(*meshes.uv_sphere(32, 64)), {"resolution": 1024})
            assert answer.status_code == 422 and "resolution" in answer.json()["message"], answer.text
            assert c.get("/v1/jobs").json()["jobs"] == []                      # nothing was stored
            accepted = _submit_texture(c, {"mesh": target, "source": source}, {"texture_size": 1024}).json()
            assert accepted["memory_estimate"] < 4 * 2**30
            assert _wait(c, accepted["id"])["state"] == "done"
    finally:
        backend.stop()


def test_a_mesh_over_the_face_cap_is_refused_with_the_setting_to_raise(tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--max-faces", "1000").start()
    try:
        with backend.client() as c:
            answer = _submit(c, _glb(*meshes.uv_sphere(32, 64)), {"resolution": 32})
            assert answer.status_code == 413 and answer.json()["code"] == "too_large", answer.text
            assert "--max-faces" in answer.json()["message"] and "1,000" in answer.json()["message"]
            assert _submit(c, _glb(*meshes.cube()), {"resolution": 32}).status_code == 201
    finally:
        backend.stop()


# -- retention and the queue ---------------------------------------------------------------------


def test_delete_removes_a_finished_job_and_its_folder(backend):
    with backend.client() as c:
        job = _wait(c, _small(c)["id"])
        folder = backend.data_dir / "jobs" / job["id"]
        assert folder.is_dir()
        answer = c.delete(f"/v1/jobs/{job['id']}")
        assert answer.status_code == 200 and answer.json()["deleted"] is True
        assert not folder.exists()
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_a_full_queue_answers_429_with_a_sentence(tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--max-queued-jobs", "2").start()
    try:
        with backend.client() as c:
            heavy = _heavy(c)
            _wait(c, heavy["id"], states=("running",))
            waiting = [_small(c) for _ in range(2)]
            answer = _submit(c, _glb(*meshes.cube()), {"resolution": 32})
            assert answer.status_code == 429 and answer.json()["code"] == "queue_full", answer.text
            assert "--max-queued-jobs" in answer.json()["message"]
            c.delete(f"/v1/jobs/{heavy['id']}")
            assert all(_wait(c, j["id"])["state"] == "done" for j in waiting)
            assert _submit(c, _glb(*meshes.cube()), {"resolution": 32}).status_code == 201
    finally:
        backend.stop()


def test_start_up_removes_cut_uploads_and_finished_jobs_past_retention(tmp_path):
    backend = BackendProcess(tmp_path / "state", tmp_path / "data", "--keep-jobs-days", "1").start()
    try:
        with backend.client() as c:
            old, recent = (_wait(c, _small(c)["id"]) for _ in range(2))
    finally:
        backend.stop()
    record = tmp_path / "data" / "jobs" / old["id"] / "job.json"
    data = json.loads(record.read_text())
    data["finished"] -= 2 * 86400                           # finished two days ago
    record.write_text(json.dumps(data))
    cut = tmp_path / "data" / "jobs" / "0123456789abcdef"     # a kill during an upload leaves this
    cut.mkdir()
    (cut / "input.glb.part").write_bytes(b"glTF")
    backend.start()
    try:
        with backend.client() as c:
            assert c.get(f"/v1/jobs/{old['id']}").status_code == 404
            assert c.get(f"/v1/jobs/{recent['id']}").json()["state"] == "done"
        assert not cut.exists() and not record.parent.exists()
    finally:
        backend.stop()


def test_the_disk_budget_removes_the_oldest_finished_jobs_first(tmp_path):
    from backend.jobs import JobStore

    store = JobStore(tmp_path)
    jobs = []
    for k in range(4):
        job = store.create("watertight", {}, {"mesh": (b"x" * 1000, "obj")})
        job.state, job.finished = "done", 1000.0 + k
        store.save(job)
        jobs.append(job)
    running = store.create("watertight", {}, {"mesh": (b"x" * 5000, "obj")})
    assert store.clean(None, 9500, now=2000.0) == [jobs[0].id]       # 4 x ~1.4 KB + 5.4 KB: one must go
    assert store.clean(None, 1, now=2000.0) == [j.id for j in jobs[1:]]  # never the unfinished one
    assert store.get(running.id) is not None and store.dir(running.id).is_dir()


def test_a_worker_that_dies_before_its_job_reaches_it_fails_the_job_not_the_slot(tmp_path):
    """The race behind a CI flake: the worker died between "ready" and the job being sent to it.
    Sending raised BrokenPipeError out of the slot's thread, which left the job running for ever
    and the slot gone."""
    from backend.jobs import JobRunner, JobStore
    from backend.workers import Worker

    store = JobStore(tmp_path / "data")
    runner = JobRunner(store)                               # not started: this test is its slot
    job = store.create("watertight", {"resolution": 32}, {"mesh": (_glb(*meshes.cube()), "glb")})
    worker = Worker()
    try:
        assert worker.wait_ready(120)
        worker.process.kill()
        worker.process.join(10)
        assert runner._run(worker, job) is False               # the slot replaces the worker
    finally:
        worker.kill()
    assert job.state == "failed" and job.error["code"] == "worker_died", job.error
    assert "SIGKILL" in job.error["message"]


def test_a_start_removes_the_temporary_folders_of_dead_servers_only():
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{int(gone.stdout)}-")
    (Path(dead) / "meshsmith-im-x").mkdir()
    alive = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    try:
        assert remove_stale_folders() >= 1
        assert not Path(dead).exists() and Path(alive).exists()
    finally:
        for folder in (dead, alive):
            if Path(folder).exists():
                shutil.rmtree(folder)

