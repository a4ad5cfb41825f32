"""Scene settings of the Meshsmith panel and the status of the scene's latest job."""

from __future__ import annotations

import math

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import modes
from .modes import MODES

_MODE_ITEMS = [(m.identifier, m.label, m.description) for m in MODES.values()]
_TOPOLOGY_ITEMS = [
    ("QUADS", "Quads Only", "Every face a quad"),
    ("QUAD_DOMINANT", "Quad-Dominant", "Mostly quads, with triangles where they follow the shape better"),
    ("TRIANGLES", "Triangles", "Triangles only (quadric decimation)"),
]
_SOURCE_ITEMS = [
    (modes.SOURCE_OBJECT, "Selected Object", "Bake from the other selected object (textured or vertex-coloured) onto the active one"),
    (modes.SOURCE_VIEWS, "Posed Images", "Project the colour images of a render/ views folder (cameras.json) onto the active mesh"),
]
_VIEWS_INPUT_ITEMS = [
    (modes.VIEWS_FOLDER, "Views Folder", "A folder of posed views written by render/ or by Render Views: cameras.json, "
     "colour images and, if present, normal maps"),
    (modes.VIEWS_GRID, "Grid Image", "One image of six views in Zero123++'s 3 x 2 grid (fixed poses; grey or transparent "
     "background)"),
]
_VIEWS_METHOD_ITEMS = [
    ("MODEL", "Learned", "The trained views-to-mesh model: carves what the silhouettes cannot, using the normal maps"),
    ("HULL", "Visual Hull", "No learning: the shape every silhouette allows; hollows no view shows stay filled"),
]
_TEXT_MODEL_ITEMS = [
    ("MESHSMITH", "Meshsmith", "The small mesh transformer shipped with Meshsmith: seconds on a CPU, simple shapes"),
    ("LLAMA_MESH", "LLaMA-Mesh", "LLaMA-Mesh 8B: a GGUF file on the CPU (minutes per mesh) or its full weights on a GPU; "
     "fetch them once and name them below"),
]
_TEXT_REPAIR_ITEMS = [
    ("NONE", "As Written", "The faces exactly as the model wrote them"),
    ("WATERTIGHT", "Watertight", "Closed and manifold, by the watertight remesher"),
    ("ARTIST", "Artist", "Re-laid out as quad-dominant topology at about the same face count"),
]
_TEXTURE_SIZES = [(str(s), f"{s} px", f"Bake {s} x {s} pixel textures") for s in (256, 512, 1024, 2048, 4096)]


class MESHSMITH_PG_settings(bpy.types.PropertyGroup):
    """What to generate (edited in the panel) and how the latest job is doing (shown, not edited)."""

    mode: EnumProperty(name="Mode", description="What to make from the active mesh", items=_MODE_ITEMS, default="WATERTIGHT")
    # -- Watertight
    resolution: IntProperty(
        name="Resolution",
        description="Voxel grid resolution of the remesh: higher keeps finer detail and takes longer",
        default=128,
        min=32,
        max=1024,
    )
    largest_only: BoolProperty(
        name="Largest Part Only",
        description="Keep only the solid part with the largest volume; drop loose pieces",
        default=False,
    )
    keep_cavities: BoolProperty(
        name="Keep Cavities",
        description="Keep enclosed empty space as inner surfaces instead of filling it",
        default=False,
    )
    target_faces: IntProperty(
        name="Target Faces",
        description="Reduce the result to about this many faces, keeping it closed. 0: automatic, twice the "
        "source's faces and at least 10,000 (a large number keeps every face of the remesh)",
        default=0,
        min=0,
        soft_max=200_000,
    )
    # -- Artist (and the Artist + Texture preset)
    artist_faces: IntProperty(
        name="Target Faces",
        description="Face count of the remeshed result (within about 10%)",
        default=2000,
        min=100,
        soft_max=20_000,
        max=100_000,
    )
    topology: EnumProperty(name="Topology", description="Which faces the result may have", items=_TOPOLOGY_ITEMS, default="QUAD_DOMINANT")
    keep_sharp: BoolProperty(
        name="Keep Sharp Edges",
        description="Keep creases and corners sharper than the angle below as edges of the result",
        default=True,
    )
    sharp_angle: FloatProperty(
        name="Sharp Angle",
        description="Edges where the faces meet at more than this angle count as sharp",
        subtype="ANGLE",
        default=math.radians(30.0),
        min=math.radians(1.0),
        max=math.radians(179.0),
    )
    # -- Texture (and the preset)
    texture_source: EnumProperty(
        name="Source", description="Where the colour comes from", items=_SOURCE_ITEMS, default=modes.SOURCE_OBJECT
    )
    views_dir: StringProperty(
        name="Images Folder",
        description="A folder written by render/ (python -m render.views): cameras.json and the colour images it names",
        subtype="DIR_PATH",
        default="",
    )
    texture_size: EnumProperty(name="Texture Size", description="Width and height of the baked textures", items=_TEXTURE_SIZES, default="1024")
    padding: IntProperty(
        name="Padding",
        description="Pixels the colour is extended past UV island borders, against seams in mipmaps",
        default=4,
        min=0,
        max=64,
    )
    keep_uvs: BoolProperty(
        name="Keep UVs",
        description="Bake into the object's own UV map (its active render map) when it has one, so a layout you made "
        "survives; off, or without a UV map, Meshsmith unwraps the object anew",
        default=True,
    )
    normal_map: BoolProperty(
        name="Normal Map",
        description="Also bake the source's surface detail into a tangent-space normal map",
        default=True,
    )
    # -- From Views
    views_input: EnumProperty(name="Input", description="Where the views come from", items=_VIEWS_INPUT_ITEMS,
                              default=modes.VIEWS_FOLDER)
    grid_image: StringProperty(
        name="Grid Image",
        description="An image of six views in a 3 x 2 grid with Zero123++'s poses (e.g. Zero123++ v1.2's output)",
        subtype="FILE_PATH",
        default="",
    )
    views_method: EnumProperty(name="Method", description="How the shape is reconstructed", items=_VIEWS_METHOD_ITEMS,
                               default="MODEL")
    views_resolution: IntProperty(
        name="Resolution",
        description="Grid nodes along each side of the reconstruction's box: finer detail, more time",
        default=128,
        min=32,
        max=384,
    )
    use_normals: BoolProperty(
        name="Use Normal Maps",
        description="Let the learned model use the views' normal maps when they have them",
        default=True,
    )
    # -- From Text and Artist (learned)
    text_prompt: StringProperty(name="Prompt", description="What to make, e.g. 'a wooden chair'", default="a chair")
    text_model: EnumProperty(name="Model", description="Which language model writes the mesh", items=_TEXT_MODEL_ITEMS,
                             default="MESHSMITH")
    text_weights: StringProperty(
        name="Weights",
        description="LLaMA-Mesh: a .gguf file, a transformers folder or a Hugging Face repo id already downloaded "
        "(empty: LLaMA-Mesh-Q4_K_M.gguf from the Hugging Face cache). Meshsmith: a checkpoint folder (empty: shipped)",
        default="",
    )
    text_repair: EnumProperty(name="Repair", description="What to do with the faces the model wrote",
                              items=_TEXT_REPAIR_ITEMS, default="NONE")
    learned_faces: IntProperty(name="Max Faces", description="The model stops after this many faces", default=500,
                               min=4, max=2000)
    temperature: FloatProperty(name="Temperature", description="Higher: more varied, less careful; 0: always the "
                               "likeliest", default=0.7, min=0.0, max=2.0)
    seed: IntProperty(name="Seed", description="The same seed and input give the same mesh", default=0, min=0)
    hide_source: BoolProperty(
        name="Hide Source",
        description="Hide the object the result was made from when the result arrives (Undo shows it again)",
        default=True,
    )
    # The rest mirrors the add-on's job tracker for drawing; the poll function writes it.
    job_id: StringProperty(name="Job", description="Backend id of this scene's latest job", options=set())
    job_state: StringProperty(
        name="Job State",
        description="submitted, polling, downloading, submitting, imported, failed or cancelled",
        options=set(),
    )
    job_progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, options=set())
    job_stage: StringProperty(name="Stage", description="What the backend is doing", options=set())
    job_message: StringProperty(name="Message", description="Why the job failed, or what it imported", options=set())


def attach() -> None:
    bpy.types.Scene.meshsmith = PointerProperty(type=MESHSMITH_PG_settings)


def detach() -> None:
    del bpy.types.Scene.meshsmith
