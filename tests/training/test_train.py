"""training/: packs, the Dataset's augmentations, the model and the one training loop, on a tiny real set."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.conftest import TINY_MODEL
from training.dataset import Augment, ViewsDataset, collate
from training.model import ModelConfig, ViewsToSDF, depth_cues, hull_value, project

ROOT = Path(__file__).resolve().parents[2]


def _args(data: Path, out: Path, **extra) -> list[str]:
    settings = {"data": data, "out": out, "image_size": 32, "batch_size": 2, "sdf_points": 256,
                "colour_points": 64, "warmup_steps": 2, "max_steps": 40, "eval_interval": 1000, "log_interval": 1,
                "ckpt_interval": 1000, "progress": "false", "threads": 1, "lr": 3e-3, **extra}
    args = [f"--{k}={v}" for k, v in settings.items()]
    return args + [f"--model.{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in TINY_MODEL.items()]


def _train(data: Path, out: Path, **extra) -> dict:
    from training.train import parse_config, train

    return train(parse_config(_args(data, out, **extra)))


def _losses(out: Path) -> list[float]:
    with open(out / "metrics.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def test_augmented_examples_keep_views_and_supervision_together(tiny_training_set):
    names = [json.loads(line)["name"] for line in (tiny_training_set / "index.jsonl").read_text().splitlines()]
    data = ViewsDataset(tiny_training_set / "packs-32", names, sdf_points=2048, colour_points=512)
    for epoch in range(4):                        # four draws of rotation, scale, view order, dropout
        data.set_epoch(epoch)
        for i in range(len(data)):
            b = collate([data[i]])
            masks = b["images"][:, :, 6:7]
            coords, valid, _ = project(b["points"], b["world_to_camera"], b["intrinsics"], 32, 32)
            hull = hull_value(masks, coords, valid)[0]
            sdf = b["sdf"][0]
            # Points well inside the object project into every view's mask; points far outside do not.
            assert hull[sdf < -0.05].mean() > 0.9
            assert hull[sdf > 0.15].mean() < 0.2
            coords, valid, _ = project(b["colour_points"], b["world_to_camera"], b["intrinsics"], 32, 32)
            # Surface points sit inside or on the edge of every silhouette (about 0.5 there at 32 px).
            assert hull_value(masks, coords, valid)[0].mean() > 0.45


def test_depth_cues_put_the_inside_behind_and_the_surface_on_the_views_surfaces(tiny_training_set):
    names = ["box", "torus"]
    data = ViewsDataset(tiny_training_set / "packs-32", names, sdf_points=2048, colour_points=512,
                        augment=Augment(normal_dropout=0.0))
    for epoch in range(3):                                  # the depth maps follow rotation and scale
        data.set_epoch(epoch)
        for i in range(len(data)):
            b = collate([data[i]])
            depth = b["images"][:, :, 8:10]
            solid = b["images"][:, :, 6] > 0.99
            assert depth[:, :, 1][solid].mean() > 0.5          # known over most of each mask
            coords, valid, z = project(b["points"], b["world_to_camera"], b["intrinsics"], 32, 32)
            mean, low, high, share = depth_cues(depth, coords, valid, z, 0.05)[0]
            hull = hull_value(b["images"][:, :, 6:7], coords, valid)[0]
            inside = (b["sdf"][0] < -0.05) & (share > 0)
            outside = b["sdf"][0] > 0.1
            # Deep inside: behind every view's surface. Far outside: off a silhouette or in front of a
            # view's surface (on these convex-ish shapes; a concavity no view looks into is neither).
            assert (low[inside] > -0.5).float().mean() > 0.9
            assert ((hull < 0.5) | (low < -0.5))[outside].float().mean() > 0.9
            coords, valid, z = project(b["colour_points"], b["world_to_camera"], b["intrinsics"], 32, 32)
            # On the surface: on the surface of a view that sees it, within about two pixels (a pixel
            # of these 32 px views spans ~0.045 of the box; the hull that anchors the depths is coarse).
            mean, low, high, share = depth_cues(depth, coords, valid, z, 0.1)[0]
            assert low[share > 0].abs().median() < np.tanh(1.0)
    # Without normal maps there is no depth, and the cues are all zero.
    dropped = ViewsDataset(tiny_training_set / "packs-32", names, augment=Augment(normal_dropout=1.0))[0]
    assert dropped["images"][:, 8:10].abs().max() == 0


def test_normal_dropout_blanks_normals_and_says_so(tiny_training_set):
    data = ViewsDataset(tiny_training_set / "packs-32", ["box"], augment=Augment(normal_dropout=1.0))
    images = data[0]["images"]
    assert images[:, 3:6].abs().max() == 0 and images[:, 7].max() == 0
    data = ViewsDataset(tiny_training_set / "packs-32", ["box"], augment=Augment.none())
    images = data[0]["images"]
    assert images[:, 3:6].abs().max() > 0.5 and images[:, 7].min() == 1


def test_a_tiny_config_learns(tiny_training_set, tmp_path):
    result = _train(tiny_training_set, tmp_path / "run", max_steps=40)
    losses = _losses(tmp_path / "run")
    assert result["step"] == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_resuming_gives_the_same_losses_as_an_uninterrupted_run(tiny_training_set, tmp_path):
    _train(tiny_training_set, tmp_path / "whole", max_steps=8)
    first = _train(tiny_training_set, tmp_path / "parts", max_steps=8, steps_this_run=3)
    assert first["stopped"] == "steps" and first["step"] == 3
    second = _train(tiny_training_set, tmp_path / "parts", max_steps=8)
    assert second["step"] == 8
    assert _losses(tmp_path / "parts") == _losses(tmp_path / "whole")


def test_a_checkpoint_rebuilds_the_model_from_its_json_alone(tiny_training_set, tmp_path):
    from training.train import load_model

    _train(tiny_training_set, tmp_path / "run", max_steps=3, eval_interval=3, eval_assets=1, eval_resolution=16)
    record = json.loads((tmp_path / "run" / "ckpt" / "config.json").read_text())
    rebuilt, _ = load_model(tmp_path / "run" / "ckpt")
    assert rebuilt.config == ModelConfig.from_dict(record["model"])
    # The same weights give the same field; a fresh model does not.
    data = ViewsDataset(tiny_training_set / "packs-32", ["ball"], augment=Augment.none())
    b = collate([data[0]])
    args = (b["images"], b["world_to_camera"], b["intrinsics"], b["points"])
    again, _ = load_model(tmp_path / "run" / "ckpt")
    torch.manual_seed(1)
    fresh = ViewsToSDF(rebuilt.config).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(*args)[0], again(*args)[0])
        assert not torch.allclose(rebuilt(*args)[0], fresh(*args)[0])
    # Validation wrote its picture and a best checkpoint.
    assert (tmp_path / "run" / "val" / "step_3.png").is_file()
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_torchrun_two_processes_gloo(tiny_training_set, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "training.train",
                           *_args(tiny_training_set, tmp_path / "ddp", max_steps=2)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished 2 steps" in proc.stdout
    assert len(_losses(tmp_path / "ddp")) == 2


def test_several_corpora_train_together(tiny_training_set, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_training_set, other)
    result = _train(f"{tiny_training_set},{other}", tmp_path / "run", max_steps=2, eval_interval=2, eval_assets=2,
                    eval_resolution=16)
    assert result["step"] == 2
    from training.dataset import ViewsDataset
    from training.data import read_index

    items = [(d / "packs-32", r["name"]) for d in (tiny_training_set, other) for r in read_index(d, "train")]
    assert len(ViewsDataset(None, items)) == 4


def test_unknown_settings_are_refused_with_their_name(tmp_path):
    from training.train import parse_config

    with pytest.raises(SystemExit, match="unknown setting 'batch'"):
        parse_config(["--batch=3"])
    with pytest.raises(SystemExit, match="unknown model setting 'gird'"):
        parse_config(["--model.gird=8"])
    with pytest.raises(SystemExit, match="expected int"):
        parse_config(["--max_steps=many"])
