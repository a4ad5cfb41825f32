"""The add-on's side of a backend job as a small state machine, advanced one step at a time.

A job moves ``submitted -> polling -> downloading -> imported``, or ends ``failed`` or
``cancelled``. :meth:`JobTracker.poll_once` does one step for every active job; in Blender a
``bpy.app.timers`` function calls it (through ``runtime.poll_jobs``), headless scripts and tests
call it in a loop. Nothing here imports bpy: the import into the scene is a callback.
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
    IMPORTED = "imported"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_PHASES = frozenset({Phase.IMPORTED, Phase.FAILED, Phase.CANCELLED})


class JobClient(Protocol):
    """The calls the tracker needs; :class:`addon.client.Client` provides them."""

    def job(self, job_id: str) -> Job: ...

    def result(self, job_id: str, name: str | None = None) -> bytes: ...

    def cancel(self, job_id: str) -> Job: ...


#: Called with the job and the result GLB bytes; imports it and returns the new object's name.
ResultHandler = Callable[["TrackedJob", bytes], str]


@dataclass
class TrackedJob:
    """One backend job as the add-on follows it.

    ``source_name``, ``scene_name`` and ``result_name`` are Blender names (plain strings, so this
    stays bpy-free); ``extra`` carries anything else the result handler needs, e.g. the
    source's world matrix at submit time.
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

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES

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
        if job.phase is Phase.DOWNLOADING:
            job._cancelled()
            return job
        try:
            remote = job.client.cancel(job.id)
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
            if data is not None:
                self._import(job, data, on_result)

    def _ask(self, job: TrackedJob, call: Callable[[str], Any]) -> Any:
        """``call(job.id)``; on a backend error the job is updated and None returned."""
        try:
            return call(job.id)
        except BackendUnavailable as exc:
            self._unreachable(job, exc)
        except BackendError as exc:
            job._fail(exc.message)
        return None

    def _apply_remote(self, job: TrackedJob, remote: Job) -> None:
        job.progress = remote.progress
        job.stage = remote.stage or remote.state
        if remote.state in ("queued", "running"):
            job.phase = Phase.POLLING
        elif remote.state == "done":
            if job.cancel_requested:
                job._cancelled("Cancelled (the backend had already finished; nothing was imported).")
            else:
                job.phase, job.stage = Phase.DOWNLOADING, "downloading"
        elif remote.state == "cancelled":
            job._cancelled()
        else:  # failed
            job._fail(
                remote.error.message
                if remote.error
                else "The backend reports the job failed without saying why; see the backend's log."
            )

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
        job.message = f"Imported {name}."
