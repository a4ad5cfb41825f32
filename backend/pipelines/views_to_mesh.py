"""The ``views_to_mesh`` pipeline: posed views (+ normal maps) in, a textured watertight mesh out.

Inputs, exactly one of: ``views`` (a ZIP of render/'s views folder: ``cameras.json``, images,
optional normal maps) or ``grid`` (a Zero123++-style 3 x 2 grid image with its fixed poses,
:mod:`backend.mesh.texture.grid`). Methods:

- ``model``: the learned reconstruction (:mod:`training.model`, weights through
  :mod:`training.registry`: the shipped ones by default, or a folder / hub repo id);
  needs PyTorch;
- ``hull``: the visual hull of the masks, refined by the views' normal maps when they have
  them (:mod:`training.baseline`), no learning, no torch.

The surface is closed by construction (marching cubes over a padded grid); small floating
pieces are dropped, and a result that is still not a closed, oriented manifold goes through
the watertight engine. It is then textured from the same views by the texture pipeline's
bake. The result is in the cameras' world frame, written glTF Y-up like every result (Blender
imports it where the cameras' world puts it).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.conventions import BLENDER_FROM_GLTF
from backend.errors import BadParams
from backend.mesh.metrics import connected_components, is_oriented, is_watertight
from backend.mesh.texture.projection import PosedViews
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult, needs_torch
from backend.progress import ProgressFn, subrange

#: Pieces below this share of the largest piece's faces are dropped (floaters of the field).
FLOATER_SHARE = 0.01


class ViewsToMeshParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["model", "hull"] = Field(
        "model", description="model: the learned reconstruction (needs PyTorch and weights); hull: the visual hull "
                             "of the masks, refined by the normal maps when the views have them (no learning).")
    resolution: int = Field(128, ge=32, le=384, description="Grid nodes along each side of the box the surface is "
                                                            "extracted from; detail and time grow with it.")
    use_normals: bool = Field(True, description="Use the views' normal maps when they have them.")
    weights: str | None = Field(None, max_length=300, description="Model only: a checkpoint folder or a Hugging Face "
                                                                  "repo id (owner/name); none: the shipped weights.")
    target_faces: int | None = Field(20000, ge=100, description="Decimate the closed result to about this many "
                                     "faces (it stays closed); none: every face of the extraction (70,000-100,000 at "
                                     "resolution 128).")
    texture: bool = Field(True, description="Bake a base colour texture from the views onto the result.")
    texture_size: int = Field(1024, ge=64, le=4096, description="Side of the baked texture in pixels.")


def _to_file_frame(world: np.ndarray) -> np.ndarray:
    """World (Blender Z-up) points as glTF Y-up file coordinates."""
    return np.asarray(world, dtype=np.float64) @ BLENDER_FROM_GLTF


def _drop_floaters(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    count, labels = connected_components(faces)
    if count <= 1:
        return vertices, faces, 0
    sizes = np.bincount(labels, minlength=count)
    keep = sizes >= FLOATER_SHARE * sizes.max()
    faces = faces[keep[labels]]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces], int((~keep).sum())


def run(inputs: dict, params: ViewsToMeshParams, progress: ProgressFn) -> PipelineResult:
    views: PosedViews = inputs.get("views") or inputs["grid"]
    start = time.perf_counter()
    notes = []
    progress(0.0, "reconstructing")
    shape_progress = subrange(progress, 0.0, 0.6 if params.texture else 0.95)
    if params.method == "model":
        from training.infer import reconstruct
        from training.registry import WeightsNotFound, load_views_model

        try:
            model, record = load_views_model(params.weights)
        except WeightsNotFound as exc:
            raise BadParams(f"No weights for method 'model': {exc}. Choose method 'hull', or name weights.") from None
        with_normals = params.use_normals and all(v.normal_world is not None for v in views.views)
        vertices, faces = reconstruct(model, views, params.resolution, use_normals=with_normals,
                                      progress=lambda f: shape_progress(f, "reconstructing"))
        method = {"method": "model", "weights_step": record.get("step"), "normals_used": with_normals}
    else:
        from training.baseline import visual_hull

        try:
            vertices, faces = visual_hull(views, params.resolution, refine=params.use_normals)
        except ValueError as exc:
            raise BadParams(str(exc)) from None
        method = {"method": "hull",
                  "normals_used": params.use_normals and all(v.normal_world is not None for v in views.views)}
    seconds_shape = time.perf_counter() - start
    if len(faces) == 0:
        raise BadParams("The reconstruction is empty: the views' masks and cameras do not agree on an object "
                        "(are they views of one object, with its background masked out?).")
    vertices, faces, dropped = _drop_floaters(vertices, faces)
    if dropped:
        notes.append(f"dropped {dropped} small floating piece(s)")
    if not (is_watertight(faces) and is_oriented(faces)):
        from backend.mesh.remesh.watertight import watertight

        fixed = watertight(vertices, faces, resolution=params.resolution, progress=subrange(progress, 0.6, 0.65))
        vertices, faces = fixed.vertices, fixed.faces
        notes.append("closed by the watertight engine")
    if params.target_faces and len(faces) > params.target_faces:
        from backend.mesh.remesh.decimate import decimate

        vertices, faces = decimate(vertices, faces, params.target_faces, progress=subrange(progress, 0.62, 0.65))
    closed = bool(is_watertight(faces) and is_oriented(faces))
    mesh = Mesh(_to_file_frame(vertices), np.asarray(faces, dtype=np.int64))
    summary = {**method, "resolution": params.resolution, "views": len(views.views),
               "seconds_shape": round(seconds_shape, 3)}
    extras = {}
    if params.texture:
        from backend.mesh.texture.bake import bake_textures

        file_to_world = np.eye(4)
        file_to_world[:3, :3] = BLENDER_FROM_GLTF
        posed = PosedViews(views.views, file_to_world=file_to_world)
        # Marching-cubes surfaces are dense: planar projection charts unwrap them in a moment.
        baked = bake_textures(mesh, views=posed, texture_size=params.texture_size, normal_map=False,
                              uv_method="project", progress=subrange(progress, 0.65, 0.98))
        mesh = baked.mesh
        extras["base_color.png"] = mesh.material.base_color
        summary["texture"] = {k: v for k, v in baked.summary.items() if isinstance(v, (int, float, str, bool))}
    # The shape's own closedness: a baked texture splits vertices along its UV seams in the file.
    summary.update(faces=int(len(mesh.faces)), vertices=int(len(mesh.vertices)), watertight=closed,
                   seconds=round(time.perf_counter() - start, 3))
    if notes:
        summary["notes"] = notes
    progress(1.0, "done")
    return PipelineResult(mesh=mesh, summary=summary, extras=extras)


#: Peak bytes: the field grid (float32 and float64 copies, marching cubes) per node, the
#: model's activations (fixed), the bake per texel, and the views' pixels.
BYTES_PER_NODE = 40
MODEL_BYTES = 600 * 2**20
BYTES_PER_TEXEL = 300
BYTES_PER_VIEW_PIXEL = 96


def estimate(facts: dict[str, dict], params: ViewsToMeshParams) -> MemoryEstimate:
    pixels = (facts.get("views") or facts.get("grid") or {}).get("pixels", 0)
    total = BYTES_PER_NODE * params.resolution ** 3 + BYTES_PER_VIEW_PIXEL * pixels
    if params.method == "model":
        total += MODEL_BYTES
    if params.texture:
        total += BYTES_PER_TEXEL * params.texture_size ** 2
    return MemoryEstimate(int(total), "the resolution or the texture size")


PIPELINE = Pipeline(
    name="views_to_mesh",
    title="From Views",
    params=ViewsToMeshParams,
    inputs=("views", "grid"),
    run=run,
    required=(),
    one_of=(("views", "grid"),),
    estimate=estimate,
    needs_for=lambda params: needs_torch("choose method 'hull'") if params.method == "model" else (),
)
