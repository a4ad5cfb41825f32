"""The Generate modes: which backend pipelines each one runs, with which parameters and inputs; bpy-free.

A mode is a plan of one or more steps. A step names a pipeline, its parameters and the extra
files it uploads beside the mesh (``source``: a textured GLB; ``views``: a zip of posed
images). In a plan of several steps, each step after the first takes the previous step's
result as its mesh (:mod:`.jobs` runs the chain). The settings are read by attribute, so the
scene's property group and any plain object with the same names both work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Where the Texture mode takes its colour from (``settings.texture_source``).
SOURCE_OBJECT, SOURCE_VIEWS = "OBJECT", "VIEWS"
#: ``settings.topology`` -> the artist pipeline's ``mode``.
TOPOLOGIES = {"QUADS": "quads", "QUAD_DOMINANT": "quad_dominant", "TRIANGLES": "triangles"}
#: Watertight's automatic face count (Target Faces 0): this many times the source's polygons,
#: and never fewer than AUTO_MIN_FACES. The raw remesh has 7-38x the faces of a low-poly
#: source (a 1,000-face bottle gave 38,340 at resolution 128), more than anyone wants by default.
AUTO_FACES_PER_SOURCE_FACE = 2
AUTO_MIN_FACES = 10_000
#: Where From Views reads its views (``settings.views_input``): a render/ folder or a grid image.
VIEWS_FOLDER, VIEWS_GRID = "FOLDER", "GRID"
#: ``settings.views_method`` -> the views_to_mesh pipeline's ``method``.
VIEWS_METHODS = {"MODEL": "model", "HULL": "hull"}
#: ``settings.text_model`` -> the text_to_mesh pipeline's ``model``.
TEXT_MODELS = {"MESHSMITH": "meshsmith", "LLAMA_MESH": "llama-mesh"}
#: ``settings.text_repair`` -> the text_to_mesh pipeline's ``repair``.
TEXT_REPAIRS = {"NONE": "none", "WATERTIGHT": "watertight", "ARTIST": "artist"}
#: What the Artist + Texture preset fixes (only faces and texture size are its settings).
PRESET_TOPOLOGY = "quad_dominant"
PRESET_SHARP_ANGLE = 30.0


@dataclass(frozen=True)
class Mode:
    identifier: str
    label: str
    description: str
    #: Appended to the active object's name to name the result.
    suffix: str


MODES: dict[str, Mode] = {
    m.identifier: m
    for m in (
        Mode("WATERTIGHT", "Watertight", "Closed, manifold remesh", "_watertight"),
        Mode("ARTIST", "Artist", "Clean low-poly quad topology at a face budget", "_artist"),
        Mode(
            "TEXTURE",
            "Texture",
            "UVs and a baked colour (and normal) map for the active mesh, from another selected object or posed images",
            "_textured",
        ),
        Mode(
            "ARTIST_TEXTURE",
            "Artist + Texture",
            "Remesh to a face budget, then bake the original's colour and normal map onto the result",
            "_artist_textured",
        ),
        Mode(
            "VIEWS",
            "From Views",
            "A textured, closed mesh reconstructed from posed views (a render/ folder) or a Zero123++ grid image",
            "_from_views",
        ),
        Mode("TEXT", "From Text", "A mesh written face by face by a language model from a prompt (Meshsmith's "
             "small model, or LLaMA-Mesh where you have its weights)", "_from_text"),
        Mode("ARTIST_LEARNED", "Artist (learned)", "Low-poly topology written face by face by Meshsmith's mesh "
             "model from the active object's surface (MeshAnything-style)", "_artist_learned"),
    )
}

#: Modes that make a mesh from nothing in the scene (no active object is sent).
NO_OBJECT_MODES = frozenset({"VIEWS", "TEXT"})

#: The backend pipelines each mode runs (a mode is unavailable when one of them is).
MODE_PIPELINES = {
    "WATERTIGHT": ("watertight",),
    "ARTIST": ("artist",),
    "TEXTURE": ("texture",),
    "ARTIST_TEXTURE": ("artist", "texture"),
    "VIEWS": ("views_to_mesh",),
    "TEXT": ("text_to_mesh",),
    "ARTIST_LEARNED": ("points_to_mesh",),
}


@dataclass(frozen=True)
class Step:
    """One backend job of a plan.

    ``files`` names the upload fields this step sends beside ``mesh`` (``"source"``, ``"views"``).
    ``weight`` is its share of the progress bar.
    """

    pipeline: str
    params: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    weight: float = 1.0
    #: The upload field the object's mesh goes in (``points_to_mesh`` reads ``points``).
    mesh_field: str = "mesh"


def auto_target_faces(source_faces: int | None) -> int | None:
    """Watertight's face count for Target Faces 0: see :data:`AUTO_FACES_PER_SOURCE_FACE`; None without a source count."""
    if not source_faces:
        return None
    return max(AUTO_MIN_FACES, AUTO_FACES_PER_SOURCE_FACE * int(source_faces))


def watertight_params(settings: Any, source_faces: int | None = None) -> dict[str, Any]:
    """The ``watertight`` pipeline's parameters; ``source_faces`` sets the automatic face count."""
    return {
        "resolution": int(settings.resolution),
        "keep": "largest" if settings.largest_only else "all",
        "cavities": "keep" if settings.keep_cavities else "fill",
        "target_faces": int(settings.target_faces) or auto_target_faces(source_faces),
    }


def artist_params(settings: Any) -> dict[str, Any]:
    """The ``artist`` pipeline's parameters; ``settings.sharp_angle`` is in radians (Blender's unit)."""
    topology = str(settings.topology)
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    return {
        "faces": int(settings.artist_faces),
        "mode": TOPOLOGIES[topology],
        "sharp_edges": bool(settings.keep_sharp),
        "sharp_angle": round(math.degrees(float(settings.sharp_angle)), 4),
    }


def texture_params(settings: Any, *, normal_map: bool | None = None, keep_uvs: bool = False) -> dict[str, Any]:
    """The ``texture`` pipeline's parameters; ``normal_map`` overrides the setting; ``keep_uvs``
    bakes into the UVs sent with the mesh instead of unwrapping anew."""
    params = {
        "texture_size": int(settings.texture_size),
        "padding": int(settings.padding),
        "normal_map": bool(settings.normal_map if normal_map is None else normal_map),
    }
    if keep_uvs:
        params["uv_method"] = "keep"
    return params


def views_params(settings: Any) -> dict[str, Any]:
    """The ``views_to_mesh`` pipeline's parameters."""
    method = str(settings.views_method)
    if method not in VIEWS_METHODS:
        raise ValueError(f"views_method must be one of {', '.join(VIEWS_METHODS)}, got {method!r}")
    return {
        "method": VIEWS_METHODS[method],
        "resolution": int(settings.views_resolution),
        "use_normals": bool(settings.use_normals),
        "texture": True,
        "texture_size": int(settings.texture_size),
    }


def text_params(settings: Any) -> dict[str, Any]:
    """The ``text_to_mesh`` pipeline's parameters."""
    model, repair = str(settings.text_model), str(settings.text_repair)
    if model not in TEXT_MODELS:
        raise ValueError(f"text_model must be one of {', '.join(TEXT_MODELS)}, got {model!r}")
    if repair not in TEXT_REPAIRS:
        raise ValueError(f"text_repair must be one of {', '.join(TEXT_REPAIRS)}, got {repair!r}")
    params = {
        "prompt": str(settings.text_prompt).strip(),
        "model": TEXT_MODELS[model],
        "max_faces": int(settings.learned_faces),
        "temperature": round(float(settings.temperature), 4),
        "seed": int(settings.seed),
        "repair": TEXT_REPAIRS[repair],
    }
    weights = str(settings.text_weights).strip()
    if weights:
        params["weights"] = weights
    return params


def points_params(settings: Any) -> dict[str, Any]:
    """The ``points_to_mesh`` pipeline's parameters (the object's mesh is sampled into points there)."""
    return {
        "max_faces": int(settings.learned_faces),
        "temperature": round(float(settings.temperature), 4),
        "seed": int(settings.seed),
        "compare_artist": False,
    }


def plan(mode: str, settings: Any, *, source_faces: int | None = None, has_uvs: bool = False) -> list[Step]:
    """The steps ``mode`` runs with these settings (``source_faces``: the object's polygon count;
    ``has_uvs``: its mesh is sent with its UV map, which Texture then keeps)."""
    if mode == "WATERTIGHT":
        return [Step("watertight", watertight_params(settings, source_faces))]
    if mode == "ARTIST":
        return [Step("artist", artist_params(settings))]
    if mode == "TEXTURE":
        source = str(settings.texture_source)
        if source not in (SOURCE_OBJECT, SOURCE_VIEWS):
            raise ValueError(f"texture_source must be {SOURCE_OBJECT!r} or {SOURCE_VIEWS!r}, got {source!r}")
        params = texture_params(settings, keep_uvs=has_uvs and bool(settings.keep_uvs))
        return [Step("texture", params, files=("source",) if source == SOURCE_OBJECT else ("views",))]
    if mode == "ARTIST_TEXTURE":
        artist = {
            "faces": int(settings.artist_faces),
            "mode": PRESET_TOPOLOGY,
            "sharp_edges": True,
            "sharp_angle": PRESET_SHARP_ANGLE,
        }
        return [
            Step("artist", artist, weight=1.0),
            Step("texture", texture_params(settings, normal_map=True), files=("source",), weight=1.0),
        ]
    if mode == "VIEWS":
        field_name = "grid" if str(settings.views_input) == VIEWS_GRID else "views"
        return [Step("views_to_mesh", views_params(settings), files=(field_name,))]
    if mode == "TEXT":
        return [Step("text_to_mesh", text_params(settings))]
    if mode == "ARTIST_LEARNED":
        return [Step("points_to_mesh", points_params(settings), mesh_field="points")]
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
