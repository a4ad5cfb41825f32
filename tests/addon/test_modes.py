"""addon/modes.py: what each Generate mode sends to the backend (bpy-free)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from addon import modes


def settings(**changes) -> SimpleNamespace:
    """The panel's defaults (addon/props.py), as plain attributes."""
    values = dict(
        resolution=128, largest_only=False, keep_cavities=False, target_faces=0,
        artist_faces=2000, topology="QUAD_DOMINANT", keep_sharp=True, sharp_angle=math.radians(30.0),
        texture_source="OBJECT", texture_size="1024", padding=4, normal_map=True, keep_uvs=True,
        views_input="FOLDER", views_method="MODEL", views_resolution=128, use_normals=True,
        text_prompt="a chair", text_model="MESHSMITH", text_weights="", text_repair="NONE", learned_faces=500,
        temperature=0.7, seed=0,
    )  # fmt: skip
    values.update(changes)
    return SimpleNamespace(**values)


def test_watertight_is_one_step_with_its_old_parameters():
    (step,) = modes.plan("WATERTIGHT", settings(largest_only=True, target_faces=600))
    assert step == modes.Step("watertight", {"resolution": 128, "keep": "largest", "cavities": "fill", "target_faces": 600})


def test_watertight_target_faces_zero_is_automatic_from_the_sources_faces():
    # Regression (field test, issue 14): 0 kept every face of the remesh: 7-38x the source's.
    assert modes.plan("WATERTIGHT", settings(), source_faces=1_000)[0].params["target_faces"] == modes.AUTO_MIN_FACES
    assert modes.plan("WATERTIGHT", settings(), source_faces=60_000)[0].params["target_faces"] == 120_000
    assert modes.plan("WATERTIGHT", settings(target_faces=600), source_faces=60_000)[0].params["target_faces"] == 600
    assert modes.plan("WATERTIGHT", settings())[0].params["target_faces"] is None      # no count: the remesh as it is


@pytest.mark.parametrize(("topology", "sent"), [("QUADS", "quads"), ("QUAD_DOMINANT", "quad_dominant"), ("TRIANGLES", "triangles")])
def test_artist_sends_faces_topology_and_sharp_edges_in_degrees(topology, sent):
    (step,) = modes.plan("ARTIST", settings(artist_faces=5000, topology=topology, keep_sharp=False, sharp_angle=math.radians(45.0)))
    assert step.pipeline == "artist" and step.files == ()
    assert step.params == {"faces": 5000, "mode": sent, "sharp_edges": False, "sharp_angle": 45.0}


def test_texture_uploads_a_source_object_or_a_views_zip():
    (step,) = modes.plan("TEXTURE", settings(texture_size="2048", padding=8, normal_map=False))
    assert (step.pipeline, step.files) == ("texture", ("source",))
    assert step.params == {"texture_size": 2048, "padding": 8, "normal_map": False}
    (step,) = modes.plan("TEXTURE", settings(texture_source="VIEWS"))
    assert step.files == ("views",)


def test_texture_keeps_the_uvs_sent_with_the_mesh_unless_told_not_to():
    assert modes.plan("TEXTURE", settings(), has_uvs=True)[0].params["uv_method"] == "keep"
    assert "uv_method" not in modes.plan("TEXTURE", settings(), has_uvs=False)[0].params
    assert "uv_method" not in modes.plan("TEXTURE", settings(keep_uvs=False), has_uvs=True)[0].params
    # The preset's artist mesh has no UVs of its own to keep.
    assert "uv_method" not in modes.plan("ARTIST_TEXTURE", settings(), has_uvs=True)[1].params


def test_the_preset_chains_artist_then_texture_with_a_normal_map():
    artist, texture = modes.plan("ARTIST_TEXTURE", settings(artist_faces=1500, texture_size="512", normal_map=False, topology="TRIANGLES"))
    assert artist == modes.Step("artist", {"faces": 1500, "mode": "quad_dominant", "sharp_edges": True, "sharp_angle": 30.0})
    assert texture.pipeline == "texture" and texture.files == ("source",)
    assert texture.params == {"texture_size": 512, "padding": 4, "normal_map": True}


def test_from_views_uploads_a_views_zip_or_a_grid_image_and_no_mesh():
    (step,) = modes.plan("VIEWS", settings(views_method="HULL", views_resolution=96, texture_size="512"))
    assert step == modes.Step("views_to_mesh", {"method": "hull", "resolution": 96, "use_normals": True,
                                                "texture": True, "texture_size": 512}, files=("views",))
    (step,) = modes.plan("VIEWS", settings(views_input="GRID"))
    assert step.files == ("grid",) and step.params["method"] == "model"
    assert "VIEWS" in modes.NO_OBJECT_MODES
    with pytest.raises(ValueError, match="views_method"):
        modes.plan("VIEWS", settings(views_method="GUESS"))


def test_every_mode_has_a_plan_and_a_distinct_suffix():
    for identifier in modes.MODES:
        assert modes.plan(identifier, settings())
    assert len({m.suffix for m in modes.MODES.values()}) == len(modes.MODES)


@pytest.mark.parametrize(
    ("mode", "changes", "match"),
    [("SCULPT", {}, "mode must be one of"), ("ARTIST", {"topology": "NGONS"}, "topology"), ("TEXTURE", {"texture_source": "WEB"}, "texture_source")],
)
def test_unknown_values_are_value_errors(mode, changes, match):
    with pytest.raises(ValueError, match=match):
        modes.plan(mode, settings(**changes))


def test_from_text_and_artist_learned_send_their_parameters():
    (step,) = modes.plan("TEXT", settings(text_prompt="  a lamp ", text_model="LLAMA_MESH", text_weights="/m/x.gguf",
                                          text_repair="WATERTIGHT", learned_faces=300, seed=4))
    assert step == modes.Step("text_to_mesh", {"prompt": "a lamp", "model": "llama-mesh", "max_faces": 300,
                                               "temperature": 0.7, "seed": 4, "repair": "watertight",
                                               "weights": "/m/x.gguf"})
    assert "weights" not in modes.plan("TEXT", settings())[0].params
    (step,) = modes.plan("ARTIST_LEARNED", settings(learned_faces=800))
    assert step.pipeline == "points_to_mesh" and step.mesh_field == "points" and step.params["max_faces"] == 800
    assert "TEXT" in modes.NO_OBJECT_MODES and "ARTIST_LEARNED" not in modes.NO_OBJECT_MODES
    with pytest.raises(ValueError, match="text_model"):
        modes.plan("TEXT", settings(text_model="GPT"))
