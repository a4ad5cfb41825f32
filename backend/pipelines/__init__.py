"""Pipelines by name: each is ``run(inputs, params, progress) -> PipelineResult``.

A pipeline is a plain function over validated arrays. It knows nothing of HTTP, job
stores or files on disk: the job runner and the command line load inputs, call it, and
write what it returns. Its parameters are a pydantic model (unknown keys are errors),
whose JSON schema ``GET /v1/health`` publishes.
"""

from __future__ import annotations

from backend.errors import BadParams
from backend.pipelines.pipeline import Pipeline, PipelineResult

__all__ = ["Pipeline", "PipelineResult", "get_pipeline", "registry"]


def registry() -> dict[str, Pipeline]:
    """All pipelines that work in this installation, by name."""
    from backend.pipelines import artist, points_to_mesh, text_to_mesh, texture, views_to_mesh, watertight

    return {p.name: p for p in (watertight.PIPELINE, artist.PIPELINE, texture.PIPELINE, views_to_mesh.PIPELINE,
                                text_to_mesh.PIPELINE, points_to_mesh.PIPELINE)}


def get_pipeline(name: str) -> Pipeline:
    pipelines = registry()
    if name not in pipelines:
        raise BadParams(f"Unknown pipeline {name!r}; this backend offers: {', '.join(sorted(pipelines))}.")
    return pipelines[name]
