"""The ``artist`` pipeline: any mesh in, low-poly quad-dominant (or pure-quad, or triangle) topology out.

The method is :mod:`backend.mesh.retopo.artist`; this module only maps parameters and reports.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.mesh.metrics import canonical_chamfer_l1, polygon_report
from backend.mesh.retopo.artist import retopo
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult
from backend.progress import ProgressFn

#: Samples per surface of the optional Chamfer report: the benches' figure, comparable with
#: their tables (Chamfer between point samples shrinks as the samples grow denser).
CHAMFER_SAMPLES = 1_000_000


class ArtistParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    faces: int = Field(2000, ge=100, le=100_000,
                       description="Faces (polygons) wanted; the result lands within 10% of it.")
    mode: Literal["quads", "quad_dominant", "triangles"] = Field(
        "quad_dominant", description="Mostly quads with a few triangles, quads only, or triangles only.")
    sharp_edges: bool = Field(True, description="Keep the input's sharp edges as edges of the result.")
    sharp_angle: float = Field(30.0, gt=0.0, lt=180.0,
                               description="An edge is sharp when its faces meet at more than this angle (degrees).")
    resolution: int | None = Field(
        None, ge=16, le=1024,
        description="Grid of the watertight step for broken inputs; none: chosen from the face budget "
                    "(and skipped for clean inputs).")
    measure_chamfer: bool = Field(
        False, description="Also report Chamfer-L1 to the input in its canonical box (the benches' convention: "
                           f"{CHAMFER_SAMPLES:,} samples per surface; takes seconds).")


def run(inputs: dict[str, Mesh], params: ArtistParams, progress: ProgressFn) -> PipelineResult:
    mesh = inputs["mesh"]
    start = time.perf_counter()
    result = retopo(mesh.vertices, mesh.faces, target_faces=params.faces, mode=params.mode,
                    sharp_angle=params.sharp_angle if params.sharp_edges else None,
                    resolution=params.resolution, progress=progress)
    seconds = time.perf_counter() - start
    faces, face_sizes = result.mesh_arrays()
    report = polygon_report(faces, face_sizes)
    summary = {
        "faces": report["faces"],
        "quads": report["quads"],
        "triangles": report["triangles"],
        "quad_ratio": round(report["quad_ratio"], 4),
        "valence4_share": round(report["valence4_share"], 4),
        "manifold": report["manifold"],
        "closed": report["closed"],
        "vertices": int(len(result.vertices)),
        "mode": params.mode,
        "source": result.source,
        "mended": result.mended,
        "resolution": result.resolution,
        "remesher_runs": len(result.remesher_targets),
        "seconds": round(seconds, 3),
    }
    if params.measure_chamfer:
        progress(0.98, "measuring Chamfer to the input")
        start = time.perf_counter()
        summary["chamfer_l1"] = round(canonical_chamfer_l1(mesh.vertices, mesh.faces, result.vertices, faces,
                                                           samples=CHAMFER_SAMPLES), 6)
        summary["chamfer_samples"] = CHAMFER_SAMPLES
        summary["chamfer_seconds"] = round(time.perf_counter() - start, 3)
    return PipelineResult(mesh=Mesh(result.vertices, faces, face_sizes), summary=summary)


#: Peak bytes per unit of ``area_ratio * resolution^2`` of the watertight step (its remesh is
#: also the remesher's input), per face asked for (Instant Meshes' fields) and per input face;
#: checked against measured runs by ``python -m backend bench budget``.
BYTES_PER_BAND_CELL = 3500
BYTES_PER_RESULT_FACE = 8000
BYTES_PER_INPUT_FACE = 3000


def estimate(facts: dict[str, dict], params: ArtistParams) -> MemoryEstimate:
    from backend.mesh.retopo.artist import AUTO_RESOLUTION

    mesh = facts["mesh"]
    resolution = params.resolution or AUTO_RESOLUTION[1]
    band = max(float(mesh.get("area_ratio", 3.0)), 0.5) * resolution ** 2
    return MemoryEstimate(int(BYTES_PER_BAND_CELL * band + BYTES_PER_RESULT_FACE * params.faces
                              + BYTES_PER_INPUT_FACE * mesh["faces"]), "the resolution or the face count")


#: The quad modes' remesher (the triangle mode decimates and does without it).
INSTANT_MESHES = (("pyinstantmeshes", "Instant Meshes publishes no build for this platform and Python (on Intel "
                                      "Macs there is none); run the backend from an environment where "
                                      "pip install pyinstantmeshes==1.0.0 works, or use the triangles mode"),)

PIPELINE = Pipeline(
    name="artist",
    title="Artist topology",
    params=ArtistParams,
    inputs=("mesh",),
    run=run,
    estimate=estimate,
    needs=INSTANT_MESHES,
    needs_for=lambda params: () if params.mode == "triangles" else INSTANT_MESHES,   # triangles: decimation
)
