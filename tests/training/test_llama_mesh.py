"""LLaMA-Mesh's OBJ text: the forgiving streaming parser, the grammar that holds sampling to it,
and both runners on tiny models made here (transformers; GGUF through llama.cpp)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests import meshes
from tests.llm_models import tiny_gguf, tiny_transformers
from training.llama_mesh import (LEVELS, ModelNotFound, ObjGrammar, ObjStream, TokenMask, find_model, load_runner,
                                 obj_text, prompt_for)


def _parse(text: str, chunk: int | None = None) -> ObjStream:
    stream = ObjStream()
    step = chunk or max(len(text), 1)
    for i in range(0, len(text), step):
        stream.feed(text[i:i + step])
    stream.close()
    return stream


def test_a_mesh_round_trips_through_obj_text_at_64_levels():
    vertices, faces = meshes.uv_sphere(8, 12, radius=0.5)
    text = obj_text(vertices, faces)
    stream = _parse(text)
    assert stream.problems == {}
    v, f, sizes = stream.mesh()
    assert len(f) == len(faces) and np.all(sizes == 3)
    # the box's longest side spans [-1, 1]; every corner within half a level of the scaled input
    scaled = (vertices - (vertices.min(0) + vertices.max(0)) / 2) / np.ptp(vertices, axis=0).max() * 2
    half_level = 1.0 / (LEVELS - 1) + 1e-9
    assert np.abs(np.sort(v, axis=0) - np.sort(scaled, axis=0)).max() <= half_level
    assert stream.mesh()[0].min() >= -1 and stream.mesh()[0].max() <= 1


def test_the_parser_skips_and_counts_what_is_not_a_mesh():
    text = ("Here is your chair:\n```obj\n# a comment\nv 0 0 0\nv 63 0 0\nv 0 63 0\nv 0 0 63\n"
            "f 1 2 3\nf 1/1/1 3/3/3 4/4/4\nf 1 2 3\nf 2 2 3\nf 1 2 99\nv 1 2\nf -1 -2 -3\nf 1 x 2\nvn 0 0 1\n```\n"
            "Enjoy!")
    stream = _parse(text)
    assert stream.face_count == 3
    assert stream.faces == [(0, 1, 2), (0, 2, 3), (3, 2, 1)]
    assert stream.problems == {"other text": 2, "duplicate face": 1, "repeated vertex in a face": 1,
                               "index out of range": 1, "unreadable vertex line": 1, "unreadable face line": 1}


def test_streaming_in_any_chunks_parses_the_same_and_faces_may_come_before_their_vertices():
    vertices, faces = meshes.cube()
    text = obj_text(vertices, faces)
    lines = text.splitlines()
    early = "\n".join([lines[0], "f 1 2 9"] + lines[1:]) + "\n"      # vertex 9 does not exist yet ...
    whole = _parse(early)
    assert whole.problems == {"index out of range": 1}               # ... nor ever: counted, not guessed
    for chunk in (1, 3, 7, 64):
        assert _parse(early, chunk).faces == whole.faces
    later = "\n".join([lines[0], "f 1 2 3"] + lines[1:]) + "\n"      # vertex 3 comes two lines later
    assert (0, 1, 2) in _parse(later).faces and _parse(later).problems.get("index out of range") is None


def test_the_grammar_accepts_obj_text_and_refuses_what_cannot_be_a_mesh():
    grammar = ObjGrammar()
    vertices, faces = meshes.torus(1.0, 0.4, 12, 8)
    state = grammar.walk(ObjGrammar.START, obj_text(vertices, faces))
    assert state is not None and grammar.may_end(state)
    three = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
    assert grammar.walk(ObjGrammar.START, "f 1 2 3\n") is None            # no vertices yet
    assert grammar.walk(ObjGrammar.START, "v 64 0 0\n") is None           # beyond the 64 levels
    assert grammar.walk(ObjGrammar.START, "v 01 0 0\n") is None           # leading zero
    assert grammar.walk(ObjGrammar.START, three + "f 1 2 4\n") is None    # vertex 4 not written
    assert grammar.walk(ObjGrammar.START, three + "f 1 1 2\n") is None    # a vertex twice
    assert grammar.walk(ObjGrammar.START, three + "f 0 1 2\n") is None    # OBJ counts from 1
    assert not grammar.may_end(grammar.walk(ObjGrammar.START, three))     # no face yet: may not end
    # a prefix with no way to finish is refused at once: 3 vertices, 1 and 2 used, "1" cannot grow
    assert grammar.walk(ObjGrammar.START, three + "f 1 2 1") is None


def test_a_masked_random_model_writes_only_valid_lines(tmp_path):
    runner = load_runner(find_model(str(tiny_transformers(tmp_path / "tiny"))))
    for seed in range(4):
        stream = ObjStream()
        generation = runner.generate("a table", max_tokens=300, temperature=1.0, top_p=1.0, seed=seed,
                                     constrained=True, on_text=lambda t: bool(stream.feed(t)) and False)
        stream.close()
        assert set(stream.problems) <= {"duplicate face"}, generation.text
        if generation.stopped == "end":
            assert stream.face_count >= 1
        assert ObjGrammar().walk(ObjGrammar.START, generation.text) is not None


def test_token_masks_walk_multi_character_pieces():
    pieces = ["v ", "v", " ", "1", "12", "3\nf", "\n", "f 1 2 3\n", None, "0"]
    mask = TokenMask(pieces, end_tokens=[8])
    start = mask.allowed(ObjGrammar.START)
    assert list(start) == [0, 1]                                   # only the pieces that open a line
    state = ObjGrammar().walk(ObjGrammar.START, "v 1 2 ")
    assert 5 not in mask.allowed(state)                            # "3\nf" would need 3 vertices
    three = ObjGrammar().walk(ObjGrammar.START, "v 1 2 3\nv 0 0 0\nv 1 1 1\n")
    assert 7 in mask.allowed(three) and 8 not in mask.allowed(three)
    assert 8 in mask.allowed(mask.advance(three, 7))               # the end, once there is a face


def test_prompts_and_missing_models_have_clear_messages(tmp_path):
    assert prompt_for("  a   chair ") == "Create a 3D model of a chair."
    assert prompt_for("Create a low poly 3D model of a cup") == "Create a low poly 3D model of a cup"
    with pytest.raises(ValueError, match="empty"):
        prompt_for("   ")
    with pytest.raises(ModelNotFound, match="huggingface-cli download"):
        find_model("")
    with pytest.raises(ModelNotFound, match="not a .gguf"):
        (tmp_path / "x.bin").write_bytes(b"0")
        find_model(str(tmp_path / "x.bin"))
    with pytest.raises(ModelNotFound, match="neither"):
        find_model(str(tmp_path))
    with pytest.raises(ModelNotFound, match="not in this machine's Hugging Face cache"):
        find_model("nobody-here/no-such-model-gguf")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_a_tiny_gguf_model_writes_valid_obj_through_llama_cpp(tmp_path):
    path = tiny_gguf(tmp_path / "tiny.gguf")
    spec = find_model(str(path))
    assert spec.kind == "gguf"
    runner = load_runner(spec)
    faces = []
    for seed in range(3):
        stream = ObjStream()
        generation = runner.generate("a lamp", max_tokens=200, temperature=1.0, top_p=1.0, seed=seed,
                                     constrained=True, on_text=lambda t: stream.feed(t) >= 0 and stream.face_count >= 5)
        stream.close()
        assert set(stream.problems) <= {"duplicate face"}, generation.text
        assert ObjGrammar().walk(ObjGrammar.START, generation.text) is not None
        faces.append(stream.face_count)
    assert max(faces) >= 1
