"""The ``texture`` pipeline: a mesh in, the same mesh out with UVs, a baked base colour and normal map.

Inputs: ``mesh`` (the target) and exactly one colour source: ``source`` (a coloured mesh in
the same frame, e.g. the original of a remesh; it may be the target itself) or ``views``
(posed images in render/'s ``cameras.json`` format). The work is
:func:`backend.mesh.texture.bake.bake_textures`, which an "artist + texture" preset calls directly
after its remesh.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.mesh.texture.bake import HARD_ANGLE, bake_textures
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult
from backend.progress import ProgressFn


class TextureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texture_size: int = Field(
        1024, ge=64, le=8192, description="Side of the square textures in pixels; sets the texel density."
    )
    padding: int = Field(
        4, ge=0, le=64, description="Empty pixels around each UV island, so colours do not bleed across seams."
    )
    normal_map: bool = Field(
        True, description="Also bake a tangent-space normal map of the source's detail (from a source mesh, or "
                          "from views that carry normal maps)."
    )
    view_power: float = Field(
        4.0, ge=0.0, le=32.0, description="Posed views only: how strongly views facing the surface win over "
                                          "grazing ones (exponent of the cosine)."
    )
    roughness: float | None = Field(
        None, ge=0.0, le=1.0, description="Roughness of the result's material; none: the source's (glTF), else 0.8."
    )
    hard_angle: float | None = Field(
        HARD_ANGLE, gt=0.0, le=180.0, description="Edges whose faces meet at more than this many degrees shade "
                                                  "crisp (split normals); none: smooth everywhere."
    )
    uv_method: Literal["auto", "xatlas", "project", "keep"] = Field(
        "auto", description="UV unwrap: xatlas charts (low-poly meshes), planar projection charts (dense meshes, "
                            "fast), auto: xatlas up to 60,000 faces (when installed); or keep: bake into the target's own UVs "
                            "(TEXCOORD_0 of a one-primitive GLB, inside the 0..1 square)."
    )


def run(inputs: dict, params: TextureParams, progress: ProgressFn) -> PipelineResult:
    target: Mesh = inputs["mesh"]
    start = time.perf_counter()
    baked = bake_textures(target, source=inputs.get("source"), views=inputs.get("views"),
                          texture_size=params.texture_size, padding=params.padding, normal_map=params.normal_map,
                          view_power=params.view_power, roughness=params.roughness, uv_method=params.uv_method,
                          hard_angle=params.hard_angle,
                          progress=progress)
    mesh, material = baked.mesh, baked.mesh.material
    extras = {"base_color.png": material.base_color}
    if material.normal is not None:
        extras["normal.png"] = material.normal
    summary = {**baked.summary, "seconds_total": round(time.perf_counter() - start, 3)}
    return PipelineResult(mesh=mesh, summary=summary, extras=extras)


#: Peak bytes per texel (each covered texel's point, normal, colour and frame in float64;
#: measured 265 at 2,048 px by ``python -m backend bench budget``), per pixel of posed views,
#: per face of the target and the source.
BYTES_PER_TEXEL = 300
#: Fixed cost of a bake (the unwrap's and the colour source's structures).
BAKE_BYTES = 96 * 2**20
BYTES_PER_VIEW_PIXEL = 96
BYTES_PER_FACE = 4000


def estimate(facts: dict[str, dict], params: TextureParams) -> MemoryEstimate:
    faces = sum(facts.get(name, {}).get("faces", 0) for name in ("mesh", "source"))
    pixels = facts.get("views", {}).get("pixels", 0)
    largest = max((s for s in (512, 1024, 2048, 4096) if s < params.texture_size), default=None)
    return MemoryEstimate(int(BAKE_BYTES + BYTES_PER_TEXEL * params.texture_size ** 2 + BYTES_PER_VIEW_PIXEL * pixels
                              + BYTES_PER_FACE * faces),
                          f"texture_size (e.g. to {largest})" if largest else "the mesh's face count")


PILLOW = (("PIL", "pip install pillow into the backend's Python"),)
XATLAS = (("xatlas", "pip install xatlas==0.0.11 into the backend's Python"),)

PIPELINE = Pipeline(
    name="texture",
    title="Texture",
    params=TextureParams,
    inputs=("mesh", "source", "views"),
    run=run,
    required=("mesh",),
    one_of=(("source", "views"),),
    estimate=estimate,
    needs=PILLOW,
    needs_for=lambda params: PILLOW + (XATLAS if params.uv_method == "xatlas" else ()),   # auto: projects without it
)
