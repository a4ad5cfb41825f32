"""The ``points_to_mesh`` pipeline: a point cloud (or a mesh) in, an artist mesh written by the mesh model out.

MeshAnything-style: :mod:`training.mesh_lm` reads the points (and their normals) and writes the
mesh face by face in :mod:`training.tokenizer`'s tokens, every token held to the grammar, so the
result always decodes. The faces so far are the job's partial result; cancel works between two
tokens. The summary measures the result against the input points (Chamfer-L1 in the input's
canonical box) and, on request, the deterministic ``artist`` pipeline at the same face count on
the same measure, so the learned result is never shown without its reference.

Frames: the model works Z up; the input is read as Y up (glTF, OBJ and most PLY writers) unless
``up_axis`` says Z, and the result is returned in the input's frame and scale.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.conventions import BLENDER_FROM_GLTF
from backend.errors import BadParams
from backend.mesh.metrics import polygon_report
from backend.mesh.points import PointCloud
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult, needs_torch
from backend.pipelines.text_to_mesh import _model_mesh, _polygon_mesh
from backend.progress import ProgressFn, report_partial, subrange

#: Points on each surface for the Chamfer figures of the summary.
CHAMFER_POINTS = 20_000


class PointsToMeshParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: str | None = Field(None, max_length=500, description="A checkpoint folder or hub repo id; none: the "
                                                                  "shipped mesh model.")
    max_faces: int = Field(800, ge=4, le=4000, description="Stop after this many faces (the shipped model was "
                                                           "trained on meshes of at most 800).")
    temperature: float = Field(0.5, ge=0.0, le=2.0, description="Sampling temperature; 0: the likeliest token.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling share.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed (the same seed gives the same mesh).")
    up_axis: Literal["y", "z"] = Field("y", description="The input's up axis: y (glTF, OBJ, Blender's exports) or z.")
    compare_artist: bool = Field(True, description="Also run the deterministic artist pipeline at the same face "
                                                   "count (mesh inputs only) and report both Chamfer figures.")


def _model_frame(points: np.ndarray, up_axis: str) -> np.ndarray:
    return points @ BLENDER_FROM_GLTF.T if up_axis == "y" else points


def _file_frame(points: np.ndarray, up_axis: str) -> np.ndarray:
    return points @ BLENDER_FROM_GLTF if up_axis == "y" else points


def run(inputs: dict, params: PointsToMeshParams, progress: ProgressFn) -> PipelineResult:
    import torch

    from training.mesh_lm import generate
    from training.registry import WeightsNotFound, load_mesh_lm

    cloud: PointCloud = inputs["points"]
    start = time.perf_counter()
    try:
        model, record = load_mesh_lm(params.weights)
    except WeightsNotFound as exc:
        raise BadParams(f"No weights for the mesh model: {exc}.") from None
    levels = (1 << model.config.bits) - 1
    points = _model_frame(cloud.points, params.up_axis)
    normals = _model_frame(cloud.normals, params.up_axis)
    low, high = points.min(0), points.max(0)
    centre, extent = (low + high) / 2, float((high - low).max())
    scale = extent / levels                     # one quantization step, as the training packs have it
    offset = centre - scale * levels / 2
    n = int(record.get("train", {}).get("lm_points", 2048))
    pick = np.random.default_rng(params.seed).choice(len(points), n, replace=len(points) < n)
    condition = np.concatenate([(points[pick] - centre) / extent * 2.0, normals[pick]], 1)
    cond = model.condition(points=torch.from_numpy(condition[None].astype(np.float32)))

    def to_input(vertices_q: np.ndarray) -> np.ndarray:
        return _file_frame(np.asarray(vertices_q, dtype=np.float64) * scale + offset, params.up_axis)

    now = {"fraction": 0.0, "stage": "generating"}
    generating = subrange(progress, 0.0, 0.8 if params.compare_artist and cloud.from_mesh else 0.95)

    def on_face(decoder) -> None:
        count = decoder.face_count()
        now.update(fraction=min(count / params.max_faces, 0.99), stage=f"generating: {count} faces")

        def mesh_now():
            vertices, faces = decoder.mesh()
            return _polygon_mesh(to_input(vertices), faces) if faces else None

        report_partial(generating, mesh_now, count)

    def should_stop() -> bool:
        generating(now["fraction"], now["stage"])
        return False

    sample = generate(model, cond, max_faces=params.max_faces, temperature=params.temperature, top_p=params.top_p,
                      seed=params.seed, should_stop=should_stop, on_progress=on_face)
    mesh = _model_mesh(to_input(np.asarray(sample.vertices).reshape(-1, 3)), sample.faces, "these points")
    seconds_generate = time.perf_counter() - start
    report = polygon_report(mesh.faces, mesh.face_sizes)
    summary = {"model": "meshsmith", "weights_step": record.get("step"), "faces": report["faces"],
               "quads": report["quads"], "triangles": report["triangles"], "manifold": report["manifold"],
               "closed": report["closed"], "vertices": int(len(mesh.vertices)), "tokens": len(sample.tokens),
               "tokens_per_second": round(sample.tokens_per_second, 1),
               "stopped": "end" if sample.finished else "max_faces", "input_points": int(len(cloud.points)),
               "input_normals": "given" if cloud.had_normals else "estimated",
               "seconds_generate": round(seconds_generate, 3)}
    progress(0.8 if params.compare_artist and cloud.from_mesh else 0.95, "measuring")
    summary["chamfer_l1"] = round(_chamfer_to_points(mesh, cloud.points), 6)
    if params.compare_artist and cloud.from_mesh:
        summary["artist"] = _artist_reference(cloud, report["faces"], subrange(progress, 0.8, 0.99))
    summary["seconds"] = round(time.perf_counter() - start, 3)
    progress(1.0, "done")
    return PipelineResult(mesh=mesh, summary=summary)


def _chamfer_to_points(mesh: Mesh, points: np.ndarray) -> float:
    """Symmetric Chamfer-L1 between the mesh's surface samples and the input points, in the canonical
    box of the points (longest side 2): comparable across inputs of any scale."""
    from scipy.spatial import cKDTree

    from backend.mesh.sampling import sample_surface

    rng = np.random.default_rng(0)
    ref = points if len(points) <= CHAMFER_POINTS else points[rng.choice(len(points), CHAMFER_POINTS, replace=False)]
    ours, _, _ = sample_surface(mesh.vertices, mesh.faces, CHAMFER_POINTS, seed=0)
    extent = float(np.ptp(points, axis=0).max()) / 2.0
    d1, _ = cKDTree(ref).query(ours)
    d2, _ = cKDTree(ours).query(ref)
    return float((d1.mean() + d2.mean()) / 2.0 / extent)


def _artist_reference(cloud: PointCloud, faces: int, progress: ProgressFn) -> dict:
    """The artist pipeline at ``faces`` on the mesh the points came from: its Chamfer to the same points."""
    from backend.mesh.retopo.artist import retopo

    vertices, triangles = cloud.source
    start = time.perf_counter()
    result = retopo(vertices, triangles, target_faces=max(faces, 100), mode="triangles", progress=progress)
    flat, sizes = result.mesh_arrays()
    reference = Mesh(result.vertices, flat, sizes)
    return {"faces": int(len(sizes) if sizes is not None else len(flat)),
            "chamfer_l1": round(_chamfer_to_points(reference, cloud.points), 6),
            "seconds": round(time.perf_counter() - start, 3)}


def estimate(facts: dict[str, dict], params: PointsToMeshParams) -> MemoryEstimate:
    return MemoryEstimate(int(300 * 2**20 + 20_000 * params.max_faces + 200 * facts.get("points", {}).get("points", 0)),
                          "the face count")


PIPELINE = Pipeline(
    name="points_to_mesh",
    title="Artist (learned)",
    params=PointsToMeshParams,
    inputs=("points",),
    run=run,
    required=("points",),
    estimate=estimate,
    needs=needs_torch(),
)
