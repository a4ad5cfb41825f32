"""The Meshsmith tab in the 3D viewport's sidebar."""

from __future__ import annotations

import textwrap

import bpy

from . import runtime

_FINAL_STATES = {"imported", "failed", "cancelled"}


def _wrapped_label(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: str = "NONE") -> None:
    """Labels do not wrap; split ``text`` to the sidebar's width."""
    region = context.region
    # ~7 px per character at 1x scale is close enough for Blender's UI font.
    width = max(20, int((region.width if region else 300) / (7 * context.preferences.system.ui_scale)))
    column = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        column.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


class VIEW3D_PT_meshsmith(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Meshsmith"
    bl_label = "Meshsmith"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.meshsmith

        column = layout.column()
        column.prop(settings, "mode")
        draw_mode = {
            "WATERTIGHT": self._draw_watertight,
            "ARTIST": self._draw_artist,
            "TEXTURE": self._draw_texture,
            "ARTIST_TEXTURE": self._draw_preset,
            "VIEWS": self._draw_views,
            "TEXT": self._draw_text,
            "ARTIST_LEARNED": self._draw_learned,
        }[settings.mode]
        draw_mode(column, context, settings)
        why = runtime.backend_status().mode_unavailable(settings.mode)
        if why:
            _wrapped_label(column, context, why, icon="ERROR")
        if settings.mode not in ("VIEWS", "TEXT"):
            column.prop(settings, "hide_source")
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("meshsmith.generate", icon="MESH_ICOSPHERE")
        row.operator("meshsmith.cancel", text="", icon="CANCEL")

        if settings.job_state:
            self._draw_job(layout, context, settings)

        box = layout.box()
        status = runtime.backend_status()
        row = box.row()
        row.label(text=f"Backend: {status.text}")
        row.operator("meshsmith.refresh_status", text="", icon="FILE_REFRESH", emboss=False)
        if status.hint:
            _wrapped_label(box, context, status.hint)

    @staticmethod
    def _draw_watertight(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "resolution")
        column.prop(settings, "target_faces")
        row = column.row(align=True)
        row.prop(settings, "largest_only", toggle=True)
        row.prop(settings, "keep_cavities", toggle=True)

    @staticmethod
    def _draw_artist(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "artist_faces")
        column.prop(settings, "topology")
        row = column.row(align=True)
        row.prop(settings, "keep_sharp")
        sub = row.row(align=True)
        sub.active = settings.keep_sharp
        sub.prop(settings, "sharp_angle", text="")

    @staticmethod
    def _draw_texture(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "texture_source")
        if settings.texture_source == "VIEWS":
            column.prop(settings, "views_dir")
        else:
            _wrapped_label(column, context, "Bakes from the other selected object onto the active one.", icon="INFO")
        column.prop(settings, "texture_size")
        column.prop(settings, "padding")
        column.prop(settings, "keep_uvs")
        column.prop(settings, "normal_map")

    @staticmethod
    def _draw_preset(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "artist_faces")
        column.prop(settings, "texture_size")
        _wrapped_label(
            column, context, "Quad-dominant remesh of the active object, then its colour and normal map baked onto it.",
            icon="INFO",
        )

    @staticmethod
    def _draw_views(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "views_input")
        if settings.views_input == "GRID":
            column.prop(settings, "grid_image")
        else:
            column.prop(settings, "views_dir")
            column.operator("meshsmith.render_views", icon="RENDER_STILL")
        column.prop(settings, "views_method")
        column.prop(settings, "views_resolution")
        row = column.row()
        row.active = settings.views_method == "MODEL" and settings.views_input != "GRID"
        row.prop(settings, "use_normals")
        column.prop(settings, "texture_size")

    @staticmethod
    def _draw_text(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "text_prompt", text="")
        column.prop(settings, "text_model")
        column.prop(settings, "text_weights")
        column.prop(settings, "learned_faces")
        row = column.row(align=True)
        row.prop(settings, "temperature")
        row.prop(settings, "seed")
        column.prop(settings, "text_repair")
        _wrapped_label(column, context, "Faces appear in the viewport as the model writes them.", icon="INFO")

    @staticmethod
    def _draw_learned(column: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        column.prop(settings, "learned_faces")
        row = column.row(align=True)
        row.prop(settings, "temperature")
        row.prop(settings, "seed")
        _wrapped_label(column, context, "Meshsmith's mesh model reads the active object's surface and writes a "
                       "low-poly mesh over it; Artist mode is the deterministic way.", icon="INFO")

    @staticmethod
    def _draw_job(layout: bpy.types.UILayout, context: bpy.types.Context, settings) -> None:
        state = settings.job_state
        text = f"{settings.job_stage or state} {settings.job_progress:.0%}" if state not in _FINAL_STATES else state
        # layout.progress exists from Blender 4.0; keep a label for anything older.
        if state not in _FINAL_STATES and hasattr(layout, "progress"):
            layout.progress(factor=settings.job_progress, type="BAR", text=text.capitalize())
        else:
            layout.label(text=text.capitalize(), icon="ERROR" if state == "failed" else "INFO")
        if settings.job_message:
            _wrapped_label(layout, context, settings.job_message, icon="ERROR" if state == "failed" else "NONE")
