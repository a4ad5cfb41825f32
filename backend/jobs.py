"""Jobs on disk, and the runner that hands them to worker processes (:mod:`backend.workers`).

Each job is a folder ``<data_dir>/jobs/<id>/`` holding its uploads (``input.<fmt>`` for the
``mesh``; ``source.<fmt>``, ``views.zip`` for the other inputs of :mod:`backend.inputs`),
``job.json`` (params, inputs, state, progress, error, result summary), ``log.txt`` and, once
done, ``result.glb`` plus any named extras. ``job.json`` is always replaced atomically, so a
crash leaves the previous state, never a torn file. On start-up ``queued`` jobs are queued
again, and a job found ``running`` (the backend died under it) is queued once more.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.inputs import INPUT_KINDS
from backend.mesh.io import write_atomic
from backend.workers import RESULT_NAME, Worker, remove_stale_folders

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
#: Progress is written to disk at most this often; state changes are written at once.
PROGRESS_WRITE_INTERVAL = 0.25
#: Seconds a worker has to stop after a cancel before it is killed (the cancel ends within ~1 s).
CANCEL_GRACE = 0.75
#: A job found running at start-up this many times (each start of it ended in a crash) is failed, not rerun.
MAX_ATTEMPTS = 2


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
    #: How many times a worker started this job (a job interrupted by a stop or crash runs again).
    attempts: int = 0
    #: Estimated peak memory in bytes (worker included), checked against the budget at submit.
    memory_estimate: int | None = None
    #: The result so far of a pipeline that shows one (``{"file", "faces", "at"}``), while it runs.
    partial: dict | None = None

    def input_files(self) -> dict[str, str]:
        """Input name -> file name in the job folder."""
        if self.inputs is not None:
            return dict(self.inputs)
        return {"mesh": self.input_name}      # a record written before inputs had names

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

    # -- retention ----------------------------------------------------------------------------

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its folder; False when there is no such finished job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in FINAL_STATES:
                return False
            del self._jobs[job_id]
            self._written.pop(job_id, None)
        shutil.rmtree(self.dir(job_id), ignore_errors=True)
        return True

    def remove_orphans(self) -> int:
        """Remove job folders without a readable record (an upload cut short by a kill leaves
        one with only a ``.part`` file); call it before anything is submitted. Returns how many."""
        removed = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.name not in self._jobs:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def clean(self, max_age: float | None, max_bytes: int | None, now: float | None = None) -> list[str]:
        """Remove finished jobs older than ``max_age`` seconds, then the oldest finished ones
        while all jobs together take more than ``max_bytes`` on disk. Returns the removed ids."""
        now = time.time() if now is None else now
        finished = sorted((j for j in self.list() if j.state in FINAL_STATES), key=lambda j: j.finished or j.created)
        removed = []
        if max_age is not None:
            for job in finished:
                if now - (job.finished or job.created) > max_age and self.delete(job.id):
                    removed.append(job.id)
        if max_bytes is not None:
            sizes = {j.id: _folder_bytes(self.dir(j.id)) for j in self.list()}
            total = sum(sizes.values())
            for job in finished:
                if total <= max_bytes:
                    break
                if job.id not in removed and self.delete(job.id):
                    removed.append(job.id)
                    total -= sizes.get(job.id, 0)
        if removed:
            log.info("removed %d finished jobs (older than the retention, or over the disk budget)", len(removed))
        return removed

    def count(self, *states: str) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in states)

    def recover(self) -> list[Job]:
        """Jobs to run after a start: the queued ones, and those found ``running`` (the process
        died under them) once more; a job that was running at :data:`MAX_ATTEMPTS` crashes fails."""
        requeue = []
        for job in self.list():
            if job.state == "running":
                if job.attempts >= MAX_ATTEMPTS:
                    job.state, job.stage, job.finished = "failed", "failed", time.time()
                    job.error = {
                        "code": "interrupted",
                        "message": f"The backend stopped {job.attempts} times while this job was running, so it is "
                                   "not run again. Lower its size (resolution, faces, texture size) and submit it again.",
                    }
                    self.save(job)
                    continue
                job.state, job.stage, job.progress, job.started = "queued", "queued (interrupted)", 0.0, None
                job.partial = None
                self.save(job)
                requeue.append(job)
            elif job.state == "queued":
                requeue.append(job)
        return sorted(requeue, key=lambda j: j.created)

    def create(self, pipeline: str, params: dict, files: dict[str, tuple[bytes, str]],
               memory_estimate: int | None = None) -> Job:
        """A queued job whose uploads ``files`` (input name -> (bytes, suffix)) are on disk first.

        ``job.json`` is written last: a crash in between leaves no job, never a job without inputs.
        """
        names = {name: f"{INPUT_KINDS[name].stored_as}.{suffix}" for name, (_, suffix) in files.items()}
        job = Job(id=uuid.uuid4().hex, pipeline=pipeline, params=params,
                  input_name=names.get("mesh", ""), inputs=names, memory_estimate=memory_estimate)
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


class JobRunner:
    """Runs queued jobs in worker processes (:mod:`backend.workers`), one slot thread per worker.

    A slot thread hands its worker one job at a time and relays progress into the store; it
    sends cancel, and kills (and replaces) a worker that does not stop within
    ``cancel_grace`` seconds, passes ``time_limit`` seconds on one job or dies. The
    server's threads never run pipeline code.

    A clean :meth:`stop` leaves queued jobs queued and puts the running ones back in the
    queue (re-running a job is safe: its inputs are on disk and its outputs are written
    atomically), so they run after a restart; see :meth:`JobStore.recover` for a crash.
    """

    #: How often a slot looks at its worker, for cancel and time limits.
    TICK = 0.05

    def __init__(self, store: JobStore, *, workers: int = 1, memory_limit_bytes: int | None = None,
                 time_limit: float | None = None, cancel_grace: float = CANCEL_GRACE):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.store = store
        self.memory_limit_bytes, self.time_limit, self.cancel_grace = memory_limit_bytes, time_limit, cancel_grace
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._slots = [threading.Thread(target=self._slot, args=(i,), name=f"meshsmith-slot-{i}", daemon=True)
                       for i in range(workers)]
        #: Slot index -> its worker's pid, for tests and the health answer.
        self.worker_pids: dict[int, int] = {}

    def start(self) -> None:
        stale = remove_stale_folders()
        if stale:
            log.info("removed %d temporary folders of workers whose server had died", stale)
        for job in self.store.recover():
            self._queue.put(job.id)
        for slot in self._slots:
            slot.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the workers; running jobs go back to the queue, queued ones stay queued."""
        self._stopping.set()
        for _ in self._slots:
            self._queue.put(None)
        for slot in self._slots:
            slot.join(timeout)

    def submit(self, job: Job) -> None:
        self._queue.put(job.id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one ends now, a running one within the cancel grace."""
        job = self.store.get(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        with self._lock:
            self._cancelled.add(job_id)
        if job.state == "queued":
            job.state, job.stage, job.finished = "cancelled", "cancelled", time.time()
            self.store.save(job)
        return job

    # -- slots ------------------------------------------------------------------------------

    def _spawn(self, index: int) -> Worker:
        worker = Worker(self.memory_limit_bytes)
        self.worker_pids[index] = worker.process.pid
        return worker

    def _slot(self, index: int) -> None:
        worker = self._spawn(index)          # ready (imports done) before the first job arrives
        try:
            while True:
                job_id = self._queue.get()
                if job_id is None:
                    return
                job = self.store.get(job_id)
                if job is None or job.state != "queued":
                    continue
                if not worker.alive:
                    worker.kill()
                    worker = self._spawn(index)
                if not self._run(worker, job):
                    worker.kill()
                    if self._stopping.is_set():
                        return
                    worker = self._spawn(index)
        finally:
            worker.stop()
            self.worker_pids.pop(index, None)

    def _run(self, worker: Worker, job: Job) -> bool:
        """Run ``job`` on ``worker`` until it ends; False when the worker must be replaced."""
        job.state, job.stage, job.progress, job.started = "running", "starting a worker", 0.0, time.time()
        job.attempts += 1
        self.store.save(job)
        if not worker.wait_ready(WORKER_START_TIMEOUT):
            died = not worker.alive                        # killed or crashed while importing, not slow
            worker.kill()
            if died:
                self._end(job, "failed", error=(
                    "worker_died", f"The worker process for this job stopped while starting: "
                                   f"{worker.exit_description()}. Other jobs are not affected; submit it again."))
            else:
                self._end(job, "failed", error=("internal", "The backend could not start a worker process "
                                                f"({worker.exit_description()}); see the backend's log."))
            return False
        try:
            worker.conn.send(("run", job.id, job.pipeline, job.params, job.input_files(), str(self.store.dir(job.id))))
        except OSError:
            # It died between "ready" and this job (a broken pipe): the loop below finds it gone
            # and fails the job; raised here, it would end the slot's thread and leave the job
            # "running" for ever.
            worker.process.join(1.0)
        started = time.monotonic()
        cancel_sent: float | None = None
        while True:
            try:
                message = worker.conn.recv() if worker.conn.poll(self.TICK) else None
            except (EOFError, OSError):
                message = None
                worker.process.join(1.0)
            if message is not None and message[0] == "progress":
                job.progress, job.stage = message[1], message[2]
                self.store.save(job, throttle=True)
            elif message is not None and message[0] == "partial":
                job.partial = {"file": message[1], "faces": message[2], "at": time.time()}
                self.store.save(job, throttle=True)
            elif message is not None:
                kind = message[0]
                if kind == "done":
                    job.result = {"files": message[1], "summary": message[2]}
                    self._end(job, "done")
                elif kind == "cancelled":
                    self._end(job, "cancelled")
                else:
                    self._end(job, "failed", error=(message[1], message[2]))
                return True
            now = time.monotonic()
            if not worker.alive:
                self._note(job, f"worker {worker.process.pid} ended: {worker.exit_description()}")
                worker.kill()                             # reaped and its folder gone before the job ends
                if job.id in self._cancelled:
                    self._end(job, "cancelled")
                else:
                    self._end(job, "failed", error=(
                        "worker_died", f"The worker process running this job stopped: {worker.exit_description()}. "
                                       "Other jobs are not affected; lower the job's size and submit it again."))
                return False
            if self._stopping.is_set():
                self._note(job, "the backend is stopping: the job goes back to the queue")
                job.state, job.stage, job.progress, job.started = "queued", "queued (interrupted by a restart)", 0.0, None
                job.partial = None
                job.attempts -= 1                        # a clean stop does not count against the job
                self.store.save(job)
                return False
            with self._lock:
                cancel = job.id in self._cancelled
            if cancel and cancel_sent is None:
                try:
                    worker.conn.send(("cancel",))
                except OSError:
                    pass                                  # it died: the next tick sees that
                cancel_sent = now
            elif cancel and now - cancel_sent > self.cancel_grace:
                self._note(job, f"the worker did not stop within {self.cancel_grace:g} s of the cancel: killed")
                worker.kill()                             # before the job reads as cancelled: nothing left behind
                self._end(job, "cancelled")
                return False
            if self.time_limit is not None and now - started > self.time_limit:
                self._note(job, f"time limit of {self.time_limit:g} s reached: worker killed")
                worker.kill()
                self._end(job, "failed", error=(
                    "time_limit", f"The {job.pipeline} job ran longer than this backend's limit of "
                                  f"{_duration(self.time_limit)} per job. Lower the resolution, the face count or the "
                                  "texture size, or start the backend with a higher --max-job-minutes."))
                return False

    def _end(self, job: Job, state: str, *, error: tuple[str, str] | None = None) -> None:
        job.state, job.stage, job.finished, job.partial = state, state, time.time(), None
        if error is not None:
            job.error = {"code": error[0], "message": error[1]}
        self.store.save(job)
        with self._lock:
            self._cancelled.discard(job.id)

    def _note(self, job: Job, text: str) -> None:
        """A line in the job's log.txt from the server's side."""
        log.info("job %s: %s", job.id, text)
        try:
            with (self.store.dir(job.id) / "log.txt").open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} server: {text}\n")
        except OSError:
            pass


#: Seconds a new worker may take to import the pipelines before the job fails.
WORKER_START_TIMEOUT = 120.0


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        return 0


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} s"
