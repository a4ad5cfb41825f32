"""Blender's side of the benchmarks: a scene holding the input, as Blender's own tools receive it."""

from __future__ import annotations

import numpy as np


def blender_input_object(vertices: np.ndarray, faces: np.ndarray):
    """An empty Blender scene holding one object of this triangle mesh, active and selected."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("input")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    obj = bpy.data.objects.new("input", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj
