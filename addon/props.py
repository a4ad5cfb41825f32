"""Scene settings of the Meshsmith panel and the status of the scene's latest job."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

#: Generate modes: enum identifier -> (backend pipeline, suffix of the result's name).
MODES: dict[str, tuple[str, str]] = {"WATERTIGHT": ("watertight", "_watertight")}

_MODE_ITEMS = [("WATERTIGHT", "Watertight", "Closed, manifold remesh")]


class MESHSMITH_PG_settings(bpy.types.PropertyGroup):
    """What to generate (edited in the panel) and how the latest job is doing (shown, not edited)."""

    mode: EnumProperty(name="Mode", description="What to make from the active mesh", items=_MODE_ITEMS, default="WATERTIGHT")
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
        description="Reduce the result to about this many faces, keeping it closed; 0 keeps every face",
        default=0,
        min=0,
        soft_max=200_000,
    )
    # The rest mirrors the add-on's job tracker for drawing; the poll function writes it.
    job_id: StringProperty(name="Job", description="Backend id of this scene's latest job", options=set())
    job_state: StringProperty(
        name="Job State",
        description="submitted, polling, downloading, imported, failed or cancelled",
        options=set(),
    )
    job_progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, options=set())
    job_stage: StringProperty(name="Stage", description="What the backend is doing", options=set())
    job_message: StringProperty(name="Message", description="Why the job failed, or what it imported", options=set())


def watertight_params(settings: MESHSMITH_PG_settings) -> dict:
    """The ``watertight`` pipeline's parameters from the panel's settings."""
    return {
        "resolution": int(settings.resolution),
        "keep": "largest" if settings.largest_only else "all",
        "cavities": "keep" if settings.keep_cavities else "fill",
        "target_faces": int(settings.target_faces) or None,
    }


def attach() -> None:
    bpy.types.Scene.meshsmith = PointerProperty(type=MESHSMITH_PG_settings)


def detach() -> None:
    del bpy.types.Scene.meshsmith
