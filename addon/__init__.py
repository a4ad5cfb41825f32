"""Meshsmith: send the active mesh to the local backend and import the result. Registration only.

The Blender-side modules are imported inside :func:`register`, so the bpy-free modules of this
package (client, connection, protocol, jobs, glb, backend_process) can be imported, and
unit-tested, without Blender.
"""

from __future__ import annotations


def _classes() -> tuple[type, ...]:
    from . import operators, panel, preferences, props

    # Property groups before anything that points at them; the panel last.
    return (
        props.MESHSMITH_PG_settings,
        preferences.MeshsmithPreferences,
        operators.MESHSMITH_OT_generate,
        operators.MESHSMITH_OT_cancel,
        operators.MESHSMITH_OT_start_backend,
        operators.MESHSMITH_OT_stop_backend,
        operators.MESHSMITH_OT_install_model_support,
        operators.MESHSMITH_OT_cancel_model_support,
        operators.MESHSMITH_OT_refresh_status,
        operators.MESHSMITH_OT_render_views,
        panel.VIEW3D_PT_meshsmith,
    )


def register() -> None:
    import bpy

    from . import props, runtime

    for cls in _classes():
        bpy.utils.register_class(cls)
    props.attach()
    runtime.register()


def unregister() -> None:
    import bpy

    from . import props, runtime

    runtime.unregister()
    props.detach()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
