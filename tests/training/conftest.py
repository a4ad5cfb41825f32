"""A tiny real training set, made at test time: three meshes rendered by render.dataset (real
Blender, 64 px), preprocessed by the backend and packed at 32 px."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.mesh.io import save_mesh
from backend.mesh.types import Mesh
from tests import meshes

TINY_MODEL = {"image_size": 32, "encoder_channels": [8, 8], "grid": 8, "unet_channels": [8, 8, 16],
              "transformer_layers": 1, "transformer_heads": 2, "decoder_width": 32, "decoder_layers": 2,
              "fourier_frequencies": 4}
SMALL_PREPROCESS = {"resolution": 64, "n_surface": 0, "n_sdf_uniform": 2000, "n_sdf_near": 4000,
                    "sigmas": (0.005, 0.03), "n_salient": 0}


@pytest.fixture(scope="session")
def tiny_training_set(tmp_path_factory) -> Path:
    from render.dataset import run
    from render.views import RenderConfig
    from training.data import from_folder, make_samples

    root = tmp_path_factory.mktemp("tiny-set")
    src = root / "meshes"
    src.mkdir()
    for name, (v, f) in {"box": meshes.box(lo=(-0.6, -0.3, -0.4), hi=(0.6, 0.3, 0.4)),
                         "torus": meshes.torus(0.8, 0.3, 24, 12),
                         "ball": meshes.uv_sphere(12, 24, radius=0.7)}.items():
        save_mesh(Mesh(v, f), src / f"{name}.obj")
    from_folder(src, root / "corpus", licence="CC0", credit="tests")
    summary = run(src, root / "views", RenderConfig(width=64, height=64, samples=1, threads=1), workers=1,
                  show_progress=False)
    assert summary["failed"] == 0, summary["records"]
    result = make_samples(root / "corpus", root / "views", root / "train", image_size=32,
                          preprocess=SMALL_PREPROCESS)
    assert result["packed"] == 3, result
    index = root / "train" / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    for row in rows:                                      # two to train on, one to validate
        row["split"] = "val" if row["name"] == "ball" else "train"
    index.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train"
