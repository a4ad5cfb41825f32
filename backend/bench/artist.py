"""Benchmark of the artist pipeline against Blender's QuadriFlow: ``python -m backend bench artist --meshes DIR``.

Each method runs in a child process of its own for each (mesh, face target), so imports and
other meshes' runs do not leak into the figures. With ``--repeat N`` the methods take turns,
N rounds of one run each (Meshsmith, QuadriFlow, Meshsmith, ...), and the fastest run of each
is kept: this machine's speed drifts by a third over minutes, and runs that alternate see it
alike (run one method's repeats, then the other's, and the time ratio of a pair moved by
0.05 from one bench to the next); each row keeps all its runs' seconds and start times
(``run_seconds``, ``run_started``).

- *seconds*: the remesh call alone (process start, imports and file loading excluded);
  Meshsmith's includes everything :func:`backend.mesh.retopo.artist.retopo` does (welding, the
  watertight step when the input needs it, every Instant Meshes run, repair), in a process
  with the backend's allocator setting (:func:`backend.memory.keep_freed_memory`);
- *faces* (polygons), *quad ratio* (quads / polygons), *valence-4 share* (interior vertices
  with four edges), *manifold* (every edge in at most two polygons, consistent winding, one
  fan per vertex), *closed*: :func:`backend.mesh.metrics.polygon_report`;
- what an artist sees (:func:`backend.mesh.metrics.layout_report`): *poles* per 1,000 polygons
  (interior vertices whose valence is not 4), *obtuse* quads (a corner above 160 degrees: a
  triangle with an extra vertex), interior *valence-2* vertices, and *components* beside the
  input's; and *crease coverage* (:func:`backend.mesh.metrics.crease_coverage`): the share of
  the input's crease length (dihedral above 30 degrees) within 0.1 mean edge of a result edge;
- *Chamfer-L1* to the input with the watertight bench's convention: both in the input's
  canonical box (longest side spans ``[-0.95, 0.95]``), mean of the two directional mean
  nearest distances between ``--samples`` area-uniform points on each surface
  (:func:`backend.mesh.metrics.chamfer_l1`), and the *surface* Chamfer-L1: ``--surface-samples``
  points on each, exact distance to the other surface
  (:func:`backend.mesh.sampling.surface_chamfer_l1`). The sampled figure carries a floor of
  about half the sample spacing (at 10^6 samples, half or more of what a 2,000-face remesh
  is off), which pulls every ratio toward 1; the ratios and goals use the surface figure.

QuadriFlow is ``bpy.ops.object.quadriflow_remesh(target_faces=N)`` with its defaults, run
through the ``bpy`` module on the input with coincident vertices merged (as Blender's own
OBJ import gives it). QuadriFlow refuses non-manifold meshes, and meshes with edges shorter
than an absolute length (it then leaves the input unchanged). A refused run is retried on
the least changed input it takes, and the row says which (the time is QuadriFlow's alone):
scaled up 100 times; then, if at most 1% of its faces lie on bad edges, mended (``input:
mended``: the extra faces of fins dropped and windings made consistent by
:func:`backend.mesh.retopo.repair.mend`, what one does by hand in Blender before QuadriFlow; also
scaled up); then the watertight remesh Meshsmith would make
(``input: watertight``, scaled up).

Goals per (mesh, target) pair: at least QuadriFlow's quad ratio and Chamfer, at no more than half
its time (``goal_met``); and a layout an artist keeps (``layout_goal_met``):
valence-4 share within 0.03 of QuadriFlow's or above, no obtuse quad, as many components as the
input, crease coverage and Chamfer better than QuadriFlow's, time <= 0.5x.
The JSON (``--out``) keeps every row and the per-pair ratios; a PNG next to it plots them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.conventions import MESH_SUFFIXES, Normalization
from backend.memory import keep_freed_memory
from backend.mesh.io import load_mesh

log = logging.getLogger(__name__)

METHODS = ("meshsmith", "quadriflow")
MODES = ("quads", "quad_dominant", "triangles")


# -- child side -----------------------------------------------------------------------------


def _run_meshsmith(vertices: np.ndarray, faces: np.ndarray, target: int, mode: str) -> dict:
    import pyinstantmeshes  # noqa: F401  (import cost is not the remesher's)
    import scipy.sparse.csgraph  # noqa: F401
    import scipy.spatial  # noqa: F401

    from backend.mesh.retopo.artist import retopo

    start = time.perf_counter()
    result = retopo(vertices, faces, target_faces=target, mode=mode)
    seconds = time.perf_counter() - start
    tris, sizes = result.mesh_arrays()
    return {"vertices": result.vertices, "faces": tris, "face_sizes": sizes, "seconds": seconds,
            "input": result.source, "resolution": result.resolution or 0,
            "remesher_runs": len(result.remesher_targets)}


def _run_quadriflow(vertices: np.ndarray, faces: np.ndarray, target: int) -> dict:
    """QuadriFlow on the welded input; if it refuses, on the same scaled up 100 times (its check
    rejects edges shorter than an absolute length, which a fine mesh in the canonical box has),
    then on the input mended (as is and scaled up), then on the watertight remesh Meshsmith
    would make (scaled up too)."""
    import bpy  # noqa: F401  (import cost is not the remesher's)

    from backend.mesh import polygons as poly
    from backend.mesh.retopo import repair
    from backend.mesh.retopo.artist import MAX_MENDED_FRACTION, auto_resolution, weld

    wv, wf = weld(vertices, faces)
    errors = []
    mended = repair.mend(wv, poly.pad(wf), max_faces=int(MAX_MENDED_FRACTION * len(wf)))
    tries = [("input", wf)] + ([("mended", mended[0][:, :3])] if mended is not None else [])
    for name, tris in tries:
        for scale in (1.0, 100.0):
            out = _quadriflow(wv * scale, tris, target)
            if not out.get("error"):
                out.update(input=name, scale=scale, vertices=out["vertices"] / scale)
                if errors:
                    out["first_error"] = errors[0]
                return out
            errors.append(out["error"])
    from backend.mesh.remesh.watertight import watertight

    area = float(0.5 * np.linalg.norm(np.cross(wv[wf[:, 1]] - wv[wf[:, 0]], wv[wf[:, 2]] - wv[wf[:, 0]]),
                                      axis=1).sum())
    res = auto_resolution(area, target)
    wt = watertight(wv, wf, resolution=res)
    out = _quadriflow(wt.vertices * 100.0, wt.faces, target)
    out.update(input="watertight", scale=100.0, resolution=res, first_error=errors[0])
    if "vertices" in out:
        out["vertices"] = out["vertices"] / 100.0
    return out


def _quadriflow(vertices: np.ndarray, faces: np.ndarray, target: int) -> dict:
    import bpy

    from backend.bench.blender import blender_input_object
    from backend.mesh.gltf import polygon_triangles

    obj = blender_input_object(vertices, faces)
    start = time.perf_counter()
    try:
        status = bpy.ops.object.quadriflow_remesh(target_faces=int(target))
    except RuntimeError as exc:  # Blender reports operator errors this way
        return {"error": str(exc).strip().splitlines()[-1], "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    out = obj.data
    n = len(out.vertices)
    co = np.empty(n * 3, np.float32)
    out.vertices.foreach_get("co", co)
    sizes = np.empty(len(out.polygons), np.int32)
    out.polygons.foreach_get("loop_total", sizes)
    loops = np.empty(len(out.loops), np.int32)
    out.loops.foreach_get("vertex_index", loops)
    if "FINISHED" not in status or not (sizes == 4).any():
        # On a non-manifold mesh the operator reports an error and leaves the triangles as they were.
        return {"error": "QuadriFlow left the mesh unchanged (it needs a manifold, consistently oriented mesh)",
                "seconds": seconds}
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    polygons = []
    for s, k in zip(starts.tolist(), sizes.tolist()):
        ring = loops[s:s + k].tolist()
        while len(ring) > 4:                     # QuadriFlow writes quads; cut anything larger for the metrics
            polygons.append(ring[:3])
            ring = [ring[0]] + ring[2:]
        polygons.append(ring)
    tris, face_sizes = polygon_triangles(polygons)
    return {"vertices": co.reshape(-1, 3).astype(np.float64), "faces": tris, "face_sizes": face_sizes,
            "seconds": seconds}


def _serve(method: str, mesh_path: str, target: int) -> None:
    """A child that remeshes one mesh at one target on request, keeping the fastest run per mode.

    Commands come one per line on standard input: ``run MODE`` remeshes once and answers with
    the run's seconds (or its error) as a JSON line; ``save MODE PATH`` writes the fastest run of
    ``MODE`` and its figures to ``PATH`` (.npz). Answers go to the original standard output;
    what libraries print there afterwards (Blender, Instant Meshes) goes to standard error.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    mesh = load_mesh(mesh_path)
    vertices = Normalization.fit(mesh.vertices).apply(mesh.vertices)
    if method == "meshsmith":
        keep_freed_memory()  # as the backend's server and command line run (backend/memory.py)
    best: dict[str, dict] = {}
    for line in sys.stdin:
        command, mode, *rest = line.rstrip("\n").split(" ", 2)          # a path may hold spaces
        if command == "run":
            started = time.time()
            run = _run_meshsmith(vertices, mesh.faces, target, mode) if method == "meshsmith" \
                else _run_quadriflow(vertices, mesh.faces, target)
            kept = best.get(mode)
            # A result beats an error; then the faster run wins.
            if kept is None or ("error" in kept, kept["seconds"]) > ("error" in run, run["seconds"]):
                best[mode] = run
            answers.write(json.dumps({"seconds": run["seconds"], "started": started, "error": run.get("error")}) + "\n")
        elif command == "save":
            run = best[mode]
            meta = {k: v for k, v in run.items() if k not in ("vertices", "faces", "face_sizes")}
            arrays = {k: run[k] for k in ("vertices", "faces", "face_sizes") if k in run}
            np.savez(rest[0], meta=json.dumps(meta), **arrays)
            answers.write("{}\n")


class _Remesher:
    """One method's child process for one (mesh, target): :meth:`run` remeshes once in it, so two
    methods' runs can alternate while each process keeps its warm state (imports, thread pools,
    allocator); :meth:`result` measures its fastest run of a mode."""

    def __init__(self, method: str, mesh_path: Path, target: int):
        self.method, self.mesh_path, self.target = method, mesh_path, target
        self._log = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen([sys.executable, "-m", "backend.bench.artist", "_serve", method,
                                       str(mesh_path), str(target)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.runs: dict[str, list[dict]] = {}
        self.error: str | None = None

    def _ask(self, line: str) -> dict | None:
        if self.error is None:
            try:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()
                answer = self._proc.stdout.readline()
            except (BrokenPipeError, OSError):
                answer = ""
            if answer:
                return json.loads(answer)
            self._proc.wait()
            self._log.seek(0)
            tail = self._log.read().strip().splitlines()[-3:]
            self.error = " | ".join(tail) or f"the child process exited with status {self._proc.returncode}"
        return None

    def run(self, mode: str) -> None:
        answer = self._ask(f"run {mode}")
        if answer is not None:
            self.runs.setdefault(mode, []).append(answer)

    def result(self, mode: str, *, samples: int, surface_samples: int, keep: dict | None = None) -> dict:
        """The row of the fastest run of ``mode``: its figures measured against the input."""
        row = {"method": self.method, "mode": mode if self.method == "meshsmith" else "quads",
               "mesh": self.mesh_path.name, "target": self.target}
        with tempfile.TemporaryDirectory(prefix="meshsmith-bench-") as tmp:
            out = Path(tmp) / "result.npz"
            if mode not in self.runs or self._ask(f"save {mode} {out}") is None or not out.exists():
                return {**row, "error": self.error or "no run"}
            data = np.load(out)
            meta = json.loads(str(data["meta"]))
            row.update(meta)
            row["run_seconds"] = [r["seconds"] for r in self.runs[mode]]
            row["run_started"] = [r["started"] for r in self.runs[mode]]          # Unix time
            if "faces" not in data.files:
                return {**row, "error": meta.get("error", "no result")}
            v, f, sizes = data["vertices"], data["faces"], data["face_sizes"]
        if keep is not None:
            keep[(row["mesh"], self.target, self.method, row["mode"])] = (v, f, sizes)
        return _measured(row, self.mesh_path, v, f, sizes, samples=samples, surface_samples=surface_samples)

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()
        self._log.close()


# -- parent side ----------------------------------------------------------------------------


def run_pair(mesh_path: Path, target: int, jobs: list[tuple[str, str]], *, samples: int,
             surface_samples: int = 100_000, repeat: int = 1, keep: dict | None = None, tick=None) -> list[dict]:
    """Remesh ``mesh_path`` at ``target`` by every ``(method, mode)`` of ``jobs``, each method in a
    child process of its own, ``repeat`` rounds in which every job runs once in turn (the
    methods alternate, so a machine that slows down for a while slows both); a row per job, of
    its fastest run, measured against the input. With ``keep``, each result's (vertices, faces,
    face_sizes) go into it under (mesh, target, method, mode). ``tick()`` after every run."""
    remeshers = {method: _Remesher(method, mesh_path, target) for method in dict.fromkeys(m for m, _ in jobs)}
    try:
        for _ in range(repeat):
            for method, mode in jobs:
                remeshers[method].run(mode)
                if tick is not None:
                    tick()
        return [remeshers[method].result(mode, samples=samples, surface_samples=surface_samples, keep=keep)
                for method, mode in jobs]
    finally:
        for r in remeshers.values():
            r.close()


def _measured(row: dict, mesh_path: Path, v: np.ndarray, f: np.ndarray, sizes: np.ndarray, *, samples: int,
              surface_samples: int) -> dict:
    from backend.mesh.metrics import chamfer_l1, connected_components, crease_coverage, layout_report, polygon_report
    from backend.mesh.retopo.artist import weld
    from backend.mesh.sampling import surface_chamfer_l1

    source = load_mesh(mesh_path)
    sv = Normalization.fit(source.vertices).apply(source.vertices)
    row.update(polygon_report(f, sizes))
    row.update(layout_report(v, f, sizes))
    # The input as the pipeline sees it: coincident vertices merged (an STL shares none). Its parts
    # are counted as the result's are, through shared edges: suzanne's eyes touch her head at one
    # vertex each and are three parts in Blender, not one.
    wv, wf = weld(sv, source.faces)
    row["input_components"] = connected_components(wf, through="edges")[0]
    row["crease_coverage"] = crease_coverage(wv, wf, v, f, sizes)
    row["chamfer"] = chamfer_l1(sv, source.faces, v, f, samples=samples)
    row["surface_chamfer"] = surface_chamfer_l1(sv, source.faces, v, f, samples=surface_samples)
    return row


def pair_ratios(rows: list[dict]) -> list[dict]:
    """Per (mesh, target, Meshsmith mode): Meshsmith / QuadriFlow time and Chamfer, quad ratios, goal met."""
    qf = {(r["mesh"], r["target"]): r for r in rows if r["method"] == "quadriflow" and "error" not in r}
    out = []
    for r in rows:
        if r["method"] != "meshsmith" or "error" in r or (r["mesh"], r["target"]) not in qf:
            continue
        q = qf[(r["mesh"], r["target"])]
        # Rows of runs before the surface Chamfer existed have only the sampled one.
        chamfer = "surface_chamfer" if "surface_chamfer" in r and "surface_chamfer" in q else "chamfer"
        entry = {
            "mesh": r["mesh"], "target": r["target"], "mode": r["mode"], "quadriflow_input": q["input"],
            "time_ratio": r["seconds"] / q["seconds"],
            "chamfer_ratio": r[chamfer] / q[chamfer],
            "sampled_chamfer_ratio": r["chamfer"] / q["chamfer"],
            "quad_ratio": r["quad_ratio"], "quadriflow_quad_ratio": q["quad_ratio"],
        }
        entry["goal_met"] = bool(entry["time_ratio"] <= 0.5 and entry["chamfer_ratio"] <= 1.0
                                 and r["quad_ratio"] >= q["quad_ratio"])
        if "obtuse_quads" in r and "crease_coverage" in q:
            entry.update({
                "valence4_share": r["valence4_share"], "quadriflow_valence4_share": q["valence4_share"],
                "obtuse_quads": r["obtuse_quads"], "components": r["components"],
                "input_components": r["input_components"], "crease_coverage": r["crease_coverage"],
                "quadriflow_crease_coverage": q["crease_coverage"],
            })
            entry["layout_goal_met"] = bool(
                r["valence4_share"] >= q["valence4_share"] - 0.03 and r["obtuse_quads"] == 0
                and r["components"] == r["input_components"] and r["crease_coverage"] > q["crease_coverage"]
                and entry["chamfer_ratio"] < 1.0 and entry["time_ratio"] <= 0.5)
        out.append(entry)
    return out


def summarize(rows: list[dict], pairs: list[dict]) -> dict:
    by_mode: dict[str, dict] = {}
    for mode in sorted({p["mode"] for p in pairs}):
        ps = [p for p in pairs if p["mode"] == mode]
        by_mode[mode] = {
            "pairs": len(ps),
            "median_time_ratio": statistics.median(p["time_ratio"] for p in ps),
            "median_chamfer_ratio": statistics.median(p["chamfer_ratio"] for p in ps),
            "goal_met": sum(p["goal_met"] for p in ps),
            "layout_goal_met": sum(p.get("layout_goal_met", False) for p in ps),
        }
    ours = [r for r in rows if r["method"] == "meshsmith" and "error" not in r]
    return {
        "by_mode": by_mode,
        "all_manifold": all(r["manifold"] for r in ours),
        "face_count_within_10_percent": all(abs(r["faces"] - r["target"]) <= 0.10 * r["target"] for r in ours),
        "quadriflow_failed_on_input": {r["mesh"]: r["input"] for r in rows
                                       if r["method"] == "quadriflow" and r.get("input") in ("mended", "watertight")},
        "errors": [f"{r['mesh']} {r['target']} {r['method']}: {r['error']}" for r in rows if "error" in r],
    }


def format_table(rows: list[dict], pairs: list[dict]) -> str:
    head = (f"{'mesh':<20}{'target':>7} {'method':<24}{'faces':>7}{'quads':>7}{'val4':>7}{'poles':>7}"
            f"{'>160':>6}{'v2':>4}{'parts':>7}{'crease':>7} {'manifold':<9}{'closed':<7}{'chamfer':>9}{'surface':>9}{'seconds':>9}")
    lines = [head, "-" * len(head)]
    ratio = {(p["mesh"], p["target"], p["mode"]): p for p in pairs}
    for r in sorted(rows, key=lambda r: (r["mesh"], r["target"], r["method"] != "meshsmith", r["mode"])):
        name = r["method"] if r["method"] == "quadriflow" else f"meshsmith {r['mode']}"
        if r["method"] == "quadriflow" and r.get("input") in ("mended", "watertight"):
            name += f" (on {r['input']})"
        if "error" in r:
            lines.append(f"{r['mesh']:<20}{r['target']:>7} {name:<24} failed: {r['error']}")
            continue
        parts = f"{r.get('components', '-')}/{r.get('input_components', '-')}"
        line = (f"{r['mesh']:<20}{r['target']:>7} {name:<24}{r['faces']:>7}{r['quad_ratio']:>7.3f}"
                f"{r['valence4_share']:>7.3f}{r.get('poles_per_1000', float('nan')):>7.1f}"
                f"{r.get('obtuse_quads', -1):>6}{r.get('valence2', -1):>4}{parts:>7}"
                f"{r.get('crease_coverage', float('nan')):>7.2f} {str(r['manifold']):<9}{str(r['closed']):<7}"
                f"{r['chamfer']:>9.5f}{r.get('surface_chamfer', float('nan')):>9.2e}{r['seconds']:>9.2f}")
        p = ratio.get((r["mesh"], r["target"], r["mode"])) if r["method"] == "meshsmith" else None
        if p:
            line += (f"   time x{p['time_ratio']:.2f}, Chamfer x{p['chamfer_ratio']:.2f}"
                     f"{', goal met' if p['goal_met'] else ''}{', layout goal met' if p.get('layout_goal_met') else ''}")
        lines.append(line)
    return "\n".join(lines)


def plot(pairs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    markers = {"quads": "s", "quad_dominant": "o", "triangles": "^"}
    for mode in sorted({p["mode"] for p in pairs}):
        ps = [p for p in pairs if p["mode"] == mode]
        ax.scatter([p["time_ratio"] for p in ps], [p["chamfer_ratio"] for p in ps], marker=markers.get(mode, "o"),
                   label=f"Meshsmith {mode}")
        for p in ps:
            ax.annotate(f"{Path(p['mesh']).stem} {p['target']}", (p["time_ratio"], p["chamfer_ratio"]), fontsize=6)
    ax.axvline(0.5, color="grey", ls=":", label="goal: time <= 0.5x")
    ax.axhline(1.0, color="grey", ls="--", label="goal: Chamfer <= 1x")
    ax.set_xlabel("time / QuadriFlow's time")
    ax.set_ylabel("Chamfer-L1 / QuadriFlow's")
    ax.set_title("artist pipeline against QuadriFlow (lower left is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layout_sheet(kept: dict, names: list[str], target: int, mode: str, path: Path) -> None:
    """A PNG of quad layouts: a row per mesh, Meshsmith's ``mode`` result and QuadriFlow's side by side,
    each drawn with its polygon edges (:func:`draw_polygons`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("meshsmith", mode, f"Meshsmith {mode}"), ("quadriflow", "quads", "QuadriFlow")]
    fig, axes = plt.subplots(len(names), 2, figsize=(8, 4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        for ax, (method, m, title) in zip(row, columns):
            ax.set_axis_off()
            found = kept.get((name, target, method, m))
            if found is None:
                continue
            draw_polygons(ax, *found)
            ax.set_title(f"{Path(name).stem}, {title}: {len(found[2])} faces", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_polygons(ax, vertices: np.ndarray, faces: np.ndarray, face_sizes: np.ndarray, *,
                  azimuth: float = 35.0, elevation: float = 20.0) -> None:
    """Draw a triangle-and-quad mesh (faces and sizes as results carry them) on a matplotlib axis:
    polygons facing the camera, far to near, shaded by their normal, with their edges (the
    diagonal of a quad is not drawn). Orthographic, from (azimuth, elevation) in degrees, z up."""
    from matplotlib.collections import PolyCollection

    from backend.mesh.polygons import from_mesh, polygon_normals

    polygons = from_mesh(np.asarray(faces), np.asarray(face_sizes))
    a, e = np.radians(azimuth), np.radians(elevation)
    forward = -np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    v = np.asarray(vertices, dtype=np.float64)
    normal = polygon_normals(v, polygons)
    normal /= np.maximum(np.linalg.norm(normal, axis=1), 1e-300)[:, None]
    facing = normal @ forward < 0
    quad = polygons[:, 3] >= 0
    corners = np.where(quad[:, None], polygons, np.column_stack([polygons[:, :3], polygons[:, 2]]))
    depth = (v[corners] @ forward).mean(axis=1)
    order = np.flatnonzero(facing)[np.argsort(-depth[facing])]
    xy = np.stack([v @ right, v @ up], axis=1)
    shade = 0.35 + 0.6 * np.clip(-(normal[order] @ forward), 0.0, 1.0)
    ax.add_collection(PolyCollection(list(xy[corners[order]]), facecolors=np.repeat(shade[:, None], 3, axis=1),
                                     edgecolors="black", linewidths=0.25))
    ax.set_xlim(xy[:, 0].min(), xy[:, 0].max())
    ax.set_ylim(xy[:, 1].min(), xy[:, 1].max())
    ax.set_aspect("equal")


def bench_artist(meshes_dir: Path, targets: list[int], modes: list[str], out: Path, *, samples: int,
                 surface_samples: int = 100_000, methods: tuple[str, ...] = METHODS, repeat: int = 1, pictures: tuple[str, ...] = ()) -> dict:
    """Run the bench (module doc); ``pictures``: mesh file names whose results at the first target
    are drawn beside QuadriFlow's in ``<out>-layouts.png``."""
    from tqdm import tqdm

    paths = sorted(p for p in Path(meshes_dir).iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if not paths:
        raise ValueError(f"meshes_dir {meshes_dir} holds no {', '.join(MESH_SUFFIXES)} files")
    jobs = ([("meshsmith", m) for m in modes] if "meshsmith" in methods else []) \
        + ([("quadriflow", "quads")] if "quadriflow" in methods else [])
    kept: dict = {}
    rows = []
    with tqdm(total=len(paths) * len(targets) * len(jobs) * repeat, desc="bench artist", unit="run") as bar:
        for path in paths:
            for t in targets:
                rows += run_pair(path, t, jobs, samples=samples, surface_samples=surface_samples, repeat=repeat,
                                 keep=kept if path.name in pictures and t == targets[0] else None,
                                 tick=lambda: bar.update(1))
    pairs = pair_ratios(rows)
    report = {"targets": targets, "modes": modes, "samples": samples, "surface_samples": surface_samples,
              "repeat": repeat, "rows": rows,
              "pairs": pairs, "summary": summarize(rows, pairs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    if pairs:
        plot(pairs, out.with_suffix(".png"))
    if kept:
        layout_sheet(kept, [name for name in pictures if any(k[0] == name for k in kept)], targets[0],
                     modes[0], out.with_name(out.stem + "-layouts.png"))
    return report


def add_parser(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("artist", help="the artist pipeline against Blender's QuadriFlow")
    a.add_argument("--meshes", type=Path, required=True, help="folder of GLB/OBJ/PLY/STL meshes")
    a.add_argument("--faces", type=int, nargs="+", default=[2000, 5000], help="face targets (default 2000 5000)")
    a.add_argument("--mode", choices=MODES, nargs="+", default=["quads", "quad_dominant"],
                   help="Meshsmith modes to run (default quads quad_dominant)")
    a.add_argument("--samples", type=int, default=1_000_000,
                   help="surface samples per mesh for the sampled Chamfer (default 1M)")
    a.add_argument("--surface-samples", type=int, default=100_000,
                   help="surface samples per mesh for the surface Chamfer, exact distances (default 100k)")
    a.add_argument("--out", type=Path, default=Path("docs/bench-artist.json"),
                   help="JSON report; a PNG plot goes next to it (default docs/bench-artist.json)")
    a.add_argument("--only", choices=METHODS, help="run one method only")
    a.add_argument("--repeat", type=int, default=1, help="rounds in which each method remeshes once, in turn; the fastest run of each is kept (default 1)")
    a.add_argument("--pictures", nargs="+", default=[], metavar="NAME",
                   help="mesh file names whose first-target results are drawn beside QuadriFlow's (<out>-layouts.png)")


def main(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return 2
    if args.surface_samples < 1:
        print("error: --surface-samples must be at least 1", file=sys.stderr)
        return 2
    if any(f < 100 for f in args.faces):
        print("error: --faces must be at least 100", file=sys.stderr)
        return 2
    methods = (args.only,) if args.only else METHODS
    try:
        report = bench_artist(args.meshes, args.faces, args.mode, args.out, samples=args.samples,
                              surface_samples=args.surface_samples, methods=methods,
                              repeat=args.repeat, pictures=tuple(args.pictures))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report["rows"], report["pairs"]))
    s = report["summary"]
    for mode, m in s["by_mode"].items():
        print(f"\n{mode}: median time ratio (Meshsmith / QuadriFlow) {m['median_time_ratio']:.2f}, median Chamfer "
              f"ratio {m['median_chamfer_ratio']:.2f} (surface); goal (quad ratio >=, Chamfer <=, time <= 0.5x) met on "
              f"{m['goal_met']} of {m['pairs']}; layout goal (valence-4 share within 0.03 of QuadriFlow's or "
              f"above, no quad corner above 160 degrees, the input's components, crease coverage and Chamfer "
              f"better, time <= 0.5x) met on {m['layout_goal_met']} of {m['pairs']}")
    print(f"all Meshsmith results manifold: {s['all_manifold']}; face counts within 10%: "
          f"{s['face_count_within_10_percent']}")
    if s["quadriflow_failed_on_input"]:
        print("QuadriFlow refused the input; it ran on: "
              + ", ".join(f"{mesh} {how}" for mesh, how in sorted(s["quadriflow_failed_on_input"].items())))
    for e in s["errors"]:
        print(f"error: {e}")
    print(f"wrote {args.out}" + (f" and {args.out.with_suffix('.png')}" if report["pairs"] else ""))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_serve":
        _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m backend bench artist --meshes DIR --faces 2000 5000")
