"""Write the model card of a checkpoint from what was measured.

    python -m training.card RUN_DIR --weights training/weights/views-cpu \\
        --bench test=out/bench-test/views.json --bench bench-meshes=out/bench-shared/views.json
    python -m training.card RUN_DIR --weights training/weights/mesh-lm-cpu \\
        --bench test=out/bench-mesh-lm/mesh_lm.json --corpus data/furniture [--notes NOTES.md]

Copies the run's best checkpoint (weights + config.json) into ``--weights``, with the curves
PNG, and writes ``README.md`` there: data and licences (from the samples folder's index),
config, steps, wall time, and the held-out figures of every ``--bench`` JSON
(``python -m training.bench views`` or ``mesh_lm``) against its baseline; each ``mesh_lm``
bench brings its own picture of samples (``samples-<label>.png``). Every figure comes from
those files; the only words typed by hand are ``--notes``, the author's own account of what
the weights can and cannot do, which the card quotes under its own heading.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
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


def write_card(run: Path, weights: Path, benches: dict[str, Path], *, corpus: Path | None = None,
               notes: Path | None = None) -> Path:
    """The card of ``run``'s best checkpoint (its task decides which), with the checkpoint copied to ``weights``.

    ``benches`` maps a label to a ``training.bench`` JSON; ``corpus`` (mesh LM) is the corpus
    folder whose manifest gives the licences; ``notes`` a Markdown file of the author's words.
    """
    record, rows, seconds = _copy_best(run, weights)
    if record.get("task") == "mesh_lm":
        parts = _mesh_lm_parts(run, weights, record, rows, seconds, benches, corpus=corpus)
    else:
        parts = _views_parts(run, record, rows, seconds, benches)
    if notes is not None:
        parts += ["", "## What it can and cannot do (the author's notes)", "", notes.read_text(encoding="utf-8").strip()]
    card = weights / "README.md"
    card.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return card


def _copy_best(run: Path, weights: Path) -> tuple[dict, list[dict], float]:
    """Copy the best weights, config and curves; return the record, the metrics rows and the wall time."""
    best = run / "best"
    record = json.loads((best / "config.json").read_text())
    weights.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy(best / name, weights / name)
    if (run / "curves.png").is_file():
        shutil.copy(run / "curves.png", weights / "curves.png")
    rows: list[dict] = []
    metrics = run / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
    seconds = max((float(r["seconds"]) for r in rows if r.get("seconds")), default=0.0)
    return record, rows, seconds


def _history(run: Path) -> list[str]:
    history = run / "ckpt" / "HISTORY.md"
    return [history.read_text(encoding="utf-8").replace("# ", "### ", 1)] if history.is_file() else []


def _run_line(record: dict, rows: list[dict], seconds: float, selected_by: str) -> str:
    return (f"These weights: step {record.get('step')} (selected by {selected_by}); run so far: "
            f"{max((int(r['step']) for r in rows), default=0)} steps in {seconds / 3600:.1f} h of wall time on 2 CPU cores.")


def _samples_picture(bench_json: Path, picture: str, label: str, weights: Path) -> list[str]:
    """The bench's own samples picture, copied as ``samples-<label>.png``, and its link ([] when it has none)."""
    source = Path(bench_json).parent / picture
    if not source.is_file():
        return []
    name = "samples-" + (re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "bench") + ".png"
    shutil.copy(source, weights / name)
    return ["", f"![{label}: held-out samples beside their references]({name})"]


def _mesh_lm_parts(run: Path, weights: Path, record: dict, rows: list[dict], seconds: float,
                   benches: dict[str, Path], *, corpus: Path | None = None) -> list[str]:
    """The mesh language model's card: data and licences, config, run, held-out figures."""
    cfg = record["train"]
    data_lines = []
    faces_total = tokens_total = 0
    for data_dir in str(cfg["data"]).split(","):
        index = Path(data_dir) / "index.jsonl"
        if not index.is_file():
            data_lines.append(f"- `{data_dir}` (its index was not found when this card was written)")
            continue
        entries = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not entries:
            data_lines.append(f"- `{data_dir}`: its index lists no meshes")
            continue
        splits = Counter(e["split"] for e in entries)
        kept = sum(bool(e.get("kept_topology")) for e in entries)
        faces = sorted(e["faces"] for e in entries)
        if all("tokens" in e for e in entries):
            faces_total += sum(faces)
            tokens_total += sum(e["tokens"] for e in entries)
        data_lines.append(
            f"- `{data_dir}`: {len(entries)} meshes packed at <= {cfg.get('max_faces')} faces ("
            + ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
            + f"); {kept} keep their artist topology as they are, the others were reduced by the project's "
              f"remesher (median {faces[len(faces) // 2]} faces). Captions from each model's name, category and tags.")
    if corpus is not None and (corpus / "manifest.jsonl").is_file():
        manifest = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        licences = Counter(m.get("licence") or "unknown" for m in manifest)
        data_lines.append("- Source: Debian's `sweethome3d-furniture` (Sweet Home 3D's catalogues), "
                          f"{len(manifest)} artist-made models; licences: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(licences.items()))
                          + "; each model's credit is in the corpus manifest.")
    coding = [f"{record['model']['bits']}-bit coordinates"] if record["model"].get("bits") else []
    if faces_total:
        coding.append(f"{tokens_total / faces_total:.2f} tokens per face on its data")
    parts = [
        "# Meshsmith mesh language model, CPU",
        "",
        "Writes a mesh face by face as tokens of `training/tokenizer.py`"
        + (f" ({', '.join(coding)})" if coding else "")
        + ", conditioned on a point cloud with normals (Artist (learned), "
        "`points_to_mesh`) or on a caption (From Text, `text_to_mesh`): a decoder-only transformer with RoPE "
        "and a KV cache, a perceiver-style point encoder and a small text encoder (`training/mesh_lm.py`). "
        "Trained on this project's CPU, in chunks across sessions.",
        "",
        "## Data",
        *data_lines,
        "",
        "## Config and run",
        "```json",
        json.dumps(record["model"], indent=1),
        "```",
        f"Training: batch {cfg['batch_size']}, AdamW lr {cfg['lr']} -> {cfg['min_lr']} (cosine, "
        f"{cfg['warmup_steps']} warm-up steps), {cfg.get('lm_points')} conditioning points per mesh with noise "
        f"{cfg.get('point_noise')}, captions instead of points for {cfg.get('caption_share')} of the examples, "
        f"seed {cfg['seed']}. "
        + _run_line(record, rows, seconds, f"validation loss {record.get('val', {}).get('val_loss', float('nan')):.3f}"),
        "Command: `make train-data-mesh-lm` once, then `make train-mesh-lm MINUTES=...` (resumes).",
        "",
        *_history(run),
        "![curves](curves.png)",
        "",
        "## Held-out figures (`python -m training.bench mesh_lm`)",
    ]
    for label, path in benches.items():
        loaded = json.loads(Path(path).read_text())
        b = loaded.get("summary", loaded)
        parts += [
            "", f"### {label}: {b['assets']} meshes ({b['split']} split), weights step {b['weights_step']}", "",
            "| | value |", "|---|---|",
            f"| decodes to a manifold mesh | {b['manifold_share']:.0%} |",
            f"| closed | {b['closed_share']:.0%} |",
            f"| ended by its own end token | {b['finished_share']:.0%} |",
            f"| faces per sample (median; references) | {b['faces_median']:.0f} ({b['reference_faces_median']:.0f}) |",
            f"| Chamfer-L1 to the conditioning points (median) | {b['chamfer_l1_median']:.4f} |",
            f"| the artist pipeline at the same face count | {b['artist_chamfer_l1_median']:.4f} "
            f"(model better on {b['model_beats_artist']} of {b['paired']}) |",
            f"| the packed reference itself | {b['reference_chamfer_l1_median']:.4f} |",
            f"| tokens/s with the KV cache / without | {b['cached_tokens_per_s']} / {b['full_tokens_per_s']} |",
        ]
        parts += _samples_picture(Path(path), "mesh_lm.png", label, weights)
    return parts


def _views_parts(run: Path, record: dict, rows: list[dict], seconds: float, benches: dict[str, Path]) -> list[str]:
    """The views-to-mesh model's card: data and licences, inputs, config, run, held-out figures."""
    state_cfg = record["train"]
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
        f"seed {state_cfg['seed']}. "
        + _run_line(record, rows, seconds,
                    f"validation Chamfer-L1 {record.get('val', {}).get('val_chamfer', float('nan')):.4f}"),
        "Command: `make train-data` once, then `make train MINUTES=...` (resumes).",
        "",
        *_history(run),
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
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.card", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--bench", action="append", default=[],
                        help="LABEL=PATH of a training.bench views or mesh_lm JSON")
    parser.add_argument("--corpus", type=Path, help="mesh_lm: the corpus folder (its manifest's licences)")
    parser.add_argument("--notes", type=Path,
                        help="a Markdown file, in the author's words, of what the weights can and cannot do")
    args = parser.parse_args(argv)
    benches = dict(item.split("=", 1) for item in args.bench)
    print(write_card(args.run, args.weights, benches, corpus=args.corpus, notes=args.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
