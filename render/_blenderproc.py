"""The one place that imports BlenderProc 2.8, and how it is made importable here.

BlenderProc's package ``__init__`` refuses to be imported unless it was started by
``blenderproc run`` (it inspects the call stack), and its ``init()`` sets a UI language the
pip ``bpy`` module lacks. Its ``api`` modules themselves work on Blender 4.2, with the pip
``bpy`` module or inside a Blender 4.2 binary. So this shim

1. sets ``OUTSIDE_OF_THE_INTERNAL_BLENDER_PYTHON_ENVIRONMENT_BUT_IN_RUN_SCRIPT``, the variable
   BlenderProc's own ``blenderproc run`` sets for the same purpose: the package ``__init__``
   then imports nothing and raises nothing, and
2. imports the ``api`` modules we use by their full names, and
3. offers :func:`init`, which is ``blenderproc.init()`` minus the language switch and the
   GPU device probing: it resets the scene and applies BlenderProc's default renderer settings.

Inside a Blender 4.2 binary (``blender -b -P render/views.py -- ...``) BlenderProc and its
imports must be importable by Blender's own Python 3.11. Either put this project's venv,
which ``make setup`` fills, on its path
(``PYTHONPATH=.venv/lib/python3.11/site-packages blender -b -P render/views.py -- ...``), or
install the render block of ``requirements.txt`` (plus trimesh, pillow, tqdm, scipy) with
``<blender>/4.2/python/bin/python3.11 -m pip install ...``.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

_API: SimpleNamespace | None = None


def api() -> SimpleNamespace:
    """BlenderProc's ``api`` modules we use: ``camera``, ``loader``, ``renderer``, ``utility``."""
    global _API
    if _API is None:
        os.environ.setdefault("OUTSIDE_OF_THE_INTERNAL_BLENDER_PYTHON_ENVIRONMENT_BUT_IN_RUN_SCRIPT", "1")
        try:
            from blenderproc.api import camera, loader, renderer, utility
            from blenderproc.python.utility import Initializer
        except ImportError as exc:
            raise ImportError(
                "render/ needs BlenderProc 2.8 and its imports (see requirements.txt): "
                f"{exc}. In a Blender binary, install them into Blender's Python or set PYTHONPATH "
                "to a Python 3.11 site-packages that has them."
            ) from exc
        _API = SimpleNamespace(camera=camera, loader=loader, renderer=renderer, utility=utility,
                               initializer=Initializer)
    return _API


def init() -> None:
    """Empty scene with BlenderProc's default renderer settings, on the CPU.

    Safe to call once per asset (``blenderproc.init()`` may be called only once per process).
    """
    import bpy

    bp = api()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # BlenderProc keeps per-scene state (registered outputs, "depth output enabled", ...) in a
    # process-wide store that nothing public clears; a new scene starts with it empty.
    from blenderproc.python.utility.GlobalStorage import GlobalStorage

    GlobalStorage._storage_dict.clear()
    bp.initializer.clean_up(clean_up_camera=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    bp.initializer._Initializer.set_default_parameters()
