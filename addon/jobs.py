"""The add-on's side of a backend job as a small state machine, advanced one step at a time.

A job moves ``submitted -> polling -> downloading -> imported``, or ends ``failed`` or
``cancelled``. :meth:`JobTracker.poll_once` does one step for every active job; in Blender a
``bpy.app.timers`` function calls it (through ``runtime.poll_jobs``), headless scripts and tests
call it in a loop. Nothing here imports bpy: the import into the scene is a callback.

A tracked job may be a chain of backend jobs (e.g. ``artist`` then ``texture``): when one
step is done its result is downloaded and submitted as the mesh of the next
(``downloading -> submitting -> polling``), and only the last result is imported. Progress
and cancel cover the whole chain; the user sees one job.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BackendError, BackendUnavailable, MeshsmithError
from .protocol import Job

log = logging.getLogger(__name__)

#: Consecutive "backend unreachable" polls after which a job is given up as failed.
MAX_POLL_FAILURES = 10


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

    def cancel(self, job_id: str) -> Job: ...

    def submit(
        self,
        pipeline: str,
        params: dict[str, Any],
        mesh: bytes,
        *,
        filename: str = "mesh.glb",
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> Job: ...


@dataclass
class ChainStep:
    """A step of a chain still to submit; the previous step's result becomes its mesh.

    ``files`` maps an upload field (``"source"``, ``"views"``) to ``(file name, bytes)``.
    """

    pipeline: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


#: Called with the job and the result GLB bytes; imports it and returns the new object's name.
ResultHandler = Callable[["TrackedJob", bytes], str]


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
    #: A finished step's result, kept until the next step is submitted.
    intermediate: bytes | None = field(default=None, repr=False)
    #: What the import could not use and how it carried on; added to the final message.
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.remote_id = self.remote_id or self.id
        if not self.weights:
            self.weights = (1.0,) * (1 + len(self.next_steps))
        if len(self.weights) != 1 + len(self.next_steps) or min(self.weights) <= 0:
            raise ValueError(
                f"weights must hold one positive share per step ({1 + len(self.next_steps)}), got {self.weights}"
            )

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

    def __init__(self, *, max_poll_failures: int = MAX_POLL_FAILURES):
        if max_poll_failures < 1:
            raise ValueError(f"max_poll_failures must be at least 1, got {max_poll_failures}")
        self.max_poll_failures = max_poll_failures
        self._jobs: dict[str, TrackedJob] = {}

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

    def poll_once(self, on_result: ResultHandler) -> list[TrackedJob]:
        """Advance every active job by one step; return the jobs whose phase, progress or stage changed."""
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
            job.intermediate = None
            job._cancelled()
            return job
        try:
            remote = job.client.cancel(job.remote_id)
        except BackendUnavailable:
            # Nothing is left to stop, and nothing will be imported.
            job._cancelled("Cancelled (the backend is not reachable).")
            return job
        except BackendError as exc:
            if exc.code == "not_found":
                job._cancelled("Cancelled (the backend no longer knows this job).")
                return job
            raise
        self._apply_remote(job, remote)
        if not job.is_final:
            job.stage = "cancelling"
        return job

    # -- steps -----------------------------------------------------------------------------

    def _step(self, job: TrackedJob, on_result: ResultHandler) -> None:
        if job.phase in (Phase.SUBMITTED, Phase.POLLING):
            remote = self._ask(job, job.client.job)
            if remote is None:
                return
            job.poll_failures = 0
            self._apply_remote(job, remote)
        if job.phase is Phase.DOWNLOADING:
            data = self._ask(job, job.client.result)
            if data is None:
                return
            if not job.next_steps:
                self._import(job, data, on_result)
                return
            job.intermediate, job.phase = data, Phase.SUBMITTING
            job.stage = f"sending the {job.pipeline} result to {job.next_steps[0].pipeline}"
        if job.phase is Phase.SUBMITTING:
            self._submit_next(job)

    def _submit_next(self, job: TrackedJob) -> None:
        step = job.next_steps[0]
        try:
            remote = job.client.submit(step.pipeline, step.params, job.intermediate or b"", files=step.files)
        except BackendUnavailable as exc:
            self._unreachable(job, exc)
            return
        except BackendError as exc:
            job._fail(f"The {step.pipeline} step could not start: {exc.message}")
            return
        job.next_steps.pop(0)
        job.intermediate = None
        job.step += 1
        job.pipeline, job.remote_id, job.phase, job.poll_failures = step.pipeline, remote.id, Phase.POLLING, 0
        self._apply_remote(job, remote)

    def _ask(self, job: TrackedJob, call: Callable[[str], Any]) -> Any:
        """``call(job.remote_id)``; on a backend error the job is updated and None returned."""
        try:
            return call(job.remote_id)
        except BackendUnavailable as exc:
            self._unreachable(job, exc)
        except BackendError as exc:
            job._fail(exc.message)
        return None

    def _apply_remote(self, job: TrackedJob, remote: Job) -> None:
        job.show_remote(remote.progress, remote.stage or remote.state)
        if remote.state in ("queued", "running"):
            job.phase = Phase.POLLING
        elif remote.state == "done":
            if job.cancel_requested:
                job._cancelled("Cancelled (the backend had already finished; nothing was imported).")
            else:
                job.phase = Phase.DOWNLOADING
                job.show_remote(1.0, "downloading")
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
