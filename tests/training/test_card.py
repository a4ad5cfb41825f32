"""training/card.py on a run folder and bench files made here (no training, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

from training.card import main, write_card

MESH_LM_SUMMARY = {"assets": 3, "split": "val", "weights_step": 30, "manifold_share": 0.5, "closed_share": 0.25,
                   "finished_share": 1.0, "faces_median": 40, "reference_faces_median": 44,
                   "chamfer_l1_median": 0.05, "artist_chamfer_l1_median": 0.04, "model_beats_artist": 1,
                   "paired": 3, "reference_chamfer_l1_median": 0.01, "cached_tokens_per_s": 900,
                   "full_tokens_per_s": 100}


def _run(tmp_path: Path, task: str, model: dict, train: dict) -> Path:
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text(json.dumps({"task": task, "step": 30, "model": model, "train": train,
                                                           "val": {"val_loss": 2.5, "val_chamfer": 0.02}}))
    (run / "best" / "model.safetensors").write_bytes(b"weights")
    (run / "curves.png").write_bytes(b"curves")
    (run / "metrics.csv").write_text("step,seconds,loss\n10,60,3\n30,7200,2\n")
    (run / "ckpt").mkdir()
    (run / "ckpt" / "HISTORY.md").write_text("# History\nsteps 1-30 this session\n")
    return run


def _mesh_lm_run(tmp_path: Path, data: list[Path], bits: int = 6) -> Path:
    train = {"data": ",".join(map(str, data)), "max_faces": 200, "batch_size": 2, "lr": 3e-3, "min_lr": 3e-4,
             "warmup_steps": 2, "lm_points": 256, "point_noise": 0.01, "caption_share": 0.2, "seed": 0}
    return _run(tmp_path, "mesh_lm", {"bits": bits, "width": 64}, train)


def _index(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _bench(folder: Path, picture: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "mesh_lm.json").write_text(json.dumps({"summary": MESH_LM_SUMMARY}))
    (folder / "mesh_lm.png").write_bytes(picture)
    return folder / "mesh_lm.json"


def test_the_mesh_lm_card_takes_its_figures_from_the_record_and_the_data(tmp_path):
    data = _index(tmp_path / "lm", [
        {"name": "box", "split": "train", "faces": 12, "tokens": 18, "kept_topology": True},
        {"name": "ball", "split": "train", "faces": 80, "tokens": 120, "kept_topology": False},
        {"name": "ring", "split": "val", "faces": 8, "tokens": 12, "kept_topology": True}])
    run = _mesh_lm_run(tmp_path, [data], bits=6)
    card = write_card(run, tmp_path / "shipped", {}).read_text()
    assert "(6-bit coordinates, 1.50 tokens per face on its data)" in card
    assert "7-bit" not in card and "1.8" not in card
    assert "3 meshes packed at <= 200 faces (train 2, val 1); 2 keep their artist topology" in card
    assert "median 12 faces" in card and "step 30" in card and "30 steps in 2.0 h" in card
    assert "steps 1-30 this session" in card
    for name in ("model.safetensors", "config.json", "curves.png"):
        assert (tmp_path / "shipped" / name).is_file(), name


def test_data_without_token_counts_and_an_empty_index_leave_the_figures_out(tmp_path):
    # An index from before token counts, and one that lists nothing (a pack that failed throughout).
    old = _index(tmp_path / "old", [{"name": "box", "split": "train", "faces": 12, "kept_topology": True}])
    empty = _index(tmp_path / "empty", [])
    card = write_card(_mesh_lm_run(tmp_path, [old, empty]), tmp_path / "shipped", {}).read_text()
    assert "(6-bit coordinates)" in card and "tokens per face" not in card
    assert f"- `{empty}`: its index lists no meshes" in card


def test_each_bench_brings_its_own_samples_picture(tmp_path):
    data = _index(tmp_path / "lm", [{"name": "box", "split": "val", "faces": 12, "tokens": 18}])
    run = _mesh_lm_run(tmp_path, [data])
    (tmp_path / "notes.md").write_text("It writes boxes.\n")
    shipped = tmp_path / "shipped"
    assert main([str(run), f"--weights={shipped}",
                 f"--bench=val split={_bench(tmp_path / 'bench-val', b'val picture')}",
                 f"--bench=Test={_bench(tmp_path / 'bench-test', b'test picture')}",
                 f"--notes={tmp_path / 'notes.md'}"]) == 0
    card = (shipped / "README.md").read_text()
    assert (shipped / "samples-val-split.png").read_bytes() == b"val picture"
    assert (shipped / "samples-test.png").read_bytes() == b"test picture"
    assert "(samples-val-split.png)" in card and "(samples-test.png)" in card
    assert card.index("### val split") < card.index("samples-val-split.png") < card.index("### Test")
    assert not (shipped / "samples.png").exists()
    assert "## What it can and cannot do (the author's notes)\n\nIt writes boxes." in card


def test_the_views_card_copies_the_best_checkpoint_and_its_history(tmp_path):
    data = tmp_path / "shapes"
    data.mkdir()
    (data / "index.jsonl").write_text(json.dumps({"split": "train", "asset": {"licence": "CC0"}}) + "\n")
    train = {"data": str(data), "batch_size": 2, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 5, "sdf_points": 512,
             "colour_points": 128, "normal_dropout": 0.3, "seed": 0}
    run = _run(tmp_path, "views", {"image_size": 32}, train)
    bench = tmp_path / "views.json"
    medians = {"chamfer_l1": 0.02, "fscore_1": 0.5, "fscore_2": 0.7, "normal": 0.8, "seconds": 1.5}
    bench.write_text(json.dumps({"assets": 3, "medians": {"hull": medians, "model": medians}}))
    card = write_card(run, tmp_path / "shipped", {"test": bench}).read_text()
    assert "# Meshsmith views-to-mesh" in card and "shrunk to 32 px" in card
    assert "procedural shapes" in card and "licences: CC0 1" in card
    assert "validation Chamfer-L1 0.0200" in card and "30 steps in 2.0 h" in card
    assert "steps 1-30 this session" in card and "| visual hull of the masks | 0.0200 |" in card
    for name in ("model.safetensors", "config.json", "curves.png"):
        assert (tmp_path / "shipped" / name).is_file(), name
