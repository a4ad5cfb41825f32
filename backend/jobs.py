"""Jobs on disk and the worker that runs them one at a time.

Each job is a folder ``<data_dir>/jobs/<id>/`` holding its uploads (``input.<fmt>`` for the
``mesh``; ``source.<fmt>``, ``views.zip`` for the other inputs of :mod:`backend.inputs`),
``job.json`` (params, inputs, state, progress, error, result summary), ``log.txt`` and, once
done, ``result.glb`` plus any named extras. ``job.json`` is always replaced atomically, so a
crash leaves the previous state, never a torn file. On start-up a job found ``running``
is marked failed (its process died) and ``queued`` jobs are queued again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import MeshsmithError
from backend.inputs import INPUT_KINDS
from backend.memory import keep_freed_memory, release_freed_memory
from backend.mesh.io import mesh_to_bytes, write_atomic
from backend.pipelines import get_pipeline
from backend.progress import Cancelled

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
RESULT_NAME = "result.glb"
#: Progress is written to disk at most this often; state changes are written at once.
PROGRESS_WRITE_INTERVAL = 0.25


@dataclass
class Job:
    id: str
    pipeline: str
    params: dict
    input_name: str
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: dict | None = None
    result: dict | None = None
    #: Input name -> file name in the job folder (None in records written before inputs had names).
    inputs: dict | None = None

    def input_files(self) -> dict[str, str]:
        """Input name -> file name in the job folder."""
        return dict(self.inputs) if self.inputs else {"mesh": self.input_name}

    def to_json(self) -> dict:
        data = asdict(self)
        del data["input_name"]
        data["inputs"] = sorted(self.input_files())
        return data


class JobStore:
    """Jobs kept in memory and mirrored to disk; safe to use from several threads."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._written: dict[str, float] = {}
        self._load_all()

    def _load_all(self) -> None:
        for path in self.root.glob("*/job.json"):
            try:
                job = Job(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job record %s: %s", path, exc)
                continue
            self._jobs[job.id] = job

    def recover(self) -> list[Job]:
        """Mark jobs that were running when the process died as failed; return queued ones."""
        requeue = []
        for job in self.list():
            if job.state == "running":
                job.state, job.finished = "failed", time.time()
                job.error = {
                    "code": "interrupted",
                    "message": "The backend stopped while this job was running. Submit it again.",
                }
                self.save(job)
            elif job.state == "queued":
                requeue.append(job)
        return sorted(requeue, key=lambda j: j.created)

    def create(self, pipeline: str, params: dict, files: dict[str, tuple[bytes, str]]) -> Job:
        """A queued job whose uploads ``files`` (input name -> (bytes, suffix)) are on disk first.

        ``job.json`` is written last: a crash in between leaves no job, never a job without inputs.
        """
        names = {name: f"{INPUT_KINDS[name].stored_as}.{suffix}" for name, (_, suffix) in files.items()}
        job = Job(id=uuid.uuid4().hex, pipeline=pipeline, params=params,
                  input_name=names.get("mesh", ""), inputs=names)
        for name, (data, _) in files.items():
            write_atomic(self.dir(job.id) / names[name], data)
        self.save(job)
        return job

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def save(self, job: Job, *, throttle: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self._jobs[job.id] = job
            if throttle and now - self._written.get(job.id, 0.0) < PROGRESS_WRITE_INTERVAL:
                return
            self._written[job.id] = now
            payload = json.dumps(asdict(job), indent=1).encode()
        write_atomic(self.dir(job.id) / "job.json", payload)


class _JobLogHandler(logging.Handler):
    """Copies log records made on the worker thread into the running job's log.txt."""

    def __init__(self, worker: threading.Thread):
        super().__init__(logging.INFO)
        self.worker = worker
        self.path: Path | None = None
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.path is None or threading.current_thread() is not self.worker:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(self.format(record) + "\n")


class JobRunner:
    """One worker thread that runs queued jobs in order; cancel is cooperative."""

    def __init__(self, store: JobStore):
        self.store = store
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="meshsmith-worker", daemon=True)
        self._log_handler = _JobLogHandler(self._thread)

    def start(self) -> None:
        keep_freed_memory()
        logging.getLogger().addHandler(self._log_handler)
        for job in self.store.recover():
            self._queue.put(job.id)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the running job and end the worker."""
        for job in self.store.list():
            if job.state in ("queued", "running"):
                with self._lock:
                    self._cancelled.add(job.id)
        self._queue.put(None)
        self._thread.join(timeout)
        logging.getLogger().removeHandler(self._log_handler)

    def submit(self, job: Job) -> None:
        self._queue.put(job.id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one ends now, a running one at its next progress point."""
        job = self.store.get(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        with self._lock:
            self._cancelled.add(job_id)
        if job.state == "queued":
            job.state, job.stage, job.finished = "cancelled", "cancelled", time.time()
            self.store.save(job)
        return job

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.store.get(job_id)
            if job is None or job.state != "queued":
                continue
            self._log_handler.path = self.store.dir(job_id) / "log.txt"
            try:
                self._run(job)
            finally:
                self._log_handler.path = None
                release_freed_memory()

    def _run(self, job: Job) -> None:
        job.state, job.stage, job.started = "running", "loading input", time.time()
        self.store.save(job)
        log.info("job %s: %s %s", job.id, job.pipeline, job.params)

        def progress(fraction: float, stage: str) -> None:
            with self._lock:
                if job.id in self._cancelled:
                    raise Cancelled(job.id)
            job.progress, job.stage = round(float(fraction), 4), stage
            self.store.save(job, throttle=True)

        try:
            pipeline = get_pipeline(job.pipeline)
            params = pipeline.parse_params(job.params)
            files = job.input_files()
            pipeline.check_inputs(files)
            inputs = {name: INPUT_KINDS[name].load(self.store.dir(job.id) / file) for name, file in files.items()}
            progress(0.0, "starting")
            result = pipeline.run(inputs, params, progress)
            progress(1.0, "writing result")
            out = self.store.dir(job.id)
            write_atomic(out / RESULT_NAME, mesh_to_bytes(result.mesh, "glb"))
            for name, data in result.extras.items():
                write_atomic(out / name, data)
            job.result = {"files": [RESULT_NAME, *result.extras], "summary": result.summary}
            job.state, job.stage = "done", "done"
            log.info("job %s done: %s", job.id, result.summary)
        except Cancelled:
            job.state, job.stage = "cancelled", "cancelled"
            log.info("job %s cancelled", job.id)
        except MeshsmithError as exc:
            job.state, job.stage, job.error = "failed", "failed", {"code": exc.code, "message": exc.message}
            log.info("job %s failed: %s", job.id, exc.message)
        except Exception as exc:  # a bug in a pipeline must fail the job, not kill the worker
            log.exception("job %s crashed", job.id)
            job.state, job.stage = "failed", "failed"
            job.error = {
                "code": "internal",
                "message": f"The {job.pipeline} pipeline failed ({type(exc).__name__}: {exc}). "
                "The job's log.txt has the details.",
            }
        job.finished = time.time()
        self.store.save(job)
