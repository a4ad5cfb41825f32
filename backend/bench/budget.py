"""``python -m backend bench budget``: measured peak memory of jobs against the estimates the
server checks at submit (:meth:`backend.pipelines.pipeline.Pipeline.check_budget`).

Each run is a fresh child process that imports what a worker imports and notes its peak
resident memory (``VmHWM``: the worker's base), then loads the inputs and runs the
pipeline as a worker does and notes it again: the difference is the job's own peak, which
the pipeline's ``estimate`` (from the facts the server finds at submit) must cover. One row per run (measured MB,
estimated MB, their ratio, seconds); the summary says whether every estimate covered its
run and by how much at most. Inputs: ``assets/spot_broken.obj`` (a broken mesh), a
coloured icosphere made here (the texture pipeline's target and source) and any meshes
given with ``--meshes``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: (pipeline, params) run on every mesh; texture runs bake the coloured sphere onto itself.
GRID = [
    ("watertight", {"resolution": 256}),
    ("watertight", {"resolution": 512}),
    ("watertight", {"resolution": 384, "target_faces": 10000}),
    ("artist", {"faces": 2000}),
    ("artist", {"faces": 20000, "resolution": 256}),
    ("artist", {"faces": 100000, "resolution": 256}),
]
TEXTURE_SIZES = (512, 1024, 2048)

#: A worker's life in one process: imports (its base), then the job: loading the inputs and the run.
_CHILD = """
import json, resource, sys, time
from pathlib import Path

def peak():
    # VmHWM belongs to the process image: ru_maxrss would carry over the parent's peak through exec.
    try:
        line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

import backend.pipelines
from backend.inputs import INPUT_KINDS
from backend.pipelines import get_pipeline
pipeline, params, files = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
p = get_pipeline(pipeline)
checked = p.parse_params(params)
base = peak()
start = time.perf_counter()
inputs = {k: INPUT_KINDS[k].load(Path(v)) for k, v in files.items()}
p.run(inputs, checked, lambda f, s: None)
seconds = time.perf_counter() - start
print(json.dumps({"base": base, "job": peak() - base, "seconds": round(seconds, 2)}))
"""


def add_parser(sub) -> None:
    b = sub.add_parser("budget", help="measured peak memory of jobs against the server's estimates")
    b.add_argument("--meshes", type=Path, nargs="*", default=[], help="more mesh files to run the grid on")
    b.add_argument("--out", type=Path, help="also write the rows as JSON here")


def sphere(path: Path) -> Path:
    """A 1,280-face icosphere coloured by position, as a PLY (target and source of the texture runs)."""
    import numpy as np
    import trimesh

    mesh = trimesh.creation.icosphere(3)
    mesh.visual.vertex_colors = np.c_[mesh.vertices * 127 + 128, np.full(len(mesh.vertices), 255)].astype(np.uint8)
    mesh.export(path)
    return path


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.inputs import INPUT_KINDS
    from backend.pipelines import get_pipeline

    with tempfile.TemporaryDirectory(prefix="meshsmith-bench-budget-") as tmp:
        coloured = sphere(Path(tmp) / "sphere.ply")
        runs = [(pipeline, params, {"mesh": str(mesh)}) for mesh in [REPO / "assets" / "spot_broken.obj", *args.meshes]
                for pipeline, params in GRID]
        runs += [("texture", {"texture_size": size}, {"mesh": str(coloured), "source": str(coloured)})
                 for size in TEXTURE_SIZES]
        rows = []
        for pipeline, params, files in tqdm(runs, desc="jobs", leave=False):
            done = subprocess.run([sys.executable, "-c", _CHILD, pipeline, json.dumps(params), json.dumps(files)],
                                  cwd=REPO, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"error: {pipeline} {params} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            # The facts the server would have found at submit, and its estimate from them.
            facts = {k: INPUT_KINDS[k].check(Path(v).read_bytes(), k).facts for k, v in files.items()}
            p = get_pipeline(pipeline)
            estimate = p.estimate(facts, p.parse_params(params)).bytes
            rows.append({"pipeline": pipeline, "params": params, "mesh": Path(files["mesh"]).name,
                         "estimate": estimate, **measured})
    mb = 2**20
    print(f"{'pipeline':<11} {'mesh':<18} {'params':<44} {'job MB':>7} {'est. MB':>8} {'est/job':>8} {'s':>6}")
    for r in rows:
        print(f"{r['pipeline']:<11} {r['mesh'][:18]:<18} {json.dumps(r['params'])[:44]:<44} {r['job'] / mb:>7.0f} "
              f"{r['estimate'] / mb:>8.0f} {r['estimate'] / max(r['job'], 1):>8.2f} {r['seconds']:>6.1f}")
    under = [r for r in rows if r["estimate"] < r["job"]]
    base = max(r["base"] for r in rows) / mb
    print(f"\n{len(rows) - len(under)} of {len(rows)} estimates cover their run; estimate / measured "
          f"{min(r['estimate'] / max(r['job'], 1) for r in rows):.2f} to {max(r['estimate'] / max(r['job'], 1) for r in rows):.2f}; "
          f"a worker's base before the job: up to {base:.0f} MB")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 1 if under else 0
