"""The add-on's side of a backend job as a small state machine, advanced one step at a time.

A job moves ``submitted -> polling -> downloading -> imported``, or ends ``failed`` or
``cancelled``. :meth:`JobTracker.poll_once` does one step for every active job; in Blender a
``bpy.app.timers`` function calls it (through ``runtime.poll_jobs``), headless scripts and tests
call it in a loop. Nothing here imports bpy: the import into the scene is a callback.

A tracked job may be a chain of backend jobs (e.g. ``artist`` then ``texture``): when one
step is done its result is downloaded and submitted as the mesh of the next
(``downloading -> submitting -> polling``), and only the last result is imported. Progress
and cancel cover the whole chain; the user sees one job. A job made by :meth:`JobTracker.upload`
starts ``submitting``: even its first upload happens in a step.

Every call to the backend (poll, download, upload, cancel) is an *errand* handed to a
:class:`Courier`. In Blender that is :class:`ThreadCourier`: the calls run on a worker thread
and a step only looks whether its errand has come back, so Blender's main thread never waits
on the network or on a busy backend. A backend that does not answer in time is busy, not
gone: the job keeps waiting (and says so); only a backend that refuses connections
:data:`MAX_POLL_FAILURES` times in a row, or reports the job failed, fails it. Tests use
:class:`InlineCourier`, which runs each call at once, so a step is deterministic.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BackendError, BackendUnavailable, MeshsmithError
from .protocol import Job

log = logging.getLogger(__name__)

#: Consecutive "backend unreachable" polls after which a job is given up as failed.
MAX_POLL_FAILURES = 10
#: Seconds an errand may be out before the job's stage says it is waiting for the backend.
SLOW_ERRAND = 2.0


class Courier(Protocol):
    """Runs backend calls for the tracker: ``send(fn, *args)`` returns a future of ``fn(*args)``."""

    def send(self, fn: Callable[..., Any], *args: Any) -> Future: ...


class InlineCourier:
    """Runs every call at once, on the caller's thread (tests; scripts that may block)."""

    def send(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the step that reads the future, as a thread would
            future.set_exception(exc)
        return future


class ThreadCourier:
    """Runs calls on worker threads, so that the thread that sends them (Blender's main thread) never waits."""

    def __init__(self, workers: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meshsmith-http")

    def send(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        """Stop taking errands; calls already out finish on their own (their socket timeouts bound them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Errand:
    """A backend call out on the courier: what it is for, and since when."""

    kind: str  # "poll", "download", "submit"
    future: Future
    started: float = field(default_factory=time.monotonic)


class Phase(str, enum.Enum):
    SUBMITTED = "submitted"
    POLLING = "polling"
    DOWNLOADING = "downloading"
    #: A chain's intermediate result is being sent on as the next step's mesh.
    SUBMITTING = "submitting"
    IMPORTED = "imported"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_PHASES = frozenset({Phase.IMPORTED, Phase.FAILED, Phase.CANCELLED})


class JobClient(Protocol):
    """The calls the tracker needs; :class:`addon.client.Client` provides them."""

    def job(self, job_id: str) -> Job: ...

    def result(self, job_id: str, name: str | None = None) -> bytes: ...

    def partial(self, job_id: str) -> bytes: ...

    def cancel(self, job_id: str) -> Job: ...

    def submit(
        self,
        pipeline: str,
        params: dict[str, Any],
        mesh: bytes | None,
        *,
        filename: str = "mesh.glb",
        files: dict[str, tuple[str, bytes]] | None = None,
        mesh_field: str = "mesh",
    ) -> Job: ...


@dataclass
class ChainStep:
    """A step of a chain still to submit; the previous step's result becomes its mesh.

    ``files`` maps an upload field (``"source"``, ``"views"``) to ``(file name, bytes)``;
    ``mesh_field`` is the field the mesh is sent in (``points`` for ``points_to_mesh``).
    """

    pipeline: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    mesh_field: str = "mesh"


#: Called with the job and the result GLB bytes; imports it and returns the new object's name.
ResultHandler = Callable[["TrackedJob", bytes], str]
#: Called with the job and a partial result's GLB bytes (a generating pipeline's faces so far).
PartialHandler = Callable[["TrackedJob", bytes], None]


@dataclass
class TrackedJob:
    """One backend job as the add-on follows it.

    ``source_name``, ``scene_name`` and ``result_name`` are Blender names (plain strings, so this
    stays bpy-free); ``extra`` carries anything else the result handler needs, e.g. the
    source's world matrix at submit time.

    ``id`` is the first backend job's id and names the tracked job for its whole life;
    ``remote_id`` is the backend job running now (they differ from a chain's second step on).
    ``next_steps`` are the steps still to submit, ``weights`` every step's share of the
    progress (one per step), ``step`` the index of the running one.
    """

    id: str
    client: JobClient
    pipeline: str
    source_name: str = ""
    scene_name: str = ""
    result_name: str = ""
    phase: Phase = Phase.SUBMITTED
    progress: float = 0.0
    stage: str = "submitted"
    #: Why it failed, or what was imported; shown in the panel.
    message: str = ""
    imported_name: str | None = None
    cancel_requested: bool = False
    poll_failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    remote_id: str = ""
    next_steps: list[ChainStep] = field(default_factory=list)
    weights: tuple[float, ...] = ()
    step: int = 0
    #: A finished step's result (or, before the first upload, a function making the mesh), kept
    #: until the next step is submitted.
    intermediate: bytes | Callable[[], bytes] | None = field(default=None, repr=False)
    #: What the import could not use and how it carried on; added to the final message.
    warnings: list[str] = field(default_factory=list)
    #: The backend id of every step submitted so far, in order (``remote_id`` is the last).
    remote_ids: list[str] = field(default_factory=list)
    #: Faces of the backend's newest partial result, and of the one shown (downloaded) so far.
    partial_faces: int = 0
    partial_shown: int = 0
    #: The backend call out for this job, if any; and a cancel call, which may run beside it.
    errand: Errand | None = field(default=None, repr=False)
    cancel_errand: Errand | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.phase is not Phase.SUBMITTING:
            self.remote_id = self.remote_id or self.id
            self.remote_ids = self.remote_ids or [self.remote_id]
        steps = self.step + 1 + len(self.next_steps)
        if not self.weights:
            self.weights = (1.0,) * steps
        if len(self.weights) != steps or min(self.weights) <= 0:
            raise ValueError(f"weights must hold one positive share per step ({steps}), got {self.weights}")

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def step_count(self) -> int:
        return len(self.weights)

    def show_remote(self, progress: float, stage: str) -> None:
        """Progress and stage of the running step, as parts of the whole chain."""
        done = sum(self.weights[: self.step])
        self.progress = (done + self.weights[self.step] * progress) / sum(self.weights)
        self.stage = f"{self.pipeline} {self.step + 1}/{self.step_count}: {stage}" if self.step_count > 1 else stage

    def _fail(self, message: str) -> None:
        self.phase, self.stage, self.message = Phase.FAILED, "failed", message

    def _cancelled(self, message: str = "Cancelled.") -> None:
        self.phase, self.stage, self.message = Phase.CANCELLED, "cancelled", message


class JobTracker:
    """Every job the add-on submitted in this session, oldest first."""

    def __init__(self, *, max_poll_failures: int = MAX_POLL_FAILURES, courier: Courier | None = None):
        if max_poll_failures < 1:
            raise ValueError(f"max_poll_failures must be at least 1, got {max_poll_failures}")
        self.max_poll_failures = max_poll_failures
        self.courier: Courier = courier or InlineCourier()
        self._jobs: dict[str, TrackedJob] = {}
        self._on_partial: PartialHandler | None = None

    def upload(self, client: JobClient, mesh: bytes | Callable[[], bytes] | None, steps: list[ChainStep],
               **fields: Any) -> TrackedJob:
        """Track a new job whose first step is still to be sent: the upload is its first errand.

        ``mesh`` is the GLB, or a function that makes it, called on the courier's thread with
        the upload (encoding a large mesh is then off the caller's thread too). ``fields`` are
        :class:`TrackedJob` fields (names, ``weights``, ``extra``). The job gets a local id at
        once; its backend id arrives with the upload.
        """
        if not steps:
            raise ValueError("steps must hold at least one step")
        job = TrackedJob(id=uuid.uuid4().hex, client=client, pipeline=steps[0].pipeline, phase=Phase.SUBMITTING,
                         stage="uploading", step=-1, next_steps=list(steps), intermediate=mesh, **fields)
        return self.add(job)

    def add(self, job: TrackedJob) -> TrackedJob:
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> TrackedJob | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[TrackedJob]:
        return list(self._jobs.values())

    def active(self) -> list[TrackedJob]:
        return [job for job in self._jobs.values() if not job.is_final]

    def clear(self) -> None:
        self._jobs.clear()

    def poll_once(self, on_result: ResultHandler, on_partial: PartialHandler | None = None) -> list[TrackedJob]:
        """Advance every active job by one step; return the jobs whose phase, progress or stage changed.

        ``on_partial``: shows a running job's partial result; without it partial results are not fetched.
        """
        self._on_partial = on_partial
        changed = []
        for job in self.active():
            before = (job.phase, job.progress, job.stage, job.message)
            self._step(job, on_result)
            if (job.phase, job.progress, job.stage, job.message) != before:
                changed.append(job)
        return changed

    def cancel(self, job_id: str) -> TrackedJob:
        """Ask the backend to cancel; the job ends ``cancelled`` now or at a later poll.

        Whatever the backend answers, a job the user cancelled is never imported.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise ValueError(f"job_id {job_id!r} is not a job of this session")
        if job.is_final:
            return job
        job.cancel_requested = True
        if job.phase in (Phase.DOWNLOADING, Phase.SUBMITTING):
            # No backend job is running: nothing to stop, and nothing will be imported or sent on.
            if job.errand is not None and job.errand.kind == "submit":
                # An upload still out would start a backend job nobody polls: stop it when it lands.
                job.errand.future.add_done_callback(lambda f, client=job.client: _cancel_started(client, f))
            job.errand = None
            job.intermediate = None
            job._cancelled()
            return job
        if job.cancel_errand is None:
            job.cancel_errand = Errand("cancel", self.courier.send(job.client.cancel, job.remote_id))
        self._finish_cancel(job)
        if not job.is_final:
            job.stage = "cancelling"
        return job

    def _finish_cancel(self, job: TrackedJob) -> None:
        """Read the cancel call's answer once it is back (a later poll sees the job end otherwise)."""
        errand = job.cancel_errand
        if errand is None or not errand.future.done():
            return
        job.cancel_errand = None
        try:
            remote = errand.future.result()
        except BackendUnavailable:
            # Nothing is left to stop, and nothing will be imported.
            job._cancelled("Cancelled (the backend is not reachable).")
            return
        except BackendError as exc:
            if exc.code == "not_found":
                job._cancelled("Cancelled (the backend no longer knows this job).")
            elif exc.code != "timeout":
                log.warning("job %s: cancel: %s", job.id, exc.message)
            return
        if not job.is_final:
            self._apply_remote(job, remote)

    # -- steps -----------------------------------------------------------------------------

    def _step(self, job: TrackedJob, on_result: ResultHandler) -> None:
        """Collect the job's errand if it is back and send the next one; never wait for one.

        A poll that finds the job done goes on, in the same step, to download the result (and
        to send it to the chain's next step) as far as the courier answers at once.
        """
        self._finish_cancel(job)
        while not job.is_final:
            if job.errand is None:
                job.errand = self._send(job)
            if not job.errand.future.done():
                self._show_waiting(job)
                return
            errand, job.errand = job.errand, None
            if not self._finish(job, errand, on_result) or job.phase in (Phase.SUBMITTED, Phase.POLLING):
                return

    def _send(self, job: TrackedJob) -> Errand:
        send = self.courier.send
        if job.phase is Phase.DOWNLOADING:
            return Errand("download", send(job.client.result, job.remote_id))
        if job.phase is Phase.SUBMITTING:
            step = job.next_steps[0]
            return Errand("submit", send(_submit, job.client, step, job.intermediate))
        if self._on_partial is not None and job.partial_faces > job.partial_shown and not job.cancel_requested:
            return Errand("partial", send(job.client.partial, job.remote_id))
        return Errand("poll", send(job.client.job, job.remote_id))

    def _show_waiting(self, job: TrackedJob) -> None:
        seconds = time.monotonic() - job.errand.started
        if seconds >= SLOW_ERRAND and job.errand.kind == "poll":
            job.stage = f"waiting for the backend ({seconds:.0f} s; it is busy)"

    def _finish(self, job: TrackedJob, errand: Errand, on_result: ResultHandler) -> bool:
        """Act on a returned errand; False when it brought no answer (the step ends there)."""
        try:
            value = errand.future.result()
        except BackendUnavailable as exc:
            self._unreachable(job, exc)
            return False
        except BackendError as exc:
            if exc.code == "timeout":
                # Busy, not gone: the backend holds the job on disk; ask again.
                log.info("job %s: %s", job.id, exc.message)
                job.stage = "waiting for the backend (it is busy)"
                return False
            if errand.kind == "partial":
                # The job ended between the poll and the download: the next poll says how.
                job.partial_shown = job.partial_faces
                return True
            if errand.kind == "submit":
                job._fail(f"The {job.next_steps[0].pipeline} step could not start: {exc.message}")
            else:
                job._fail(exc.message)
            return False
        except MeshsmithError as exc:
            job._fail(exc.message)
            return False
        except Exception as exc:  # noqa: BLE001 - an errand's bug must end its job with a message, not the timer
            log.exception("job %s: %s errand failed", job.id, errand.kind)
            job._fail(f"The {errand.kind} failed: {exc}")
            return False
        job.poll_failures = 0
        if errand.kind == "partial":
            job.partial_shown = job.partial_faces
            if self._on_partial is not None:
                try:
                    self._on_partial(job, value)
                except Exception:  # noqa: BLE001 - a preview that cannot be shown must not end the job
                    log.exception("job %s: showing the partial result failed", job.id)
            return False
        if errand.kind == "poll":
            self._apply_remote(job, value)
        elif errand.kind == "download":
            if not job.next_steps:
                self._import(job, value, on_result)
            else:
                job.intermediate, job.phase = value, Phase.SUBMITTING
                job.stage = f"sending the {job.pipeline} result to {job.next_steps[0].pipeline}"
        else:
            self._submitted(job, value)
        return True

    def _submitted(self, job: TrackedJob, remote: Job) -> None:
        step = job.next_steps.pop(0)
        job.intermediate = None
        job.step += 1
        job.pipeline, job.remote_id, job.phase, job.poll_failures = step.pipeline, remote.id, Phase.POLLING, 0
        job.partial_faces = job.partial_shown = 0
        job.remote_ids.append(remote.id)
        self._apply_remote(job, remote)

    def _apply_remote(self, job: TrackedJob, remote: Job) -> None:
        job.show_remote(remote.progress, remote.stage or remote.state)
        if remote.partial_faces:
            job.partial_faces = remote.partial_faces
        if remote.state in ("queued", "running"):
            job.phase = Phase.POLLING
        elif remote.state == "done":
            if job.cancel_requested:
                job._cancelled("Cancelled (the backend had already finished; nothing was imported).")
            else:
                job.phase = Phase.DOWNLOADING
                job.show_remote(1.0, "downloading")
                if remote.result is not None:
                    job.warnings.extend(summary_notes(remote.result.summary))
        elif remote.state == "cancelled":
            job._cancelled()
        else:  # failed
            message = (
                remote.error.message
                if remote.error
                else "The backend reports the job failed without saying why; see the backend's log."
            )
            job._fail(f"The {job.pipeline} step failed: {message}" if job.step_count > 1 else message)

    def _unreachable(self, job: TrackedJob, exc: BackendUnavailable) -> None:
        """Count a refused connection; enough of them in a row and the backend is gone."""
        job.poll_failures += 1
        log.info("job %s: backend unreachable (%d/%d): %s", job.id, job.poll_failures, self.max_poll_failures, exc)
        if job.poll_failures >= self.max_poll_failures:
            job._fail(exc.message)

    @staticmethod
    def _import(job: TrackedJob, data: bytes, on_result: ResultHandler) -> None:
        try:
            name = on_result(job, data)
        except MeshsmithError as exc:
            job._fail(exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - the handler is Blender code; any error must end the job, not hang it
            log.exception("job %s: importing the result failed", job.id)
            job._fail(f"The result could not be imported: {exc}")
            return
        job.phase, job.progress, job.stage = Phase.IMPORTED, 1.0, "imported"
        job.imported_name = name
        job.message = f"Imported {name}." + "".join(f" Note: {w}." for w in job.warnings)


#: Below this share of the surface seen by posed views, the result's message says so.
SEEN_SHARE_NOTE = 0.6


def summary_notes(summary: dict) -> list[str]:
    """What a finished step's summary says that the artist should know (sentences without a full stop)."""
    notes = []
    seen = summary.get("texels_seen_share")
    if isinstance(seen, (int, float)) and seen < SEEN_SHARE_NOTE:
        notes.append(f"the views saw {seen:.0%} of the surface; the rest takes the colours seen nearest to it "
                     "across the surface (more views, or views from other sides, would cover it)")
    return notes


def _submit(client: JobClient, step: ChainStep, mesh: bytes | Callable[[], bytes] | None) -> Job:
    """Submit ``step``; ``mesh`` None for a pipeline that takes none (its inputs are ``step.files``).

    A file's data may be a function making it (a views folder zipped), called here, on the
    courier's thread, like the mesh's.
    """
    files = {name: (filename, data() if callable(data) else data) for name, (filename, data) in step.files.items()}
    mesh = mesh() if callable(mesh) else mesh
    if step.mesh_field != "mesh":
        return client.submit(step.pipeline, step.params, mesh, files=files, mesh_field=step.mesh_field)
    return client.submit(step.pipeline, step.params, mesh, files=files)


def _cancel_started(client: JobClient, upload: Future) -> None:
    """Cancel the backend job an upload started (runs where the upload's future completes)."""
    if upload.cancelled() or upload.exception() is not None:
        return
    remote_id = upload.result().id
    try:
        client.cancel(remote_id)
    except (BackendError, BackendUnavailable) as exc:
        log.info("cancelling backend job %s: %s", remote_id, exc)
