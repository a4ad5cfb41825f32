"""training/tokenizer.py: lossless round trips, the grammar on every prefix, refusals, and compactness."""

from __future__ import annotations

import numpy as np
import pytest

from tests import meshes
from training.tokenizer import (DecodeError, Decoder, QuantizedMesh, Vocabulary, amt_tokens, decode, encode,
                                naive_tokens, quantize, same_mesh)


def _random_soup(seed: int, vertices: int = 40, faces: int = 120):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 24, (vertices, 3)).astype(float)
    f = [tuple(rng.choice(vertices, 3, replace=False)) for _ in range(faces)]
    return v, f


def _mixed_quads():
    v, q = meshes.quad_cube(2)
    half = len(q) // 2
    return v, [tuple(f) for f in q[:half]] + [t for a, b, c, d in q[half:] for t in ((a, b, c), (a, c, d))]


CASES = {
    "sphere": lambda: meshes.uv_sphere(12, 24),
    "torus (genus 1)": lambda: meshes.torus(1.0, 0.3, 24, 12),
    "open plane": lambda: meshes.plane(6),
    "open box": meshes.open_box,
    "sphere with holes": meshes.sphere_with_holes,
    "flipped faces": lambda: meshes.flipped_faces(*meshes.uv_sphere(8, 16)),
    "duplicate faces": lambda: meshes.with_duplicate_faces(*meshes.uv_sphere(8, 16)),
    "broken": meshes.broken_mesh,
    "two pieces": meshes.two_intersecting_boxes,
    "all quads": lambda: meshes.quad_cube(3),
    "quads and triangles": _mixed_quads,
    "triangle soup": lambda: _random_soup(0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decode_gives_back_the_quantized_mesh_with_orientation_and_quads(name):
    v, f = CASES[name]()
    q = quantize(v, f)
    tokens = encode(q)
    dv, df = decode(tokens)
    assert same_mesh(q.vertices, q.faces, dv, df)
    assert sorted(len(x) for x in df) == sorted(len(x) for x in q.faces)      # quads stay quads


def test_flipping_one_face_changes_the_tokens_and_comes_back_flipped():
    v, f = meshes.uv_sphere(8, 16)
    q = quantize(v, f)
    flipped = [tuple(x) for x in q.faces]
    flipped[5] = flipped[5][::-1]
    q2 = QuantizedMesh(q.vertices, flipped, q.bits)
    dv, df = decode(encode(q2))
    assert same_mesh(q2.vertices, q2.faces, dv, df)
    assert not same_mesh(q.vertices, q.faces, dv, df)


@pytest.mark.parametrize("name", ["torus (genus 1)", "broken", "quads and triangles", "triangle soup"])
def test_every_token_of_an_encoding_is_one_the_grammar_allows(name):
    v, f = CASES[name]()
    q = quantize(v, f)
    dec = Decoder(Vocabulary(q.bits))
    for token in encode(q):
        assert dec.allowed()[token], dec.vocab.name(token)
        dec.push(token)
    assert dec.finished


def test_masked_random_sampling_always_decodes_to_a_mesh_without_degenerate_faces():
    voc = Vocabulary(5, max_split=8)
    rng = np.random.default_rng(1)
    for trial in range(20):
        dec = Decoder(voc)
        for _ in range(400):
            allowed = np.flatnonzero(dec.allowed())
            if not len(allowed):
                break
            # Favour loop ops a little so that pieces grow and close, as a trained model would.
            ops = allowed[allowed < voc.block]
            token = rng.choice(ops) if len(ops) and rng.random() < 0.6 else rng.choice(allowed)
            dec.push(int(token))
            if dec.finished:
                break
        vertices, faces = dec.mesh()
        assert len(faces) == dec.face_count()
        for face in faces:
            assert len(set(face)) == len(face)                    # never a repeated vertex
            assert len({tuple(vertices[i]) for i in face}) == len(face)


def test_tokens_the_grammar_refuses_raise_or_end_a_lenient_decode():
    q = quantize(*meshes.uv_sphere(6, 12))
    tokens = encode(q)
    voc = Vocabulary(q.bits)
    with pytest.raises(DecodeError, match="where a piece starts"):
        decode([voc.L] + tokens)
    bad = tokens[:20] + [voc.START] + tokens[20:]             # a new piece while a loop is open
    with pytest.raises(DecodeError):
        decode(bad)
    vertices, faces = decode(bad, strict=False)                # the faces before the bad token
    assert 0 < len(faces) < len(q.faces)


def test_degenerate_and_malformed_inputs_are_refused_with_a_message():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="degenerate face"):
        encode(QuantizedMesh(v, [(0, 1, 2), (0, 0, 3)]))
    with pytest.raises(ValueError, match="neither triangles nor quads"):
        encode(QuantizedMesh(v, [(0, 1, 2, 3, 0)]))
    with pytest.raises(ValueError, match="share coordinates"):
        encode(QuantizedMesh(np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]]), [(0, 1, 2)]))
    with pytest.raises(ValueError, match="quantize the mesh first"):
        encode(QuantizedMesh(v * 500, [(0, 1, 2)]))
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([[0, 0, np.nan], [1, 0, 0], [0, 1, 0]]), [(0, 1, 2)])
    # quantize() itself drops what collapses, and says how many.
    q = quantize(np.array([[0, 0, 0], [1e-6, 0, 0], [1, 0, 0], [0, 1, 0]]), [(0, 1, 3), (0, 2, 3)])
    assert q.dropped_faces == 1 and len(q.faces) == 1


def test_the_vocabulary_round_trips_every_coordinate():
    voc = Vocabulary(7)
    assert len(voc) == 10 + 2 * 32 + 512 + 4096
    rng = np.random.default_rng(0)
    for xyz in rng.integers(0, 128, (500, 3)):
        assert voc.coordinates(*voc.coordinate_tokens(xyz)) == tuple(int(c) for c in xyz)


def test_closed_meshes_take_about_one_and_a_half_tokens_a_face_against_nine_and_amt():
    q = quantize(*meshes.uv_sphere(16, 32))
    ours = len(encode(q)) / len(q.faces)
    assert ours < 1.6
    assert naive_tokens(q) / len(q.faces) == pytest.approx(9.0, abs=0.01)
    assert 4.0 < amt_tokens(q) / len(q.faces) < 9.0
