"""Meshes for the mesh language models: read, reduced to a face budget, quantized, tokenized.

Frame: Z up (Blender's). OBJ and glTF files are Y up by their conventions and are turned
(:data:`backend.conventions.BLENDER_FROM_GLTF`); PLY, STL and OFF are taken as Z up.

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


Y_UP_SUFFIXES = (".obj", ".glb", ".gltf")


def polygons_of(path: Path) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A mesh file's vertices (Z up) and polygons (triangles and quads as written)."""
    from backend.conventions import BLENDER_FROM_GLTF
    from backend.mesh.io import load_mesh
    from backend.mesh.polygons import from_mesh

    mesh = load_mesh(path)
    polygons = from_mesh(mesh.faces, mesh.face_sizes)
    vertices = mesh.vertices @ BLENDER_FROM_GLTF.T if Path(path).suffix.lower() in Y_UP_SUFFIXES else mesh.vertices
    return vertices, [tuple(int(i) for i in p if i >= 0) for p in polygons]


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
    # Thin, many-part shapes (a tree's needles, a sugar spoon) can keep the remesher above the
    # budget: close them on a coarse grid instead and collapse edges down to it.
    if mode == "triangles":
        from backend.mesh.remesh.decimate import decimate
        from backend.mesh.remesh.watertight import watertight

        for resolution in (64, 32):
            closed = watertight(vertices, triangles, resolution=resolution)
            v, f = decimate(closed.vertices, closed.faces, max(4, int(max_faces * 0.92)))
            if len(f) <= max_faces:
                return v, [tuple(int(i) for i in t) for t in f], False
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


# -- packs for training ------------------------------------------------------------------------

#: 2: ``offset`` and ``scale``, the quantization's map from the source's frame (benches put other meshes
#: of that frame, e.g. the artist pipeline's, beside the packed one).
PACK_VERSION = 2
#: Conditioning points per asset: area-uniform and on salient edges, with normals.
UNIFORM_POINTS, SALIENT_POINTS = 3072, 1024


def to_pack_frame(points: np.ndarray, offset: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """Points of the source's frame in a pack's ``[-1, 1]^3`` (its ``offset``, ``scale`` and ``bits``)."""
    return ((np.asarray(points, dtype=np.float64) - offset) / scale) / ((1 << bits) - 1) * 2.0 - 1.0


def normalized(q: QuantizedMesh, points: np.ndarray) -> np.ndarray:
    """Points of the mesh's frame in the quantized mesh's ``[-1, 1]^3`` (grid step ``2 / (levels - 1)``)."""
    offset = np.zeros(3) if q.offset is None else q.offset
    return ((points - offset) / q.scale) / ((1 << q.bits) - 1) * 2.0 - 1.0


def condition_points(vertices: np.ndarray, polygons: list[tuple[int, ...]], seed: int = 0) -> np.ndarray:
    """(UNIFORM_POINTS + SALIENT_POINTS, 6): surface points with normals, uniform by area then on salient
    edges (normals of the nearest uniform point), from the source mesh (before any reduction)."""
    from scipy.spatial import cKDTree

    from backend.mesh.sampling import sample_salient, sample_surface

    triangles = np.array([t for p in polygons for t in ([p] if len(p) == 3 else [(p[0], p[1], p[2]), (p[0], p[2], p[3])])],
                         dtype=np.int64)
    uniform, normals, _ = sample_surface(vertices, triangles, UNIFORM_POINTS, seed=seed)
    salient = sample_salient(vertices, triangles, SALIENT_POINTS, seed=seed).points
    _, nearest = cKDTree(uniform).query(salient)
    return np.concatenate([np.concatenate([uniform, normals], 1),
                           np.concatenate([salient, normals[nearest]], 1)]).astype(np.float32)


def caption_of(asset) -> str:
    """A caption from a corpus asset: its name, category and tags (as people named them)."""
    words = [asset.name.strip()]
    if asset.category and asset.category.lower() not in asset.name.lower():
        words.append(f"({asset.category.strip().lower()})")
    tags = [t for t in asset.tags if t and t.lower() not in " ".join(words).lower()][:4]
    return ", ".join([" ".join(words)] + tags)


def make_pack(path: Path, out: Path, *, caption: str = "", max_faces: int = DEFAULT_MAX_FACES,
              bits: int = DEFAULT_BITS, mode: str = "triangles", seed: int = 0) -> dict:
    """Write one asset's pack (tokens, points, caption; atomically); returns its facts."""
    import os
    import tempfile

    vertices, polygons = polygons_of(path)
    if not polygons:
        raise ValueError("the mesh has no faces")
    reduced_v, reduced_p, kept = reduce_faces(vertices, polygons, max_faces, mode=mode)
    q = quantize(reduced_v, reduced_p, bits)
    tokens = encode(q)
    points = condition_points(vertices, polygons, seed=seed)
    points[:, :3] = normalized(q, points[:, :3].astype(np.float64))
    arrays = {"tokens": np.asarray(tokens, dtype=np.int16), "points": points.astype(np.float16),
              "vertices": q.vertices.astype(np.uint8 if bits <= 8 else np.int16),
              "caption": np.array(caption), "kept_topology": np.array(kept), "source_faces": np.int64(len(polygons)),
              "bits": np.int64(bits), "max_split": np.int64(Vocabulary(bits).max_split),
              "offset": np.asarray(q.offset, dtype=np.float64), "scale": np.float64(q.scale),
              "version": np.int64(PACK_VERSION)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"faces": len(q.faces), "quads": q.quads, "tokens": len(tokens), "kept_topology": kept,
            "source_faces": len(polygons), "dropped": q.dropped_faces}


# -- the torch Dataset -------------------------------------------------------------------------


class MeshLMDataset:
    """Examples of mesh-LM packs: BOS + tokens (padded to ``max_tokens``), conditioning points, caption.

    Augmentations (training), drawn from ``(seed, epoch, index)`` like the views dataset's: a quarter
    turn about Z (exact on the quantized grid: the mesh is re-encoded, so its tokens follow the
    canonical order of the turned mesh) and noise on the conditioning points and normals
    (MeshAnything-style: the condition is never exactly the target's surface). An example whose
    tokens exceed ``max_tokens`` is cut there (its ``length`` says so); its prefix still decodes.
    """

    def __init__(self, items: list[tuple[Path, str]], *, max_tokens: int = 2048, points: int = 2048,
                 augment: bool = True, point_noise: float = 0.005, normal_noise: float = 0.05, seed: int = 0,
                 vocab: Vocabulary | None = None):
        self.items = [(Path(folder), name) for folder, name in items]
        missing = [f / "packs" / f"{n}.npz" for f, n in self.items if not (f / "packs" / f"{n}.npz").is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} mesh-LM pack(s) missing, e.g. {missing[0]}")
        self.max_tokens = max_tokens
        self.points = points
        self.augment = augment
        self.point_noise = point_noise
        self.normal_noise = normal_noise
        self.seed = seed
        self.vocab = vocab or Vocabulary()
        self.epoch = 0
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> dict:
        if index not in self._cache:
            folder, name = self.items[index]
            with np.load(folder / "packs" / f"{name}.npz") as z:
                self._cache[index] = {k: z[k] for k in z.files}
        return self._cache[index]

    def __getitem__(self, index: int) -> dict:
        import torch

        from training.tokenizer import decode

        pack = self.load(index)
        bits = int(pack["bits"])
        vocab = self.vocab
        if bits != vocab.bits:
            raise ValueError(f"pack {self.items[index][1]} is quantized to {bits} bits, the model's vocabulary "
                             f"to {vocab.bits}: make the packs again with that quantization")
        packed = Vocabulary(bits, int(pack["max_split"]))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        tokens = pack["tokens"].astype(np.int64)
        points = pack["points"].astype(np.float32)
        turns = int(rng.integers(4)) if self.augment else 0
        if turns or packed.max_split != vocab.max_split:
            vertices, faces = decode(tokens, packed)
            top = (1 << bits) - 1
            for _ in range(turns):                     # (x, y) -> (top - y, x): a quarter turn on the grid
                vertices = np.stack([top - vertices[:, 1], vertices[:, 0], vertices[:, 2]], 1)
                points[:, :2] = np.stack([-points[:, 1], points[:, 0]], 1)
                points[:, 3:5] = np.stack([-points[:, 4], points[:, 3]], 1)
            tokens = np.asarray(encode(QuantizedMesh(vertices, faces, bits), vocab), dtype=np.int64)
        pick = rng.choice(len(points), size=min(self.points, len(points)), replace=False)
        points = points[pick]
        if self.augment and self.point_noise:
            points[:, :3] += rng.normal(0.0, self.point_noise, size=(len(points), 3))
            n = points[:, 3:6] + rng.normal(0.0, self.normal_noise, size=(len(points), 3))
            points[:, 3:6] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        sequence = np.concatenate([[vocab.BOS], tokens])[:self.max_tokens]
        padded = np.full(self.max_tokens, vocab.PAD, dtype=np.int64)
        padded[:len(sequence)] = sequence
        return {"tokens": torch.from_numpy(padded), "length": torch.tensor(len(sequence)),
                "points": torch.from_numpy(points.astype(np.float32)), "caption": str(pack["caption"])}


def collate_meshlm(examples: list[dict]) -> dict:
    import torch

    from training.mesh_lm import caption_bytes

    return {"tokens": torch.stack([e["tokens"] for e in examples]),
            "length": torch.stack([e["length"] for e in examples]),
            "points": torch.stack([e["points"] for e in examples]),
            "caption": caption_bytes([e["caption"] for e in examples])}
