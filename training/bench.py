"""Benchmarks of the learned pipelines against their no-learning baselines.

    python -m training.bench views --meshes DIR [--out OUT] [--weights SPEC] [--resolution 128]
    python -m training.bench views --views data/furniture-views --index data/furniture-train --split test
    python -m training.bench tokens --meshes DIR [--faces 500,800] | --corpus data/furniture [--split train]
    python -m training.bench tokens --packs data/furniture-meshlm [--split train]     # the packed meshes as trained on
    python -m training.bench mesh_lm --data data/furniture-meshlm --corpus data/furniture [--split test]
                                     [--weights SPEC] [--limit N] [--temperature 0.5]

``views`` renders every mesh of ``--meshes`` with render/ (six ``zero123pp`` views at 320 px,
as the training data; resumable, under ``OUT/views``), or takes the renders of a ``training.data``
split, and reconstructs each asset three ways: the visual hull (the baseline), the model with
RGB + masks + normal maps, and the model with RGB + masks only. Against the rendered mesh
(``mesh.glb``, the asset in the canonical box) it prints, per asset and as medians,
Chamfer-L1, F-score at 1% and 2% of the box, normal consistency and seconds, writes
``OUT/views.json`` and a picture of some results beside their references (``OUT/views.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("hull", "hull_normals", "model", "model_rgb")
LABELS = {"hull": "hull (masks)", "hull_normals": "hull + normals", "model": "model",
          "model_rgb": "model, no normals"}
METRICS = ("chamfer_l1", "fscore_1", "fscore_2", "normal", "seconds")


def _render(meshes: Path, out: Path) -> dict[str, Path]:
    from render.dataset import find_assets, is_complete, run
    from render.views import RenderConfig

    summary = run(meshes, out, RenderConfig(samples=8), workers=1)
    if summary["failed"]:
        for r in summary["records"]:
            if not r["ok"]:
                print(f"render failed: {r['name']}: {r['error']}", file=sys.stderr)
    return {n: out / n for n in find_assets(meshes) if is_complete(out / n)}


def reconstruct_all(folder: Path, model, resolution: int) -> dict:
    """Every method on one rendered asset: {method: (vertices, faces, seconds)} in the world frame."""
    from backend.mesh.texture.projection import load_views
    from training.baseline import visual_hull
    from training.infer import reconstruct

    views = load_views(folder)
    out = {}
    for method, refine in (("hull", False), ("hull_normals", True)):
        t = time.perf_counter()
        v, f = visual_hull(views, resolution, refine=refine)
        out[method] = (v, f, time.perf_counter() - t)
    if model is not None:
        for method, normals in (("model", True), ("model_rgb", False)):
            t = time.perf_counter()
            v, f = reconstruct(model, views, resolution, use_normals=normals)
            out[method] = (v, f, time.perf_counter() - t)
    return out


def bench_views(folders: dict[str, Path], out: Path, *, weights: str | None, resolution: int,
                picture_rows: int = 6) -> dict:
    import torch

    from backend.mesh.io import load_mesh
    from training.metrics import glb_to_world, mesh_metrics
    from training.registry import load_views_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, record = load_views_model(weights) if weights != "none" else (None, {})
    rows, panels = [], []
    methods = [m for m in METHODS if model is not None or m.startswith("hull")]
    header = f"{'asset':40s} " + " ".join(f"{LABELS[m][:17]:>17s}" for m in methods)
    print(f"Chamfer-L1 (lower is better) / F@2% / normal consistency / seconds, per asset; resolution {resolution}")
    print(header)
    for name, folder in sorted(folders.items()):
        ref = load_mesh(folder / "mesh.glb")
        ref_v, ref_f = glb_to_world(ref.vertices), ref.faces
        results = reconstruct_all(folder, model, resolution)
        row = {"asset": name}
        for method, (v, f, seconds) in results.items():
            m = mesh_metrics(v, f, ref_v, ref_f)
            row[method] = {**m, "seconds": seconds, "faces": int(len(f))}
        rows.append(row)
        print(f"{name[-40:]:40s} " + " ".join(
            f"{row[m]['chamfer_l1']:.4f}/{row[m]['fscore_2']:.2f}/{row[m]['normal']:.2f}/{row[m]['seconds']:4.1f}"
            .rjust(17) for m in methods), flush=True)
        if len(panels) < picture_rows:
            panels.append((name, {LABELS[m]: results[m][:2] for m in methods}, (ref_v, ref_f)))
    medians = {m: {k: float(np.median([r[m][k] for r in rows])) for k in METRICS} for m in methods}
    print("median".ljust(40) + " " + " ".join(
        f"{medians[m]['chamfer_l1']:.4f}/{medians[m]['fscore_2']:.2f}/{medians[m]['normal']:.2f}/"
        f"{medians[m]['seconds']:4.1f}".rjust(17) for m in methods))
    summary = {"assets": len(rows), "resolution": resolution, "weights": str(weights or "default"),
               "weights_step": record.get("step"), "medians": medians, "rows": rows}
    if model is not None:
        # The baseline is the better of the two hulls (by median Chamfer); without normal maps
        # the model is held to the masks-only hull, the baseline of the same inputs.
        base = min(("hull", "hull_normals"), key=lambda m: medians[m]["chamfer_l1"])
        ours, rgb = medians["model"], medians["model_rgb"]
        summary["model_vs_hull"] = {
            "baseline": base,
            "chamfer_reduction": 1.0 - ours["chamfer_l1"] / medians[base]["chamfer_l1"],
            "chamfer_reduction_rgb_only": 1.0 - rgb["chamfer_l1"] / medians["hull"]["chamfer_l1"],
            "normal_gain": ours["normal"] - max(medians["hull"]["normal"], medians["hull_normals"]["normal"]),
        }
        g = summary["model_vs_hull"]
        print(f"model vs the baseline ({LABELS[base]}) at the median: Chamfer-L1 {-100 * g['chamfer_reduction']:+.1f}%; "
              f"RGB + masks only vs the masks' hull: {-100 * g['chamfer_reduction_rgb_only']:+.1f}%; normal "
              f"consistency {g['normal_gain']:+.3f} (vs the better hull); model seconds per asset (median): "
              f"{ours['seconds']:.1f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "views.json").write_text(json.dumps(summary, indent=1))
    if panels:
        from training.visual import methods_sheet

        methods_sheet(panels, out / "views.png", title=f"views_to_mesh: {len(rows)} assets, resolution {resolution}")
    print(f"wrote {out / 'views.json'} and {out / 'views.png'}")
    return summary


def bench_tokens(paths: dict[str, Path], budgets: list[int], out: Path, *, mode: str, label: str) -> dict:
    """Tokens per face of the naive, AMT-style and gate-traversal encodings, per budget."""
    from tqdm import tqdm

    from training.mesh_corpus import prepare, token_counts

    summary = {"set": label, "mode": mode, "budgets": {}}
    for budget in budgets:
        rows, failures = [], []
        for name, path in tqdm(sorted(paths.items()), desc=f"{label} <= {budget} faces", unit="mesh"):
            try:
                prepared = prepare(path, max_faces=budget, mode=mode)
                rows.append({"mesh": name, "kept_topology": prepared.kept_topology,
                             "source_faces": prepared.source_faces, "dropped": prepared.mesh.dropped_faces,
                             **token_counts(prepared.mesh)})
            except Exception as exc:                   # a bad file is reported, not fatal
                failures.append({"mesh": name, "error": f"{type(exc).__name__}: {exc}"})
        faces = sum(r["faces"] for r in rows)
        result = {"meshes": len(rows), "failed": failures, "kept_topology": sum(r["kept_topology"] for r in rows),
                  "faces_median": float(np.median([r["faces"] for r in rows])) if rows else 0.0,
                  "quad_share": sum(r["quads"] for r in rows) / max(faces, 1), "rows": rows}
        for enc in ("naive", "amt", "ours"):
            result[enc] = {"per_face": sum(r[enc] * r["faces"] for r in rows) / max(faces, 1),
                           "median": float(np.median([r[enc] for r in rows])) if rows else 0.0}
        summary["budgets"][str(budget)] = result
    print(f"tokens per face on {label} ({mode} where a mesh is over budget); all faces pooled, "
          "then the median over meshes")
    print(f"{'budget':>7s} {'meshes':>6s} {'kept':>5s} {'faces':>6s} {'quads':>6s} "
          f"{'naive':>12s} {'AMT-style':>12s} {'ours':>12s}")
    for budget, r in summary["budgets"].items():
        print(f"{budget:>7s} {r['meshes']:6d} {r['kept_topology']:5d} {r['faces_median']:6.0f} {r['quad_share']:6.1%} "
              + " ".join(f"{r[e]['per_face']:5.2f} / {r[e]['median']:4.2f}" for e in ("naive", "amt", "ours")))
        for f in r["failed"]:
            print(f"  failed: {f['mesh']}: {f['error']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'tokens.json'}")
    return summary


def bench_mesh_lm(data: Path, out: Path, *, corpus: Path | None, weights: str | None, split: str = "test",
                  limit: int = 0, temperature: float = 0.5, top_p: float = 0.9, seed: int = 0,
                  speed_tokens: int = 300) -> dict:
    """The mesh model on held-out packs: does each sample decode to a manifold mesh, how close is it to
    the conditioning points (Chamfer-L1 in the pack's [-1, 1] frame) against the artist pipeline at
    the same face count on the source mesh, faces per sample, and tokens/s with and without the cache."""
    import torch
    from tqdm import tqdm

    from backend.mesh.metrics import polygon_report, surface_area
    from backend.mesh.types import Mesh
    from backend.pipelines.points_to_mesh import _chamfer_to_points
    from backend.pipelines.text_to_mesh import _polygon_mesh
    from training.data import read_manifest
    from training.mesh_lm import generate
    from training.registry import load_mesh_lm

    model, record = load_mesh_lm(weights)
    bits = model.config.bits
    top = (1 << bits) - 1
    rows = [json.loads(line) for line in (data / "index.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    if limit:
        rows = rows[:limit]
    if not rows:
        raise ValueError(f"{data} has no packs in split {split!r}")
    sources = {a.id.replace("/", "__"): corpus / a.path for a in read_manifest(corpus)} if corpus else {}
    n_points = int(record.get("train", {}).get("lm_points", 2048))
    results, panels = [], []
    for row in tqdm(rows, desc=f"mesh_lm on {split}", unit="asset"):
        with np.load(data / "packs" / f"{row['name']}.npz") as z:
            pack = {k: z[k] for k in z.files}
        if int(pack["bits"]) != bits:
            raise ValueError(f"{row['name']}: packed at {int(pack['bits'])} bits, the model uses {bits}")
        points = pack["points"].astype(np.float32)
        pick = np.random.default_rng(seed).choice(len(points), min(n_points, len(points)), replace=False)
        cond = model.condition(points=torch.from_numpy(points[pick][None]))
        budget = max(int(row["faces"]) * 2, 50)
        sample = generate(model, cond, max_faces=budget, temperature=temperature, top_p=top_p, seed=seed)
        result = {"name": row["name"], "reference_faces": int(row["faces"]), "faces": len(sample.faces),
                  "finished": sample.finished, "tokens": len(sample.tokens), "seconds": round(sample.seconds, 2)}
        reference = np.asarray(pack["vertices"], dtype=np.float64) / top * 2 - 1
        ref_faces = _pack_faces(pack)
        if sample.faces:
            mesh = _polygon_mesh(np.asarray(sample.vertices, dtype=np.float64) / top * 2 - 1, sample.faces)
            report = polygon_report(mesh.faces, mesh.face_sizes)
            flat = not surface_area(mesh.vertices, mesh.faces) > 0    # no surface: no Chamfer either
            result.update(manifold=bool(report["manifold"]) and not flat, closed=bool(report["closed"]) and not flat,
                          chamfer_l1=float("nan") if flat else _chamfer_to_points(mesh, points[:, :3].astype(np.float64)))
        else:
            mesh, result["manifold"], result["closed"], result["chamfer_l1"] = None, False, False, float("nan")
        result["reference_chamfer_l1"] = _chamfer_to_points(_polygon_mesh(reference, ref_faces),
                                                            points[:, :3].astype(np.float64))
        if row["name"] in sources and "offset" in pack and sample.faces:
            result.update(_artist_at(sources[row["name"]], max(len(sample.faces), 1), pack, points))
        results.append(result)
        if len(panels) < 8:
            shown = {"sample": (mesh.vertices, mesh.faces) if mesh is not None else (reference[:0], np.zeros((0, 3), int))}
            ref = _polygon_mesh(reference, ref_faces)
            panels.append((row["name"], shown, (ref.vertices, ref.faces)))
    speed = _cache_speed(model, points, n_points, speed_tokens, seed)
    summary = _mesh_lm_summary(results, speed, record, split)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mesh_lm.json").write_text(json.dumps({"summary": summary, "rows": results}, indent=1, default=float))
    from training.visual import methods_sheet

    if panels:
        methods_sheet(panels, out / "mesh_lm.png",
                      title=f"mesh_lm: held-out samples beside their references ({split}, step {record.get('step')})")
    _print_mesh_lm(results, summary)
    print(f"wrote {out / 'mesh_lm.json'} and {out / 'mesh_lm.png'}")
    return summary


def _pack_faces(pack: dict) -> list[tuple[int, ...]]:
    """The packed mesh's faces, indexing ``pack['vertices']`` (decoded from its tokens)."""
    from training.tokenizer import Vocabulary, decode

    vertices, faces = decode(pack["tokens"].astype(np.int64), Vocabulary(int(pack["bits"]), int(pack["max_split"])))
    index = {tuple(v): i for i, v in enumerate(np.asarray(pack["vertices"]).tolist())}
    return [tuple(index[tuple(vertices[i].tolist())] for i in f) for f in faces]


def _artist_at(path: Path, faces: int, pack: dict, points: np.ndarray) -> dict:
    """The artist pipeline at ``faces`` faces on the source mesh, in the pack's frame: its Chamfer to the points."""
    from backend.mesh.polygons import to_mesh
    from backend.mesh.retopo.artist import retopo
    from backend.mesh.types import Mesh
    from backend.pipelines.points_to_mesh import _chamfer_to_points
    from training.mesh_corpus import polygons_of, to_pack_frame

    start = time.perf_counter()
    try:
        vertices, polygons = polygons_of(path)
        padded = np.array([tuple(p) + (-1,) * (4 - len(p)) for p in polygons], dtype=np.int64)
        triangles, _ = to_mesh(vertices, padded)
        result = retopo(vertices, triangles, target_faces=max(faces, 100), mode="triangles")
    except Exception as exc:                                  # reported, not fatal
        return {"artist_error": f"{type(exc).__name__}: {exc}"}
    flat, sizes = result.mesh_arrays()
    framed = to_pack_frame(result.vertices, pack["offset"], float(pack["scale"]), int(pack["bits"]))
    return {"artist_faces": int(len(sizes) if sizes is not None else len(flat)),
            "artist_chamfer_l1": _chamfer_to_points(Mesh(framed, flat, sizes), points[:, :3].astype(np.float64)),
            "artist_seconds": round(time.perf_counter() - start, 2)}


def _cache_speed(model, points: np.ndarray, n_points: int, tokens: int, seed: int) -> dict:
    """Tokens per second of greedy sampling with and without the key/value cache (same tokens)."""
    import torch

    from training.mesh_lm import generate

    cond = model.condition(points=torch.from_numpy(points[:n_points][None]))
    faces = max(tokens // 2, 10)
    cached = generate(model, cond, max_faces=faces, temperature=0.0, seed=seed, use_cache=True)
    full = generate(model, cond, max_faces=faces, temperature=0.0, seed=seed, use_cache=False)
    return {"tokens": len(cached.tokens), "same_tokens": cached.tokens == full.tokens,
            "cached_tokens_per_s": round(cached.tokens_per_second, 1), "full_tokens_per_s": round(full.tokens_per_second, 1)}


def _mesh_lm_summary(results: list[dict], speed: dict, record: dict, split: str) -> dict:
    def median(key, rows=results):
        values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        return float(np.median(values)) if values else float("nan")

    paired = [r for r in results if "artist_chamfer_l1" in r and np.isfinite(r.get("chamfer_l1", np.nan))]
    return {"split": split, "assets": len(results), "weights_step": record.get("step"),
            "manifold_share": sum(r["manifold"] for r in results) / len(results),
            "closed_share": sum(r["closed"] for r in results) / len(results),
            "finished_share": sum(r["finished"] for r in results) / len(results),
            "faces_median": median("faces"), "reference_faces_median": median("reference_faces"),
            "chamfer_l1_median": median("chamfer_l1"), "reference_chamfer_l1_median": median("reference_chamfer_l1"),
            "artist_chamfer_l1_median": median("artist_chamfer_l1"),
            "paired_model_chamfer_l1_median": median("chamfer_l1", paired),
            "model_beats_artist": sum(r["chamfer_l1"] < r["artist_chamfer_l1"] for r in paired), "paired": len(paired),
            "seconds_median": median("seconds"), **speed}


def _print_mesh_lm(results: list[dict], summary: dict) -> None:
    print(f"{'asset':<40s} {'faces':>5s} {'ref':>5s} {'manif':>5s} {'chamfer':>8s} {'artist':>8s} {'packed':>8s} {'s':>6s}")
    for r in results:
        print(f"{r['name'][:40]:<40s} {r['faces']:5d} {r['reference_faces']:5d} {str(r['manifold']):>5s} "
              f"{r['chamfer_l1']:8.4f} {r.get('artist_chamfer_l1', float('nan')):8.4f} "
              f"{r['reference_chamfer_l1']:8.4f} {r['seconds']:6.1f}")
    s = summary
    print(f"{s['assets']} assets ({s['split']}, weights step {s['weights_step']}): manifold {s['manifold_share']:.0%}, "
          f"closed {s['closed_share']:.0%}, ended by EOS {s['finished_share']:.0%}; faces median {s['faces_median']:.0f} "
          f"(references {s['reference_faces_median']:.0f}); Chamfer-L1 to the points median {s['chamfer_l1_median']:.4f} "
          f"(artist at the same faces {s['artist_chamfer_l1_median']:.4f}, better on {s['model_beats_artist']}/"
          f"{s['paired']}; the packed reference {s['reference_chamfer_l1_median']:.4f}); tokens/s with the cache "
          f"{s['cached_tokens_per_s']}, without {s['full_tokens_per_s']} (same tokens: {s['same_tokens']})")


def bench_pack_tokens(data: Path, out: Path, *, split: str | None) -> dict:
    """Tokens per face of the three encodings over the packed meshes of a meshlm folder (the meshes the
    model trains on, already reduced and quantized), per split."""
    from training.mesh_corpus import token_counts
    from training.tokenizer import QuantizedMesh, Vocabulary, decode

    rows = [json.loads(line) for line in (data / "index.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if split is None or r["split"] == split]
    if not rows:
        raise ValueError(f"{data} has no packs" + (f" in split {split!r}" if split else ""))
    counts = []
    for row in rows:
        with np.load(data / "packs" / f"{row['name']}.npz") as z:
            bits, max_split, tokens = int(z["bits"]), int(z["max_split"]), z["tokens"].astype(np.int64)
        vertices, faces = decode(tokens, Vocabulary(bits, max_split))
        counts.append({"name": row["name"], "split": row["split"], "kept_topology": bool(row["kept_topology"]),
                       **token_counts(QuantizedMesh(np.asarray(vertices), faces, bits), Vocabulary(bits, max_split))})
    faces = sum(c["faces"] for c in counts)
    summary = {"packs": str(data), "split": split or "all", "meshes": len(counts),
               "kept_topology": sum(c["kept_topology"] for c in counts), "faces": faces,
               "faces_median": float(np.median([c["faces"] for c in counts])),
               "quad_share": sum(c["quads"] for c in counts) / max(faces, 1)}
    for enc in ("naive", "amt", "ours"):
        summary[enc] = {"per_face": sum(c[enc] * c["faces"] for c in counts) / max(faces, 1),
                        "median": float(np.median([c[enc] for c in counts]))}
    print(f"tokens per face on {data} ({summary['split']}): {summary['meshes']} meshes, {faces:,} faces "
          f"(median {summary['faces_median']:.0f}; {summary['kept_topology']} kept their own topology, the rest "
          f"reduced by the artist pipeline; quads {summary['quad_share']:.1%}); all faces pooled / median over meshes")
    for enc, label in (("naive", "naive"), ("amt", "AMT-style"), ("ours", "ours")):
        print(f"  {label:<10s} {summary[enc]['per_face']:5.2f} / {summary[enc]['median']:4.2f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"tokens-packs-{summary['split']}.json").write_text(json.dumps({"summary": summary, "rows": counts}, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("views", help="views_to_mesh: model against the visual hull")
    v.add_argument("--meshes", type=Path, help="a folder of meshes to render and reconstruct")
    v.add_argument("--views", type=Path, help="rendered assets (training.data views) instead of --meshes")
    v.add_argument("--index", type=Path, help="with --views: a training.data samples folder (its index.jsonl)")
    v.add_argument("--split", default="test", help="with --views/--index: the split to bench (default test)")
    v.add_argument("--limit", type=int, default=0, help="at most this many assets (0: all)")
    v.add_argument("--out", type=Path, default=Path("out/bench-views"))
    v.add_argument("--weights", default=None, help="a checkpoint folder or hub repo id; none: hull only")
    v.add_argument("--resolution", type=int, default=128)
    t = sub.add_parser("tokens", help="tokens per face: naive, AMT-style and ours")
    t.add_argument("--meshes", type=Path, help="a folder of meshes")
    t.add_argument("--corpus", type=Path, help="a training.data corpus (its manifest.jsonl)")
    t.add_argument("--packs", type=Path, help="a training.data meshlm folder: its packed meshes as they are")
    t.add_argument("--split", default=None, help="with --corpus: one split (default: all)")
    t.add_argument("--faces", default="800", help="face budgets, comma-separated (default 800)")
    t.add_argument("--mode", default="triangles", choices=("triangles", "quad_dominant"),
                   help="how a mesh over budget is reduced (default triangles)")
    t.add_argument("--limit", type=int, default=0)
    t.add_argument("--out", type=Path, default=Path("out/bench-tokens"))
    m = sub.add_parser("mesh_lm", help="the mesh model on held-out packs against the artist pipeline")
    m.add_argument("--data", type=Path, required=True, help="a training.data meshlm folder (index.jsonl + packs)")
    m.add_argument("--corpus", type=Path, help="its corpus (for the artist pipeline on the source meshes)")
    m.add_argument("--split", default="test")
    m.add_argument("--weights", default=None, help="a checkpoint folder or hub repo id (default: shipped)")
    m.add_argument("--limit", type=int, default=0)
    m.add_argument("--temperature", type=float, default=0.5)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", type=Path, default=Path("out/bench-mesh-lm"))
    args = parser.parse_args(argv)
    if args.command == "mesh_lm":
        try:
            bench_mesh_lm(args.data, args.out, corpus=args.corpus, weights=args.weights, split=args.split,
                          limit=args.limit, temperature=args.temperature, seed=args.seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "tokens":
        if sum(map(bool, (args.meshes, args.corpus, args.packs))) != 1:
            parser.error("give one of --meshes DIR, --corpus DIR, --packs DIR")
        if args.packs:
            try:
                bench_pack_tokens(args.packs, args.out, split=args.split)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.meshes:
            from training.data import MESH_SUFFIXES

            paths = {p.name: p for p in sorted(args.meshes.iterdir()) if p.suffix.lower() in MESH_SUFFIXES}
            label = str(args.meshes)
        else:
            from training.data import read_manifest

            paths = {a.id: args.corpus / a.path for a in read_manifest(args.corpus, args.split)}
            label = f"{args.corpus} ({args.split or 'all splits'})"
        if args.limit:
            paths = dict(sorted(paths.items())[:args.limit])
        bench_tokens(paths, [int(b) for b in args.faces.split(",")], args.out, mode=args.mode, label=label)
        return 0
    if bool(args.meshes) == bool(args.views):
        parser.error("give --meshes DIR, or --views DIR with --index DIR")
    if args.meshes:
        folders = _render(args.meshes, args.out / "views")
    else:
        if not args.index:
            parser.error("--views needs --index (a training.data samples folder)")
        from training.data import read_index

        names = [r["name"] for r in read_index(args.index, args.split)]
        folders = {n: args.views / n for n in names if (args.views / n / "cameras.json").is_file()}
    if args.limit:
        folders = dict(sorted(folders.items())[:args.limit])
    if not folders:
        print("error: no rendered assets to bench", file=sys.stderr)
        return 2
    bench_views(folders, args.out, weights=args.weights, resolution=args.resolution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
