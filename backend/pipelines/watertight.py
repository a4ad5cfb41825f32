"""The ``watertight`` pipeline: any mesh in, a closed, manifold, outward-oriented remesh out."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from backend.mesh.io import Mesh
from backend.mesh.metrics import is_oriented, is_watertight
from backend.mesh.watertight import watertight
from backend.pipelines import Pipeline, PipelineResult
from backend.progress import ProgressFn


class WatertightParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: int = Field(
        128, ge=16, le=1024, description="Grid cells along the longest side; detail grows with it, and so does time."
    )


def run(inputs: dict[str, Mesh], params: WatertightParams, progress: ProgressFn) -> PipelineResult:
    mesh = inputs["mesh"]
    start = time.perf_counter()
    result = watertight(mesh.vertices, mesh.faces, resolution=params.resolution, progress=progress)
    seconds = time.perf_counter() - start
    closed = bool(is_watertight(result.faces) and is_oriented(result.faces))
    summary = {
        "faces": int(len(result.faces)),
        "vertices": int(len(result.vertices)),
        "watertight": closed,
        "resolution": params.resolution,
        "seconds": round(seconds, 3),
    }
    return PipelineResult(mesh=Mesh(result.vertices, result.faces), summary=summary)


PIPELINE = Pipeline(
    name="watertight",
    title="Watertight",
    params=WatertightParams,
    inputs=("mesh",),
    run=run,
)
