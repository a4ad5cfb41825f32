"""Meshes for the mesh language models: read, reduced to a face budget, quantized, tokenized.

A mesh at or under the budget (800 faces by default) keeps its own (artist) topology; a larger one
is reduced with the project's artist pipeline (:func:`backend.mesh.retopo.artist.retopo`: edge
collapses in the ``triangles`` mode, quad-dominant remeshing in ``quad_dominant``). Either way it
is then quantized (:func:`training.tokenizer.quantize`), which merges vertices that share a step
and drops faces that collapse, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.tokenizer import DEFAULT_BITS, QuantizedMesh, Vocabulary, amt_tokens, encode, naive_tokens, quantize

DEFAULT_MAX_FACES = 800


@dataclass
class Prepared:
    mesh: QuantizedMesh
    source_faces: int                 # polygons of the file
    kept_topology: bool               # at or under the budget: the file's own faces
    seconds: dict = field(default_factory=dict)


def polygons_of(path: Path) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A mesh file's vertices and polygons (triangles and quads as written)."""
    from backend.mesh.io import load_mesh
    from backend.mesh.polygons import from_mesh

    mesh = load_mesh(path)
    polygons = from_mesh(mesh.faces, mesh.face_sizes)
    return mesh.vertices, [tuple(int(i) for i in p if i >= 0) for p in polygons]


def reduce_faces(vertices: np.ndarray, polygons: list[tuple[int, ...]], max_faces: int, *,
                 mode: str = "triangles") -> tuple[np.ndarray, list[tuple[int, ...]], bool]:
    """The mesh itself when it has at most ``max_faces`` polygons, else the artist pipeline's result
    at that budget: (vertices, polygons, kept)."""
    from backend.mesh.polygons import to_mesh
    from backend.mesh.retopo.artist import retopo

    if len(polygons) <= max_faces:
        return vertices, polygons, True
    padded = np.array([tuple(p) + (-1,) * (4 - len(p)) for p in polygons], dtype=np.int64)
    triangles, _ = to_mesh(vertices, padded)
    # The remesher lands within a tolerance of its target: aim a little under the budget.
    target = max(50, int(max_faces * 0.92))
    for _ in range(4):
        result = retopo(vertices, triangles, target_faces=target, mode=mode, sharp_angle=30.0)
        out = [tuple(int(i) for i in p if i >= 0) for p in result.polygons]
        if len(out) <= max_faces or target <= 50:
            return result.vertices, out, False
        target = max(50, int(target * max_faces / len(out) * 0.95))
    raise ValueError(f"could not reduce the mesh to {max_faces} faces (got {len(out)})")


def prepare(path: Path, *, max_faces: int = DEFAULT_MAX_FACES, bits: int = DEFAULT_BITS,
            mode: str = "triangles") -> Prepared:
    import time

    t = time.perf_counter()
    vertices, polygons = polygons_of(path)
    t_read = time.perf_counter() - t
    reduced_v, reduced_p, kept = reduce_faces(vertices, polygons, max_faces, mode=mode)
    t_reduce = time.perf_counter() - t - t_read
    return Prepared(quantize(reduced_v, reduced_p, bits), len(polygons), kept,
                    {"read": t_read, "reduce": t_reduce})


def token_counts(mesh: QuantizedMesh, vocab: Vocabulary | None = None) -> dict:
    """Tokens per face of the three encodings (triangles + quads count one face each)."""
    faces = len(mesh.faces)
    ours = len(encode(mesh, vocab))
    return {"faces": faces, "quads": mesh.quads, "naive": naive_tokens(mesh) / faces,
            "amt": amt_tokens(mesh) / faces, "ours": ours / faces, "tokens": ours}
