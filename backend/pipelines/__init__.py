"""Pipelines by name: each is ``run(inputs, params, progress) -> PipelineResult``.

A pipeline is a plain function over validated arrays. It knows nothing of HTTP, job
stores or files on disk: the job runner and the command line load inputs, call it, and
write what it returns. Its parameters are a pydantic model (unknown keys are errors),
whose JSON schema ``GET /v1/health`` publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ValidationError

from backend.errors import BadParams
from backend.mesh.io import Mesh
from backend.progress import ProgressFn


@dataclass
class PipelineResult:
    """What a pipeline returns.

    Attributes
    ----------
    mesh : Mesh
        The result, in the caller's frame and scale.
    summary : dict
        Small JSON-able facts for people (faces, watertight, seconds, ...).
    extras : dict[str, bytes]
        Named extra files (e.g. a preview PNG), served next to the result.
    """

    mesh: Mesh
    summary: dict = field(default_factory=dict)
    extras: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    name: str
    title: str
    params: type[BaseModel]
    inputs: tuple[str, ...]
    run: Callable[[dict[str, Mesh], BaseModel, ProgressFn], PipelineResult]

    def parse_params(self, raw: dict) -> BaseModel:
        """Validate ``raw`` against this pipeline's schema; raise :class:`BadParams`."""
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in exc.errors()
            )
            raise BadParams(f"Parameters for '{self.name}' are not valid: {problems}.") from exc


def registry() -> dict[str, Pipeline]:
    """All pipelines that work in this installation, by name."""
    from backend.pipelines import artist, watertight

    return {p.name: p for p in (watertight.PIPELINE, artist.PIPELINE)}


def get_pipeline(name: str) -> Pipeline:
    pipelines = registry()
    if name not in pipelines:
        raise BadParams(f"Unknown pipeline {name!r}; this backend offers: {', '.join(sorted(pipelines))}.")
    return pipelines[name]
