"""The ``text_to_mesh`` pipeline: a prompt in, a mesh written face by face by a language model out.

Models (``model``):

- ``meshsmith``: Meshsmith's own mesh transformer (:mod:`training.mesh_lm`) on its caption path,
  weights through :mod:`training.registry` (the shipped ones, or a folder / hub repo id);
- ``llama-mesh``: LLaMA-Mesh (:mod:`training.llama_mesh`), from a GGUF file through llama.cpp
  (CPU, minutes per mesh) or the full weights through transformers (GPU), whichever ``weights``
  names; by default the Q4_K_M GGUF build if it is in the Hugging Face cache. Never downloaded
  by a job.

Either way sampling is held to the model's grammar, the faces so far are the job's partial
result (Blender shows them as they come), cancel works between two tokens, and the result is
optionally made closed by the watertight engine or re-laid out by the artist engine. The mesh
is returned in the glTF frame (Y up), about two units across.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backend.errors import BadParams
from backend.mesh.metrics import polygon_report, surface_area
from backend.mesh.types import Mesh
from backend.pipelines.pipeline import MemoryEstimate, Pipeline, PipelineResult, needs_torch
from backend.progress import ProgressFn, report_partial, subrange


class TextToMeshParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=500, description="What to make, e.g. 'a wooden chair'.")
    model: Literal["meshsmith", "llama-mesh"] = Field(
        "meshsmith", description="meshsmith: the small mesh transformer shipped with Meshsmith (CPU, seconds); "
                                 "llama-mesh: LLaMA-Mesh 8B from a GGUF file (CPU, minutes) or transformers weights "
                                 "(GPU), which you fetch once.")
    weights: str | None = Field(None, max_length=500, description="A checkpoint folder or hub repo id (meshsmith); "
                                "a .gguf file, a transformers folder or a hub repo id in the Hugging Face cache "
                                "(llama-mesh). None: the shipped weights / LLaMA-Mesh's Q4_K_M GGUF from the cache.")
    max_faces: int = Field(500, ge=4, le=2000, description="Stop after this many faces (LLaMA-Mesh was trained "
                                                           "on meshes of at most 500).")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 picks the likeliest "
                                                                "token every time.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling: keep the likeliest tokens that "
                                                          "make up this share of the probability.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed: the same seed and prompt give the same mesh.")
    constrained: bool = Field(True, description="llama-mesh: hold the text to valid OBJ lines (vertices before "
                                                "the faces that use them); the meshsmith model always is.")
    repair: Literal["none", "watertight", "artist"] = Field(
        "none", description="none: the faces as written; watertight: closed and manifold by the watertight "
                            "engine; artist: re-laid out as quad-dominant topology at about the same face count.")


def _frame(vertices_zup: np.ndarray) -> np.ndarray:
    """Z-up model coordinates as the result's glTF Y-up frame."""
    from backend.conventions import BLENDER_FROM_GLTF

    return np.asarray(vertices_zup, dtype=np.float64) @ BLENDER_FROM_GLTF


def _meshsmith(params: TextToMeshParams, progress: ProgressFn) -> tuple[Mesh, dict]:
    from training.mesh_lm import caption_bytes, generate
    from training.registry import WeightsNotFound, load_mesh_lm

    try:
        model, record = load_mesh_lm(params.weights)
    except WeightsNotFound as exc:
        raise BadParams(f"No weights for the meshsmith model: {exc}.") from None
    cond = model.condition(caption=caption_bytes([params.prompt]))
    budget = params.max_faces

    def mesh_of(decoder) -> Mesh | None:
        vertices, faces = decoder.mesh()
        if not faces:
            return None
        quantized = np.asarray(vertices, dtype=np.float64)
        scale = 2.0 / (2 ** model.config.bits - 1)
        return _polygon_mesh(_frame(quantized * scale - 1.0), faces)

    now = {"fraction": 0.0, "stage": "generating"}

    def on_face(decoder) -> None:
        count = decoder.face_count()
        now.update(fraction=min(count / budget, 0.99), stage=f"generating: {count} faces")
        report_partial(progress, lambda: mesh_of(decoder), count)

    def should_stop() -> bool:
        progress(now["fraction"], now["stage"])     # raises Cancelled when the job was cancelled
        return False

    sample = generate(model, cond, max_faces=budget, temperature=params.temperature, top_p=params.top_p,
                      seed=params.seed, should_stop=should_stop, on_progress=on_face)
    quantized = np.asarray(sample.vertices, dtype=np.float64).reshape(-1, 3)
    mesh = _model_mesh(_frame(quantized * (2.0 / (2 ** model.config.bits - 1)) - 1.0), sample.faces, "this prompt")
    facts = {"model": "meshsmith", "weights_step": record.get("step"), "tokens": len(sample.tokens),
             "tokens_per_second": round(sample.tokens_per_second, 1),
             "stopped": "end" if sample.finished else "max_faces"}
    return mesh, facts


def _llama_mesh(params: TextToMeshParams, progress: ProgressFn) -> tuple[Mesh, dict]:
    from training.llama_mesh import DEFAULT_GGUF_FILE, HUB_GGUF, ModelNotFound, ObjStream, find_model, \
        load_runner, prompt_for

    try:
        spec = find_model(params.weights or HUB_GGUF, DEFAULT_GGUF_FILE)
        progress(0.0, f"loading LLaMA-Mesh ({spec.kind})")
        runner = load_runner(spec)
        prompt = prompt_for(params.prompt)
    except (ModelNotFound, ValueError) as exc:
        raise BadParams(str(exc)) from None
    stream = ObjStream()

    def mesh_now() -> Mesh | None:
        vertices, faces, _ = stream.mesh()
        return Mesh(vertices, faces) if len(faces) else None

    def on_text(chunk: str) -> bool:
        added = stream.feed(chunk)
        count = stream.face_count
        progress(min(count / params.max_faces, 0.99), f"generating: {count} faces, {len(stream.vertices)} vertices")
        if added:
            report_partial(progress, mesh_now, count)
        return count >= params.max_faces

    # LLaMA-Mesh writes about 12 tokens per vertex or face line; a mesh of n faces has about n / 2 vertices.
    generation = runner.generate(prompt, max_tokens=int(params.max_faces * 1.6 * 12) + 64,
                                 temperature=params.temperature, top_p=params.top_p, seed=params.seed,
                                 constrained=params.constrained, on_text=on_text)
    stream.close()
    if not stream.faces:
        problems = ", ".join(f"{n} {what}" for what, n in stream.problems.items()) or "nothing like OBJ"
        raise BadParams(f"LLaMA-Mesh wrote no usable faces ({problems}); try another seed, or turn 'constrained' on.")
    vertices, faces, _ = stream.mesh()
    facts = {"model": "llama-mesh", "runner": spec.kind, "weights": spec.path.name, "prompt_used": prompt,
             "tokens": generation.tokens, "tokens_per_second": round(generation.tokens / max(generation.seconds, 1e-9), 2),
             "stopped": generation.stopped, "problems": stream.problems}
    return Mesh(vertices, faces), facts


def _model_mesh(vertices: np.ndarray, polygons: list[tuple[int, ...]], source: str) -> Mesh:
    """What the model wrote from ``source`` as a :class:`Mesh`; :class:`BadParams` when it wrote no face
    or only faces of zero area (nothing to import or measure)."""
    if not polygons:
        raise BadParams(f"The model wrote no faces for {source}; try another seed or a higher temperature.")
    mesh = _polygon_mesh(vertices, polygons)
    if not surface_area(mesh.vertices, mesh.faces) > 0:
        raise BadParams(f"The model wrote {len(polygons)} faces, all of zero area (no surface); "
                        "try another seed or a higher temperature.")
    return mesh


def _polygon_mesh(vertices: np.ndarray, polygons: list[tuple[int, ...]]) -> Mesh:
    """Triangles and quads as a :class:`Mesh` (a quad as two triangles sharing its first corner)."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    faces = np.asarray(tris, dtype=np.int64)
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    sizes = np.array([len(p) for p in polygons], dtype=np.uint8)
    return Mesh(np.asarray(vertices, dtype=np.float64)[used], remap[faces], None if np.all(sizes == 3) else sizes)


def run(inputs: dict, params: TextToMeshParams, progress: ProgressFn) -> PipelineResult:
    start = time.perf_counter()
    generating = subrange(progress, 0.0, 0.9 if params.repair != "none" else 1.0)
    mesh, facts = (_meshsmith if params.model == "meshsmith" else _llama_mesh)(params, generating)
    seconds_generate = time.perf_counter() - start
    written = polygon_report(mesh.faces, mesh.face_sizes)
    if params.repair != "none":
        mesh = _repair(mesh, params.repair, written["faces"], subrange(progress, 0.9, 1.0))
    report = polygon_report(mesh.faces, mesh.face_sizes)
    summary = {**facts, "prompt": params.prompt, "faces_written": written["faces"],
               "manifold_as_written": written["manifold"], "closed_as_written": written["closed"],
               "faces": report["faces"], "quads": report["quads"], "manifold": report["manifold"],
               "closed": report["closed"], "vertices": int(len(mesh.vertices)), "repair": params.repair,
               "seconds_generate": round(seconds_generate, 3), "seconds": round(time.perf_counter() - start, 3)}
    progress(1.0, "done")
    return PipelineResult(mesh=mesh, summary=summary)


def _repair(mesh: Mesh, how: str, faces: int, progress: ProgressFn) -> Mesh:
    tris = mesh.faces
    if how == "watertight":
        from backend.mesh.remesh.watertight import watertight

        from backend.mesh.remesh.decimate import decimate

        result = watertight(mesh.vertices, tris, resolution=128, progress=subrange(progress, 0.0, 0.8))
        # The grid's surface has tens of thousands of faces; a written mesh has hundreds.
        vertices, closed = decimate(result.vertices, result.faces, max(2000, 4 * faces),
                                    progress=subrange(progress, 0.8, 1.0))
        return Mesh(vertices, closed)
    from backend.mesh.retopo.artist import retopo

    result = retopo(mesh.vertices, tris, target_faces=max(faces, 100), mode="quad_dominant", progress=progress)
    flat, sizes = result.mesh_arrays()
    return Mesh(result.vertices, flat, sizes)


def estimate(facts: dict[str, dict], params: TextToMeshParams) -> MemoryEstimate:
    # The 8B model's memory is the runner's (mapped from its file); this is the pipeline's own.
    return MemoryEstimate(int(200 * 2**20 + 20_000 * params.max_faces), "the face count")


PIPELINE = Pipeline(
    name="text_to_mesh",
    title="From Text",
    params=TextToMeshParams,
    inputs=(),
    run=run,
    required=(),
    estimate=estimate,
    needs_for=lambda params: needs_torch("choose the llama-mesh model") if params.model == "meshsmith" else (),
)
