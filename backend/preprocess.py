"""Training data from mesh files: watertight remesh, then surface, SDF and salient-edge samples in one .npz each.

One asset becomes ``<out_dir>/<name>.npz``, written atomically, with every array in the
canonical box (:mod:`backend.conventions`; ``original = canonical / scale + center``):

==================== ================= ========= ============================================
array                shape             dtype     contents
==================== ================= ========= ============================================
surface_points       (n_surface, 3)    float32   area-uniform points on the watertight mesh
surface_normals      (n_surface, 3)    float32   their unit face normals, outward
sdf_points           (k, 3)            float32   ``n_sdf_uniform`` in ``[-1, 1]^3``, then
                                                 ``n_sdf_near`` near the surface
sdf_values           (k,)              float32   exact signed distance, negative inside
sdf_group            (k,)              int8      0 uniform, ``i + 1`` offset by ``sigmas[i]``
salient_points       (n_salient, 3)    float32   FPS points on salient edges
salient_mask         (n_salient,)      bool      False for surface points filling up
watertight_vertices  (v, 3)            float32   the watertight mesh the samples come from
watertight_faces     (f, 3)            int32     closed, outward-oriented
center               (3,)              float64   normalization centre (original frame)
scale                ()                float64   normalization scale
genus                ()                int64     genus of the watertight mesh
metadata             ()                str       JSON: seed, counts, options, timings, source
==================== ================= ========= ============================================

:func:`preprocess_dir` runs a folder, resumably: assets whose .npz exists are skipped,
broken ones are recorded in ``failures.jsonl`` and the run goes on, finished ones are
appended to ``manifest.jsonl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from backend.conventions import MESH_SUFFIXES, Normalization
from backend.mesh.io import load_mesh, validate_mesh, write_atomic
from backend.mesh.types import Mesh
from backend.progress import Cancelled, ProgressFn, null_progress, subrange

log = logging.getLogger(__name__)

#: Bumped when the arrays or their meaning change.
FORMAT_VERSION = 1

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"


@dataclass(frozen=True)
class PreprocessOptions:
    """What :func:`preprocess_mesh` samples; every field is checked on construction.

    Attributes
    ----------
    resolution : int
        Watertight grid resolution over the canonical cube, ``[16, 1024]``.
    keep, cavities : str
        Passed to :func:`backend.mesh.remesh.watertight.watertight`.
    n_surface : int
        Surface points with normals.
    n_sdf_uniform, n_sdf_near : int
        SDF points uniform in ``[-1, 1]^3`` and near the surface.
    sigmas : tuple of float
        Offsets of the near points, canonical units (see :func:`backend.mesh.sampling.sample_sdf`).
    n_salient : int
        Points on salient edges.
    angle_deg : float
        Dihedral angle above which an edge is salient.
    seed : int
        Everything random derives from it.
    """

    resolution: int = 256
    keep: Literal["all", "largest"] = "all"
    cavities: Literal["fill", "keep"] = "fill"
    n_surface: int = 100_000
    n_sdf_uniform: int = 100_000
    n_sdf_near: int = 100_000
    sigmas: tuple[float, ...] = (0.005, 0.05)
    n_salient: int = 8192
    angle_deg: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("resolution", "n_surface", "n_sdf_uniform", "n_sdf_near", "n_salient", "seed"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 16 <= self.resolution <= 1024:
            raise ValueError(f"resolution must be in [16, 1024], got {self.resolution!r}")
        if self.keep not in ("all", "largest"):
            raise ValueError(f"keep must be 'all' or 'largest', got {self.keep!r}")
        if self.cavities not in ("fill", "keep"):
            raise ValueError(f"cavities must be 'fill' or 'keep', got {self.cavities!r}")
        sigmas = tuple(self.sigmas)
        if not sigmas or not all(isinstance(s, (int, float)) and np.isfinite(s) and s > 0 for s in sigmas):
            raise ValueError(f"sigmas must be one or more positive numbers, got {self.sigmas!r}")
        object.__setattr__(self, "sigmas", tuple(float(s) for s in sigmas))
        if not isinstance(self.angle_deg, (int, float)) or not 0.0 <= self.angle_deg <= 180.0:
            raise ValueError(f"angle_deg must be in [0, 180], got {self.angle_deg!r}")

    @classmethod
    def from_kwargs(cls, **options: Any) -> "PreprocessOptions":
        """Options from keyword arguments; unknown names are a ValueError naming them."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown preprocess option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**options)


def preprocess_mesh(source: str | os.PathLike | Mesh, out_dir: str | os.PathLike, *, name: str | None = None,
                    progress: ProgressFn = null_progress, **options: Any) -> dict:
    """Remesh one asset watertight and write its training samples to ``<out_dir>/<name>.npz``.

    Parameters
    ----------
    source : path or Mesh
        A mesh file (GLB, OBJ, PLY or STL, sniffed from content) or arrays.
    out_dir : path
        Created if missing. An existing ``<name>.npz`` is replaced (atomically).
    name : str or None
        File name without ``.npz``; defaults to the source file's stem. Required for a Mesh.
    progress : ProgressFn
        ``progress(fraction, stage)``; may raise :class:`~backend.progress.Cancelled`.
    **options
        Fields of :class:`PreprocessOptions` (``resolution``, ``n_surface``, ...).

    Returns
    -------
    dict
        A JSON-able summary: name, output, source, counts, genus, seconds.

    Raises
    ------
    ValueError
        Bad options, a ``name`` missing for a Mesh or containing a path separator.
    backend.errors.BadMesh, backend.errors.UnsupportedFormat
        The source cannot be read.
    """
    from backend.mesh import sampling
    from backend.mesh.metrics import genus as mesh_genus
    from backend.mesh.remesh.watertight import watertight

    opts = PreprocessOptions.from_kwargs(**options)
    if isinstance(source, Mesh):
        if not name:
            raise ValueError("name is required when source is a Mesh, not a file")
        source_label, digest = "<arrays>", None
    else:
        source = Path(source)
        name = name or source.stem
        source_label = str(source)
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    out_path = Path(out_dir) / f"{name}.npz"
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        timings[stage] = round(time.perf_counter() - clock - sum(timings.values()), 3)

    progress(0.0, "loading")
    if isinstance(source, Mesh):
        mesh = validate_mesh(source.vertices, source.faces, name=name)
    else:
        mesh = load_mesh(source)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    # Fit to the vertices the faces use, as watertight does: stray vertices must not shrink the mesh.
    norm = Normalization.fit(mesh.vertices[np.unique(mesh.faces)])
    lap("load")

    result = watertight(norm.apply(mesh.vertices), mesh.faces, resolution=opts.resolution, keep=opts.keep,
                        cavities=opts.cavities, progress=subrange(progress, 0.02, 0.3))
    vertices, faces = result.vertices, result.faces                     # canonical box: the input was
    mesh_genus_value = mesh_genus(faces)
    lap("watertight")

    surface_rng, sdf_rng, salient_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(opts.seed).spawn(3))
    progress(0.3, "surface samples")
    surface_points, surface_normals, _ = sampling.sample_surface(vertices, faces, opts.n_surface, seed=surface_rng)
    lap("surface")
    sdf = sampling.sample_sdf(vertices, faces, opts.n_sdf_uniform, opts.n_sdf_near, sigmas=opts.sigmas,
                              bounds="canonical", seed=sdf_rng, progress=subrange(progress, 0.35, 0.85))
    lap("sdf")
    progress(0.85, "salient edges")
    salient = sampling.sample_salient(vertices, faces, opts.n_salient, angle_deg=opts.angle_deg, seed=salient_rng)
    lap("salient")

    progress(0.97, "writing")
    metadata = {
        "format": FORMAT_VERSION,
        "name": name,
        "source": source_label,
        "source_sha256": digest,
        "options": dataclasses.asdict(opts),
        "normalization": norm.to_dict(),
        "input": {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces))},
        "watertight": {"vertices": int(len(vertices)), "faces": int(len(faces)), "genus": int(mesh_genus_value),
                       "voxel_size": float(result.voxel_size)},
        "salient": {"edges": int(salient.edges), "on_edge": int(salient.on_edge.sum())},
        "sdf_bounds": [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]],
        "timings": timings,
    }
    arrays = {
        "surface_points": surface_points.astype(np.float32),
        "surface_normals": surface_normals.astype(np.float32),
        "sdf_points": sdf.points,
        "sdf_values": sdf.sdf,
        "sdf_group": sdf.group,
        "salient_points": salient.points.astype(np.float32),
        "salient_mask": salient.on_edge,
        "watertight_vertices": vertices.astype(np.float32),
        "watertight_faces": faces.astype(np.int32),
        "center": np.asarray(norm.center, dtype=np.float64),
        "scale": np.float64(norm.scale),
        "genus": np.int64(mesh_genus_value),
    }
    arrays["metadata"] = np.array(json.dumps(metadata))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out_path, buffer.getvalue())
    progress(1.0, "done")
    return {
        "name": name,
        "output": str(out_path),
        "source": source_label,
        "faces_in": int(len(mesh.faces)),
        "faces": int(len(faces)),
        "genus": int(mesh_genus_value),
        "salient_on_edge": int(salient.on_edge.sum()),
        "salient": int(opts.n_salient),
        "seconds": round(time.perf_counter() - clock, 2),
    }


def mesh_files(root: str | os.PathLike) -> list[Path]:
    """Mesh files under ``root`` (recursively, by suffix, case-insensitive), sorted; ``[root]`` for a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ValueError(f"input must be a mesh file or a folder, got {str(root)!r} (not found)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def preprocess_dir(input_dir: str | os.PathLike, out_dir: str | os.PathLike, *, show_progress: bool = True,
                   on_asset: Callable[[dict], None] | None = None, progress: ProgressFn = null_progress,
                   **options: Any) -> dict:
    """Preprocess every mesh file under ``input_dir`` (or the one file it names) into ``out_dir``.

    ``input_dir/a/b.obj`` becomes ``out_dir/a/b.npz``. Resumable: an asset whose .npz exists
    is skipped. An asset that fails (unreadable, unsupported, a pipeline error) is appended to
    ``out_dir/failures.jsonl`` as ``{"input", "error", "type"}`` and the run goes on; finished
    assets append their summary to ``out_dir/manifest.jsonl``. Two inputs with the same
    output name (``b.obj`` and ``b.glb``) keep the first; the others are failures.

    Parameters
    ----------
    input_dir : path
        A folder (searched recursively for :data:`~backend.conventions.MESH_SUFFIXES`) or one file.
    out_dir : path
    show_progress : bool
        Draw a tqdm bar over the assets (on stderr).
    on_asset : callable or None
        Called with each asset's record: a summary (``status`` ``"done"``), or
        ``{"name", "status": "skipped" | "failed", ...}``.
    progress : ProgressFn
        ``progress(fraction, name)`` per asset; :class:`~backend.progress.Cancelled` stops the run.
    **options
        Fields of :class:`PreprocessOptions`, checked before any work.

    Returns
    -------
    dict
        ``{"done", "skipped", "failed", "seconds"}``.
    """
    PreprocessOptions.from_kwargs(**options)                                   # fail before any work
    root = Path(input_dir)
    files = mesh_files(root)
    base = root.parent if root.is_file() else root
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    claimed: dict[Path, Path] = {}
    start = time.perf_counter()
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="mesh", desc="preprocess", dynamic_ncols=True)
    try:
        for i, path in enumerate(files):
            rel = path.relative_to(base)
            progress(i / max(len(files), 1), str(rel))
            target = out_dir / rel.parent / f"{rel.stem}.npz"
            record: dict[str, Any]
            if target in claimed:
                record = _failure(out_dir, rel, ValueError(
                    f"its output {target.name} is also the output of {claimed[target]}; rename one of them"))
            elif target.exists():
                record = {"name": str(rel), "status": "skipped", "output": str(target)}
            else:
                try:
                    summary = preprocess_mesh(path, target.parent, name=rel.stem, **options)
                except Cancelled:
                    raise
                except Exception as exc:  # one broken asset must not stop a batch of thousands
                    log.debug("preprocess failed on %s", path, exc_info=True)
                    record = _failure(out_dir, rel, exc)
                else:
                    record = {**summary, "name": str(rel), "status": "done"}
                    _append_jsonl(out_dir / MANIFEST, {k: v for k, v in record.items() if k != "status"})
            claimed.setdefault(target, rel)
            counts[record["status"]] += 1
            if on_asset is not None:
                on_asset(record)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    progress(1.0, "done")
    return {**counts, "seconds": round(time.perf_counter() - start, 2)}


def _failure(out_dir: Path, rel: Path, exc: Exception) -> dict:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    entry = {"input": str(rel), "error": message, "type": type(exc).__name__}
    _append_jsonl(out_dir / FAILURES, entry)
    return {"name": str(rel), "status": "failed", "error": message, "type": type(exc).__name__}


def _append_jsonl(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
