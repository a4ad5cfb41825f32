"""Add-on preferences: where the backend is and how to start it."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty

from . import model_support, runtime


class MeshsmithPreferences(bpy.types.AddonPreferences):
    # For an extension this is "bl_ext.<repo>.meshsmith", the key of context.preferences.addons.
    bl_idname = __package__

    backend_address: StringProperty(
        name="Backend Address",
        description="host:port or URL of the backend. Empty: read it from the state file the backend writes",
        default="",
    )
    backend_python: StringProperty(
        name="Backend Python",
        description=(
            "Python interpreter of the environment where the backend is installed. "
            "Empty: $MESHSMITH_BACKEND_PYTHON, else python3 on PATH"
        ),
        subtype="FILE_PATH",
        default="",
    )
    backend_dir: StringProperty(
        name="Backend Folder",
        description=(
            "Folder that contains the 'backend' package (the Meshsmith checkout), when it is not "
            "installed in that Python. Empty: the checkout whose .venv the Backend Python is in, if any"
        ),
        subtype="DIR_PATH",
        default="",
    )
    torch_index: StringProperty(
        name="PyTorch Index",
        description=(
            "Extra package index Install Model Support takes PyTorch from. Default on Linux and Windows: "
            "PyTorch's CPU builds (PyPI's are the multi-GB CUDA ones); empty: PyPI only. For an NVIDIA GPU, "
            "e.g. https://download.pytorch.org/whl/cu128"
        ),
        default=model_support.default_torch_index(),
    )
    start_on_generate: BoolProperty(
        name="Start Backend on Generate",
        description="Start the backend when Generate finds none running",
        default=False,
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "backend_address")
        layout.prop(self, "backend_python")
        layout.label(text=runtime.python_hint(self), icon="INFO")
        layout.prop(self, "backend_dir")
        layout.prop(self, "start_on_generate")
        row = layout.row(align=True)
        row.operator("meshsmith.start_backend", icon="PLAY")
        row.operator("meshsmith.stop_backend", icon="PAUSE")
        row.operator("meshsmith.refresh_status", text="", icon="FILE_REFRESH")
        status = runtime.backend_status()
        layout.label(text=f"Backend: {status.text}")
        if status.hint:
            layout.label(text=status.hint)
        self._draw_model_support(layout.box())

    def _draw_model_support(self, box: bpy.types.UILayout) -> None:
        box.label(text="Model Support (PyTorch, for the learned modes)")
        state, line = runtime.model_support_state()
        icon = {"installed": "CHECKMARK", "failed": "ERROR", "running": "SORTTIME"}.get(state, "INFO")
        box.label(text=line, icon=icon)
        box.prop(self, "torch_index")
        row = box.row(align=True)
        if state == "running":
            row.operator("meshsmith.cancel_model_support", icon="CANCEL")
        else:
            row.operator("meshsmith.install_model_support",
                         text="Reinstall Model Support" if state == "installed" else "Install Model Support",
                         icon="IMPORT")
