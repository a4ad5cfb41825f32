"""The backend's JSON answers (docs/api.md) as typed dataclasses; stdlib only.

Parsing is strict about the keys the add-on relies on and lenient about the rest, so a
newer backend that adds fields still works with this add-on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Backend job states, in the order a job moves through them.
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
#: States a backend job never leaves.
FINAL_JOB_STATES = frozenset({"done", "failed", "cancelled"})


class ProtocolError(ValueError):
    """The backend answered something that does not follow docs/api.md."""


def _require(data: Any, key: str, kinds: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(data).__name__}")
    if key not in data:
        raise ProtocolError(f"{what} has no {key!r} field; is the backend older than this add-on?")
    value = data[key]
    if not isinstance(value, kinds):
        raise ProtocolError(f"{what} field {key!r} has type {type(value).__name__}, expected {kinds}")
    return value


def _optional_float(data: dict, key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class ErrorInfo:
    """A backend error ``{"code", "message"}``; the message is meant for a person."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Any) -> "ErrorInfo":
        code = _require(data, "code", str, "an error")
        message = _require(data, "message", str, "an error")
        return cls(code=code, message=message)


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced: file names and a free-form summary."""

    files: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "JobResult":
        files = _require(data, "files", list, "a job result")
        summary = data.get("summary") or {}
        return cls(files=tuple(str(f) for f in files), summary=dict(summary) if isinstance(summary, dict) else {})


@dataclass(frozen=True)
class Job:
    """One backend job, as ``GET /v1/jobs/{id}`` answers it."""

    id: str
    pipeline: str
    state: str
    progress: float = 0.0
    stage: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    error: ErrorInfo | None = None
    result: JobResult | None = None
    #: Faces of the running job's partial result (a generating pipeline shows one), or None.
    partial_faces: int | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_JOB_STATES

    @classmethod
    def from_json(cls, data: Any) -> "Job":
        job_id = _require(data, "id", str, "a job")
        state = _require(data, "state", str, f"job {job_id}")
        if state not in JOB_STATES:
            raise ProtocolError(f"job {job_id} has unknown state {state!r}; expected one of {JOB_STATES}")
        progress = data.get("progress") or 0.0
        if not isinstance(progress, (int, float)):
            raise ProtocolError(f"job {job_id} progress must be a number, got {progress!r}")
        error = data.get("error")
        result = data.get("result")
        params = data.get("params")
        return cls(
            id=job_id,
            pipeline=str(data.get("pipeline", "")),
            state=state,
            # Clamped so a progress bar never overflows whatever the backend sends.
            progress=min(max(float(progress), 0.0), 1.0),
            stage=str(data.get("stage") or ""),
            params=dict(params) if isinstance(params, dict) else {},
            created=_optional_float(data, "created"),
            started=_optional_float(data, "started"),
            finished=_optional_float(data, "finished"),
            error=ErrorInfo.from_json(error) if error else None,
            result=JobResult.from_json(result) if result else None,
            partial_faces=_partial_faces(data.get("partial")),
        )


def _partial_faces(partial: Any) -> int | None:
    if not isinstance(partial, dict):
        return None
    faces = partial.get("faces")
    return int(faces) if isinstance(faces, (int, float)) and not isinstance(faces, bool) and faces > 0 else None


@dataclass(frozen=True)
class Health:
    """``GET /v1/health``: what the backend is and what it can run."""

    status: str
    version: str
    device: str
    pipelines: dict[str, Any] = field(default_factory=dict)
    models: tuple[Any, ...] = ()
    #: Which Python runs the backend, whether its compiled kernels load (``kernels``: "compiled" or
    #: "numpy") and, under ``unavailable``, why a pipeline cannot run there.
    runtime: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "Health":
        status = _require(data, "status", str, "the health answer")
        pipelines = data.get("pipelines") or {}
        models = data.get("models") or []
        runtime = data.get("runtime") or {}
        return cls(
            status=status,
            version=str(data.get("version", "")),
            device=str(data.get("device", "")),
            pipelines=dict(pipelines) if isinstance(pipelines, dict) else {},
            models=tuple(models) if isinstance(models, list) else (),
            runtime=dict(runtime) if isinstance(runtime, dict) else {},
        )

    def describe(self) -> str:
        """A short status line, e.g. ``"running (cpu)"``."""
        return f"running ({self.device or 'unknown device'})"

    def unavailable(self) -> dict[str, str]:
        """Pipelines this backend cannot run, with why (from ``runtime``)."""
        found = self.runtime.get("unavailable")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def describe_runtime(self) -> str:
        """E.g. ``"Python 3.11.7, compiled kernels"``; "" when the backend did not say. Numpy
        kernels come with the backend's own reason (``kernels_note``) when it gives one."""
        python, kernels = self.runtime.get("python"), self.runtime.get("kernels")
        parts = [f"Python {python}"] if python else []
        if kernels == "compiled":
            parts.append("compiled kernels")
        elif kernels:
            why = str(self.runtime.get("kernels_note") or "").strip() or "no compiled build for this platform"
            parts.append(f"numpy kernels (about 2x slower: {why})")
        return ", ".join(parts)


def job_list_from_json(data: Any) -> list[Job]:
    """Parse ``GET /v1/jobs`` (``{"jobs": [...]}``), newest first as the backend sends it."""
    jobs = _require(data, "jobs", list, "the job list")
    return [Job.from_json(item) for item in jobs]
