"""Training renders with Blender: multi-view colour, exact normal / depth / mask maps, cameras.

Entry points: ``python -m render.views`` (one asset), ``python -m render.dataset`` (a folder,
local processes or Ray), ``python -m render.bench`` (speed and colour quality). Modules that
drive Blender (``scene``, ``views``) import ``bpy``; ``layouts`` and ``geometry``-level maths
are plain numpy so they can be tested and reused without Blender.
"""
