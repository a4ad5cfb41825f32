"""Write the model card of a views-to-mesh checkpoint from what was measured.

    python -m training.card RUN_DIR --weights training/weights/views-cpu \\
        --bench test=out/bench-test/views.json --bench bench-meshes=out/bench-shared/views.json

Copies the run's best checkpoint (weights + config.json) into ``--weights``, with the curves
PNG, and writes ``README.md`` there: data and licences (from the samples folder's index),
config, steps, wall time, and the held-out figures of every ``--bench`` JSON
(``python -m training.bench views``) against the visual-hull baseline. Nothing in the card is
typed by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path


def _table(bench: dict) -> str:
    lines = ["| method | Chamfer-L1 | F@1% | F@2% | normal consistency | seconds |", "|---|---|---|---|---|---|"]
    names = {"hull": "visual hull of the masks", "hull_normals": "visual hull refined by the normal maps",
             "model": "model (RGB + masks + normals)", "model_rgb": "model (RGB + masks only)"}
    for method, m in bench["medians"].items():
        lines.append(f"| {names.get(method, method)} | {m['chamfer_l1']:.4f} | {m['fscore_1']:.3f} | "
                     f"{m['fscore_2']:.3f} | {m['normal']:.3f} | {m['seconds']:.1f} |")
    return "\n".join(lines)


def write_card(run: Path, weights: Path, benches: dict[str, Path]) -> Path:
    best = run / "best"
    record = json.loads((best / "config.json").read_text())
    state_cfg = record["train"]
    weights.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy(best / name, weights / name)
    if (run / "curves.png").is_file():
        shutil.copy(run / "curves.png", weights / "curves.png")
    rows = []
    metrics = run / "metrics.csv"
    seconds = 0.0
    if metrics.is_file():
        import csv

        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        seconds = max((float(r["seconds"]) for r in rows if r.get("seconds")), default=0.0)
    corpora = []
    for data_dir in state_cfg["data"].split(","):
        index = Path(data_dir) / "index.jsonl"
        licences, splits = Counter(), Counter()
        if index.is_file():
            for line in index.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                splits[row["split"]] += 1
                licences[row["asset"].get("licence") or "unknown"] += 1
        source = ("Debian's `sweethome3d-furniture` 1.8-1 (Sweet Home 3D's furniture catalogues): artist-made models"
                  if "furniture" in Path(data_dir).name else
                  "procedural shapes (`training/shapes.py`)" if "shapes" in Path(data_dir).name else f"`{data_dir}`")
        corpora.append(f"- {source}: {sum(splits.values())} assets, split by a seeded hash of each id ("
                       + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())) + "); licences: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(licences.items())) + ".")
    parts = [
        "# Meshsmith views-to-mesh, CPU model",
        "",
        "Reconstructs a closed mesh from six posed views (RGB, masks, optional world-space normal maps) in "
        "render/'s `zero123pp` layout: features of the views lifted into a voxel grid, a 3D U-Net with a "
        "transformer at its bottleneck, a point decoder for truncated signed distance and colour "
        "(`training/model.py`). Trained on this project's CPU, in chunks across sessions.",
        "",
        "## Data",
        *corpora,
        "",
        "Each model's credit and licence is in its corpus manifest (`python -m training.data furniture`); the "
        "weights are derived from CC-BY models among others and carry their attribution through that manifest.",
        "",
        "Inputs: six views at 320 px by render/ (Cycles, 8 samples), shrunk to "
        f"{record['model']['image_size']} px; supervision: exact SDF samples of the backend's watertight remesh "
        "(resolution 192) and surface colours lifted from the views by their depth.",
        "",
        "## Config and run",
        "```json",
        json.dumps(record["model"], indent=1),
        "```",
        f"Training: batch {state_cfg['batch_size']}, AdamW lr {state_cfg['lr']} -> {state_cfg['min_lr']} (cosine, "
        f"{state_cfg['warmup_steps']} warm-up steps), {state_cfg['sdf_points']} SDF points and "
        f"{state_cfg['colour_points']} colour points per example, normal-map dropout {state_cfg['normal_dropout']}, "
        f"seed {state_cfg['seed']}. These weights: step {record.get('step')} (selected by validation Chamfer-L1 "
        f"{record.get('val', {}).get('val_chamfer', float('nan')):.4f}); run so far: "
        f"{max((int(r['step']) for r in rows), default=0)} steps in {seconds / 3600:.1f} h of wall time on 2 CPU cores.",
        "Command: `make train-data` once, then `make train MINUTES=...` (resumes).",
        "",
        *([(run / "ckpt" / "HISTORY.md").read_text(encoding="utf-8").replace("# ", "### ", 1)]
          if (run / "ckpt" / "HISTORY.md").is_file() else []),
        "![curves](curves.png)",
        "",
        "## Held-out figures (`python -m training.bench views`, medians, resolution 128)",
    ]
    for label, path in benches.items():
        bench = json.loads(Path(path).read_text())
        parts += ["", f"### {label}: {bench['assets']} assets", "", _table(bench)]
        if "model_vs_hull" in bench:
            g = bench["model_vs_hull"]
            parts.append(f"\nModel against the baseline ({g['baseline']}): Chamfer-L1 "
                         f"{-100 * g['chamfer_reduction']:+.1f}%; RGB + masks only against the masks' hull: "
                         f"{-100 * g['chamfer_reduction_rgb_only']:+.1f}%; normal consistency {g['normal_gain']:+.3f} "
                         f"against the better hull.")
    card = weights / "README.md"
    card.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.card", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--bench", action="append", default=[], help="LABEL=PATH of a training.bench views JSON")
    args = parser.parse_args(argv)
    benches = dict(item.split("=", 1) for item in args.bench)
    print(write_card(args.run, args.weights, benches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
