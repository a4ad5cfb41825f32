"""Render Views: the active object's six Zero123++ views, written as render/ writes them.

So a user can try From Views on any object of the scene. The object (modifiers applied) is
framed in the canonical box of ``backend/conventions.py`` (centred on its bounding box,
longest side 1.9), seen by render/'s ``zero123pp`` cameras (azimuths 30..330, elevations 20 /
-10, 30 degree field of view) under render/'s light rig, and rendered by Cycles in a
temporary scene (the user's scene and its render settings are not touched). Per view the
folder gets ``NNN_rgb.png`` (RGBA, transparent background) and ``NNN_normal_world.npy``
(exact world normals by ray casting, zero where the ray misses); ``cameras.json`` holds the
cameras in the canonical frame plus :data:`views.PLACEMENT`, the matrix that takes that frame
back onto the object, so the reconstruction lands where the object is.

The work is a generator (:func:`render_views`), one view per step: the operator runs a step
per timer tick, tests run it to the end.
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterator

import bpy
from mathutils import Matrix, Vector

from .errors import MeshsmithError
from .views import PLACEMENT

#: render/'s zero123pp layout (render/layouts.py) and its framing (same extent and margin).
AZIMUTHS = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ELEVATIONS = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
FOV_DEG = 30.0
EXTENT = 0.95
MARGIN = 0.05
#: render/'s light rig (render/scene.py): suns (azimuth, elevation, strength, angle) and ambient.
SUNS = ((-35.0, 50.0, 2.0, 3.0), (70.0, 20.0, 0.6, 3.0), (180.0, 35.0, 1.0, 3.0))
AMBIENT = 0.25


def framing_radius() -> float:
    return EXTENT * math.sqrt(3.0) * (1.0 + MARGIN) / math.sin(math.radians(FOV_DEG) / 2.0)


def camera_position(azimuth: float, elevation: float, radius: float) -> Vector:
    a, e = math.radians(azimuth), math.radians(elevation)
    return Vector((math.cos(e) * math.sin(a), -math.cos(e) * math.cos(a), math.sin(e))) * radius


def canonical_camera(azimuth: float, elevation: float) -> Matrix:
    """Blender camera matrix_world in the canonical frame, looking at the origin with +Z up."""
    position = camera_position(azimuth, elevation, framing_radius())
    rotation = (-position).to_track_quat("-Z", "Y").to_matrix().to_4x4()
    return Matrix.Translation(position) @ rotation


def opencv_world_to_camera(matrix_world: Matrix) -> list[list[float]]:
    """OpenCV world-to-camera (camera x right, y down, z forward) of a Blender camera matrix."""
    flip = Matrix.Diagonal((1.0, -1.0, -1.0, 1.0))
    return [list(row) for row in flip @ matrix_world.inverted()]


def _world_triangles(obj: bpy.types.Object, depsgraph) -> tuple[list[Vector], list[tuple[int, int, int]]]:
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        vertices = [obj.matrix_world @ v.co for v in mesh.vertices]
        triangles = [tuple(t.vertices) for t in mesh.loop_triangles]
    finally:
        evaluated.to_mesh_clear()
    if not triangles:
        raise MeshsmithError(f"{obj.name!r} has no faces to render.")
    return vertices, triangles


def render_views(context: bpy.types.Context, obj: bpy.types.Object, folder: str, *, size: int = 320,
                 samples: int = 16) -> Iterator[tuple[int, int]]:
    """Render ``obj``'s six views into ``folder``; yields ``(views done, 6)`` after each view."""
    import numpy as np
    from mathutils.bvhtree import BVHTree

    depsgraph = context.evaluated_depsgraph_get()
    vertices, triangles = _world_triangles(obj, depsgraph)
    lo = Vector([min(v[i] for v in vertices) for i in range(3)])
    hi = Vector([max(v[i] for v in vertices) for i in range(3)])
    longest = max(hi - lo)
    if not longest > 0:
        raise MeshsmithError(f"{obj.name!r} has no size to frame.")
    centre, scale = (lo + hi) / 2.0, 2.0 * EXTENT / longest
    to_world = Matrix.Translation(centre) @ Matrix.Scale(1.0 / scale, 4)      # canonical -> scene
    tree = BVHTree.FromPolygons(vertices, triangles)
    os.makedirs(folder, exist_ok=True)

    scene = bpy.data.scenes.new("Meshsmith Render Views")
    made: list = []
    try:
        mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph), preserve_all_data_layers=True,
                                               depsgraph=depsgraph)
        made.append(mesh)
        stand_in = bpy.data.objects.new(obj.name + "_views", mesh)
        made.append(stand_in)
        stand_in.matrix_world = obj.matrix_world
        scene.collection.objects.link(stand_in)
        world = bpy.data.worlds.new("Meshsmith Render Views")
        made.append(world)
        if world.node_tree is None:  # Blender 4.x; 5.x worlds always have their node tree
            world.use_nodes = True
        background = world.node_tree.nodes.get("Background")
        background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        background.inputs["Strength"].default_value = AMBIENT
        scene.world = world
        for azimuth, elevation, strength, angle in SUNS:
            light = bpy.data.lights.new("Meshsmith sun", "SUN")
            made.append(light)
            light.energy, light.angle = strength, math.radians(angle)
            sun = bpy.data.objects.new("Meshsmith sun", light)
            made.append(sun)
            sun.rotation_euler = (-camera_position(azimuth, elevation, 1.0)).to_track_quat("-Z", "Y").to_euler()
            scene.collection.objects.link(sun)
        camera_data = bpy.data.cameras.new("Meshsmith camera")
        made.append(camera_data)
        camera_data.angle = math.radians(FOV_DEG)
        camera_data.sensor_fit = "AUTO"
        camera_data.clip_start, camera_data.clip_end = 0.01 / scale, 100.0 / scale
        camera = bpy.data.objects.new("Meshsmith camera", camera_data)
        made.append(camera)
        scene.collection.objects.link(camera)
        scene.camera = camera
        render = scene.render
        render.engine = "CYCLES"
        render.resolution_x = render.resolution_y = size
        render.resolution_percentage = 100
        render.film_transparent = True
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        scene.view_settings.view_transform = "Standard"
        scene.cycles.samples = samples
        scene.cycles.device = "CPU"
        scene.cycles.use_denoising = False

        f = size / 2.0 / math.tan(math.radians(FOV_DEG) / 2.0)
        intrinsics = {"fx": f, "fy": f, "cx": size / 2.0 - 0.5, "cy": size / 2.0 - 0.5, "width": size, "height": size}
        records = []
        for k, (azimuth, elevation) in enumerate(zip(AZIMUTHS, ELEVATIONS)):
            canonical = canonical_camera(azimuth, elevation)
            camera.matrix_world = Matrix.Translation(to_world @ canonical.translation) @ canonical.to_3x3().to_4x4()
            files = {"rgb": f"{k:03d}_rgb.png", "normal_world": f"{k:03d}_normal_world.npy"}
            render.filepath = os.path.join(folder, files["rgb"])
            bpy.ops.render.render(write_still=True, scene=scene.name)
            np.save(os.path.join(folder, files["normal_world"]),
                    _normals(tree, camera.matrix_world, f, size))
            records.append({"index": k, "azimuth": azimuth, "elevation": elevation, "radius": framing_radius(),
                            "fov": FOV_DEG, "intrinsics": intrinsics,
                            "world_to_camera": opencv_world_to_camera(canonical),
                            "matrix_world": [list(row) for row in canonical], "files": files})
            yield k + 1, len(AZIMUTHS)
        cameras = {"format": 1, "layout": "zero123pp", "views": records,
                   "conventions": "backend/conventions.py: canonical box, Blender world Z-up, OpenCV world_to_camera",
                   PLACEMENT: {"object": obj.name, "matrix_world": [list(row) for row in to_world]}}
        with open(os.path.join(folder, "cameras.json"), "w", encoding="utf-8") as out:
            json.dump(cameras, out, indent=1)
    finally:
        bpy.data.scenes.remove(scene)
        for block in reversed(made):
            for kind, collection in ((bpy.types.Object, bpy.data.objects), (bpy.types.Mesh, bpy.data.meshes),
                                     (bpy.types.World, bpy.data.worlds), (bpy.types.Light, bpy.data.lights),
                                     (bpy.types.Camera, bpy.data.cameras)):
                if isinstance(block, kind):
                    collection.remove(block)
                    break


def _normals(tree, matrix_world: Matrix, focal: float, size: int):
    """(size, size, 3) float32 world normals seen through the camera (facing it), 0 where the ray misses."""
    import numpy as np

    origin = matrix_world.translation
    rotation = matrix_world.to_3x3()
    out = np.zeros((size, size, 3), dtype=np.float32)
    centre = size / 2.0 - 0.5
    for v in range(size):
        for u in range(size):
            # Blender camera: looks down -Z, +Y up; pixel rows grow downwards.
            direction = rotation @ Vector(((u - centre) / focal, -(v - centre) / focal, -1.0))
            hit, normal, _, _ = tree.ray_cast(origin, direction.normalized())
            if hit is not None:
                if normal.dot(direction) > 0:
                    normal = -normal
                out[v, u] = normal
    return out


def default_folder(obj: bpy.types.Object) -> str:
    """Next to the .blend file when it is saved (``//meshsmith_views/<object>``), else in the temp folder."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in obj.name) or "object"
    if bpy.data.filepath:
        return bpy.path.abspath(f"//meshsmith_views/{safe}")
    return os.path.join(bpy.app.tempdir or "/tmp", "meshsmith_views", safe)
