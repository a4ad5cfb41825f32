"""training/mesh_lm.py: a tiny mesh transformer learns, its cache changes nothing, its samples are meshes."""

from __future__ import annotations

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
