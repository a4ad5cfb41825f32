"""training/mesh_lm.py: a tiny mesh transformer learns, its cache changes nothing, its samples are meshes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests import meshes
from training.mesh_lm import MeshLM, MeshLMConfig, caption_bytes, generate, lm_loss
from training.tokenizer import encode, quantize, same_mesh

TINY = MeshLMConfig(bits=5, max_split=8, width=64, layers=2, heads=4, max_tokens=512, point_latents=8,
                    point_layers=1, text_layers=1)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = MeshLM(TINY)
    q = quantize(*meshes.uv_sphere(5, 8), bits=TINY.bits)
    tokens = torch.tensor([[TINY.vocab.BOS] + encode(q, TINY.vocab)])
    points = torch.rand(1, 128, 6) * 2 - 1
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    losses = []
    for _ in range(150):
        loss = lm_loss(model, model.condition(points=points), tokens, torch.tensor([tokens.shape[1]]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, q, points, losses


def test_a_tiny_model_learns_a_mesh_and_greedy_sampling_gives_it_back(trained):
    model, q, points, losses = trained
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    sample = generate(model, model.condition(points=points), temperature=0.0, max_faces=500)
    assert sample.finished
    assert same_mesh(q.vertices, q.faces, sample.vertices, sample.faces)


def test_the_key_value_cache_gives_the_same_tokens_as_recomputing(trained):
    model, _, points, _ = trained
    cond = model.condition(points=points + 0.3)            # off the learned input: less trivial logits
    cached = generate(model, cond, temperature=0.0, max_faces=40, use_cache=True)
    full = generate(model, cond, temperature=0.0, max_faces=40, use_cache=False)
    assert cached.tokens == full.tokens


def test_untrained_sampling_is_masked_to_meshes_and_stops_at_the_face_budget_or_a_cancel():
    torch.manual_seed(1)
    model = MeshLM(TINY)
    cond = model.condition(caption=caption_bytes(["a small round table"]))
    sample = generate(model, cond, temperature=1.0, top_p=0.9, max_faces=25, seed=3)
    assert 0 < len(sample.faces) <= 25
    for face in sample.faces:
        assert len({tuple(sample.vertices[i]) for i in face}) == len(face)
    calls = []
    stopped = generate(model, cond, max_faces=1000, should_stop=lambda: len(calls) > 3,
                       on_progress=lambda dec: calls.append(dec.face_count()))
    assert len(stopped.faces) == 4 and not stopped.finished


def test_packs_and_their_dataset_turn_mesh_and_points_together(tmp_path):
    from backend.mesh.io import save_mesh
    from backend.mesh.types import Mesh
    from training.data import from_folder, make_meshlm
    from training.mesh_corpus import MeshLMDataset, collate_meshlm
    from training.tokenizer import Vocabulary, decode

    src = tmp_path / "meshes"
    src.mkdir()
    v, f = meshes.box(lo=(-0.6, -0.3, -0.2), hi=(0.6, 0.3, 0.2))             # long in x, short in z
    save_mesh(Mesh(v, f), src / "box.ply")
    v, f = meshes.uv_sphere(24, 48)                                         # 2,208 faces: reduced
    save_mesh(Mesh(v, f), src / "ball.ply")
    from_folder(src, tmp_path / "corpus", licence="CC0")
    result = make_meshlm(tmp_path / "corpus", tmp_path / "lm", max_faces=300)
    assert result["packed"] == 2 and result["kept_topology"] == 1           # the box as it is; the ball reduced
    names = [json.loads(line)["name"] for line in (tmp_path / "lm" / "index.jsonl").read_text().splitlines()]
    data = MeshLMDataset([(tmp_path / "lm", next(n for n in names if "box" in n))], max_tokens=256)
    spans = set()
    for epoch in range(8):
        data.set_epoch(epoch)
        example = data[0]
        vertices, faces = decode(example["tokens"][1:example["length"]].numpy(), Vocabulary(7))
        assert len(faces) == 12
        extent = vertices.max(0) - vertices.min(0)
        points = example["points"][:, :3].numpy()
        # The points' long horizontal axis is the mesh's, turn after turn.
        assert np.argmax(extent[:2]) == np.argmax(points.max(0)[:2] - points.min(0)[:2])
        spans.add(int(np.argmax(extent[:2])))
    assert spans == {0, 1}                                                  # both orientations were drawn
    batch = collate_meshlm([data[0], data[0]])
    assert batch["tokens"].shape == (2, 256) and batch["caption"].shape[0] == 2


@pytest.fixture(scope="module")
def tiny_meshlm_set(tmp_path_factory):
    from backend.mesh.io import save_mesh
    from backend.mesh.types import Mesh
    from training.data import from_folder, make_meshlm

    root = tmp_path_factory.mktemp("meshlm")
    src = root / "meshes"
    src.mkdir()
    for name, (v, f) in {"box": meshes.box(), "ball": meshes.uv_sphere(5, 8),
                         "ring": meshes.torus(0.8, 0.3, 8, 5)}.items():
        save_mesh(Mesh(v, f), src / f"{name}.ply")
    from_folder(src, root / "corpus", licence="CC0")
    make_meshlm(root / "corpus", root / "lm", max_faces=200)
    index = root / "lm" / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    for row in rows:                                      # two to train on, one to validate
        row["split"] = "val" if "ring" in row["name"] else "train"
    index.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "lm"


def test_the_one_loop_trains_the_mesh_lm_and_its_checkpoint_rebuilds_it(tiny_meshlm_set, tmp_path):
    import csv

    from training.train import load_model, parse_config, train

    model = {"bits": 7, "max_split": 8, "width": 64, "layers": 2, "heads": 4, "max_tokens": 256,
             "point_latents": 8, "point_layers": 1, "text_layers": 1}
    args = [f"--task=mesh_lm", f"--data={tiny_meshlm_set}", f"--out={tmp_path / 'run'}", "--batch_size=2",
            "--max_steps=30", "--warmup_steps=2", "--lr=3e-3", "--eval_interval=30", "--eval_assets=1",
            "--max_faces=20", "--log_interval=1", "--ckpt_interval=1000", "--progress=false", "--threads=1",
            "--lm_points=256"] + [f"--model.{k}={v}" for k, v in model.items()]
    result = train(parse_config(args))
    assert result["step"] == 30
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    val = [r for r in rows if r["val_loss"]]
    assert val and float(val[-1]["val_manifold"]) in (0.0, 1.0)
    # The validation sheet shows the reference in the picture's frame (grid coordinates drawn as they
    # are all fall on the right edge: a blank sheet).
    import matplotlib.image

    sheet = matplotlib.image.imread(tmp_path / "run" / "val" / "step_30.png")[..., :3].mean(axis=-1)
    reference = sheet[:, sheet.shape[1] // 2:sheet.shape[1] * 3 // 4]
    assert (reference < 0.8).mean() > 0.1              # 0.04 when blank (frame and labels), 0.19 here
    rebuilt, record = load_model(tmp_path / "run" / "ckpt", architecture="MeshLM")
    assert record["task"] == "mesh_lm" and rebuilt.config.width == 64
    with pytest.raises(ValueError, match="not a ViewsToSDF checkpoint"):
        load_model(tmp_path / "run" / "ckpt", architecture="ViewsToSDF")

    # The model card of that run, from a bench of its best checkpoint: every figure from a file.
    from training.bench import main as bench
    from training.card import main as card

    assert bench(["mesh_lm", f"--data={tiny_meshlm_set}", f"--corpus={tiny_meshlm_set.parent / 'corpus'}",
                  "--split=val", f"--weights={tmp_path / 'run' / 'best'}", f"--out={tmp_path / 'bench'}"]) == 0
    (tmp_path / "notes.md").write_text("It writes boxes.")
    assert card([str(tmp_path / "run"), f"--weights={tmp_path / 'shipped'}",
                 f"--bench=val split={tmp_path / 'bench' / 'mesh_lm.json'}",
                 f"--corpus={tiny_meshlm_set.parent / 'corpus'}", f"--notes={tmp_path / 'notes.md'}"]) == 0
    text = (tmp_path / "shipped" / "README.md").read_text()
    summary = json.loads((tmp_path / "bench" / "mesh_lm.json").read_text())["summary"]
    assert "# Meshsmith mesh language model" in text and "licences: CC0 3" in text
    assert f"| decodes to a manifold mesh | {summary['manifold_share']:.0%} |" in text
    assert "It writes boxes." in text and "step 30" in text
    for name in ("model.safetensors", "config.json", "curves.png", "samples-val-split.png"):
        assert (tmp_path / "shipped" / name).is_file(), name
    rebuilt, _ = load_model(tmp_path / "shipped", architecture="MeshLM")


def test_the_mesh_lm_bench_measures_samples_the_artist_reference_and_the_cache(tiny_meshlm_set, tmp_path):
    from tests.llm_models import tiny_mesh_lm
    from training.bench import main

    weights = tiny_mesh_lm(tmp_path / "weights")
    out = tmp_path / "bench"
    assert main(["mesh_lm", f"--data={tiny_meshlm_set}", f"--corpus={tiny_meshlm_set.parent / 'corpus'}",
                 "--split=val", f"--weights={weights}", f"--out={out}", "--temperature=1.0"]) == 0
    report = json.loads((out / "mesh_lm.json").read_text())
    (row,) = report["rows"]
    summary = report["summary"]
    assert row["faces"] >= 1 and summary["assets"] == 1 and summary["same_tokens"]
    assert row["reference_chamfer_l1"] < 0.05           # the packed mesh lies on its own points
    assert row["artist_chamfer_l1"] < 0.1 and row["artist_faces"] >= 100    # in the pack frame; 100: its minimum
    assert row["chamfer_l1"] > row["artist_chamfer_l1"]  # a random model is no artist
    assert summary["cached_tokens_per_s"] > 0 and summary["full_tokens_per_s"] > 0
    assert (out / "mesh_lm.png").stat().st_size > 1000
    assert main(["mesh_lm", f"--data={tiny_meshlm_set}", "--split=test", f"--weights={weights}",
                 f"--out={out}"]) == 2                    # no packs in that split: a message, not a traceback


def test_the_tokens_bench_reads_packs_as_trained_on(tiny_meshlm_set, tmp_path, capsys):
    from training.bench import main

    assert main(["tokens", f"--packs={tiny_meshlm_set}", f"--out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "tokens-packs-all.json").read_text())
    summary = report["summary"]
    assert summary["meshes"] == 3 and summary["naive"]["per_face"] >= 9.0
    assert summary["ours"]["per_face"] < summary["amt"]["per_face"] < summary["naive"]["per_face"]
    assert "ours" in capsys.readouterr().out
