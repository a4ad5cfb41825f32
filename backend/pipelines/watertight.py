"""The ``watertight`` pipeline: any mesh in, a closed, manifold, outward-oriented remesh out."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.mesh.metrics import is_oriented, is_watertight
from backend.mesh.remesh.watertight import watertight
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult
from backend.progress import ProgressFn


class WatertightParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: int = Field(
        128, ge=16, le=1024, description="Grid cells along the longest side; detail grows with it, and so does time."
    )
    keep: Literal["all", "largest"] = Field(
        "all", description="Keep every solid, or only the largest by volume (with its cavities)."
    )
    cavities: Literal["fill", "keep"] = Field(
        "fill", description="Fill enclosed empty space, or keep it as inward-facing inner surfaces."
    )
    target_faces: int | None = Field(
        None, ge=4, description="Decimate to about this many faces, keeping the mesh closed; none: no decimation."
    )
    sharp_features: bool = Field(
        True, description="Place vertices where the input's tangent planes meet, keeping creases and corners; "
        "off: vertices at the mean of their cell's crossings (smoother)."
    )


def run(inputs: dict[str, Mesh], params: WatertightParams, progress: ProgressFn) -> PipelineResult:
    mesh = inputs["mesh"]
    start = time.perf_counter()
    result = watertight(mesh.vertices, mesh.faces, resolution=params.resolution,
                        keep=params.keep, cavities=params.cavities,
                        target_faces=params.target_faces, sharp_features=params.sharp_features,
                        progress=progress)
    seconds = time.perf_counter() - start
    closed = bool(is_watertight(result.faces) and is_oriented(result.faces))
    summary = {
        "faces": int(len(result.faces)),
        "vertices": int(len(result.vertices)),
        "watertight": closed,
        "resolution": params.resolution,
        "keep": params.keep,
        "cavities": params.cavities,
        "seconds": round(seconds, 3),
    }
    return PipelineResult(mesh=Mesh(result.vertices, result.faces), summary=summary)


#: Peak bytes per unit of ``area_ratio * resolution^2`` (the narrow band's nodes and the mesh
#: made from them; with ``target_faces`` also the decimation of that mesh) and per input face;
#: ``python -m backend bench budget`` checks every estimate covers its measured run.
BYTES_PER_BAND_CELL = 1600
BYTES_PER_BAND_CELL_DECIMATED = 3000
BYTES_PER_INPUT_FACE = 2000


def estimate(facts: dict[str, dict], params: WatertightParams) -> MemoryEstimate:
    mesh = facts["mesh"]
    band = max(float(mesh.get("area_ratio", 3.0)), 0.5) * params.resolution ** 2
    per_cell = BYTES_PER_BAND_CELL if params.target_faces is None else BYTES_PER_BAND_CELL_DECIMATED
    return MemoryEstimate(int(per_cell * band + BYTES_PER_INPUT_FACE * mesh["faces"]),
                          "the resolution (memory grows with its square)")


PIPELINE = Pipeline(
    name="watertight",
    title="Watertight",
    params=WatertightParams,
    inputs=("mesh",),
    run=run,
    estimate=estimate,
)
