"""A normal map baked by the backend points the right way in Blender.

A flat low-poly plane gets the normal map of a bumpy one (z = A sin(K x) + A/2 sin(K y): tilts
along both texture axes, so a swapped or flipped channel shows) through the
Texture mode, end to end. Blender's own tangent frame (``Mesh.calc_tangents``, MikkTSpace,
the one its Normal Map node uses) then decodes the texture: ``T x + B y + N z`` with
``B = sign (N x T)`` and ``(x, y, z) = 2 rgb - 1`` must match the bumpy surface's normal.
"""

from __future__ import annotations

import math
from array import array

import pytest

from .test_addon_blender import JOB_TIMEOUT, link_new_object
from .test_modes_blender import need, offered, select, settings  # noqa: F401  (fixtures)

import bpy  # first: bmesh and mathutils exist only once bpy is imported
from mathutils import Vector  # isort: skip

AMPLITUDE, WAVES = 0.08, 2                      # bumps over the plane's width of 2
K = WAVES * math.pi                             # z = A sin(K x) + A / 2 sin(K y) for x, y in [-1, 1]


def grid(name: str, cells: int, bumpy: bool) -> bpy.types.Object:
    """A (cells x cells) grid over [-1, 1]^2, flat or bumpy, smooth shaded."""
    coords = [(-1 + 2 * i / cells, -1 + 2 * j / cells) for j in range(cells + 1) for i in range(cells + 1)]
    vertices = [(x, y, AMPLITUDE * (math.sin(K * x) + 0.5 * math.sin(K * y)) if bumpy else 0.0) for x, y in coords]
    faces = [(j * (cells + 1) + i, j * (cells + 1) + i + 1, (j + 1) * (cells + 1) + i + 1, (j + 1) * (cells + 1) + i)
             for j in range(cells) for i in range(cells)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    mesh.update()
    for polygon in mesh.polygons:
        polygon.use_smooth = True
    return link_new_object(name, mesh)


def bump_normal(x: float, y: float) -> Vector:
    return Vector((-AMPLITUDE * K * math.cos(K * x), -0.5 * AMPLITUDE * K * math.cos(K * y), 1.0)).normalized()


def test_a_normal_map_from_a_bumpy_plane_points_the_right_way(settings, runtime, offered):  # noqa: F811
    need(offered, "texture")
    target = grid("FlatPlane", 4, bumpy=False)
    source = grid("BumpyPlane", 160, bumpy=True)
    colour = source.data.color_attributes.new("Col", "BYTE_COLOR", "POINT")
    for item in colour.data:
        item.color_srgb = (0.5, 0.5, 0.5, 1.0)
    source.data.color_attributes.active_color = colour
    select(target, source, active=target)
    settings.mode, settings.texture_source, settings.texture_size, settings.normal_map = "TEXTURE", "OBJECT", "256", True
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message

    result = bpy.data.objects["FlatPlane_textured"]
    mesh = result.data
    bsdf = next(n for n in mesh.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    normal_node = bsdf.inputs["Normal"].links[0].from_node
    assert normal_node.type == "NORMAL_MAP" and normal_node.space == "TANGENT"
    image = normal_node.inputs["Color"].links[0].from_node.image
    assert image.colorspace_settings.name == "Non-Color"
    width, height = image.size
    pixels = array("f", bytes(16 * width * height))
    image.pixels.foreach_get(pixels)

    mesh.calc_tangents(uvmap=normal_node.uv_map)
    layer = mesh.uv_layers[normal_node.uv_map]
    errors, slopes = [], []
    for polygon in mesh.polygons:
        loops = [mesh.loops[i] for i in polygon.loop_indices]
        uvs = [layer.uv[i].vector for i in polygon.loop_indices]
        points = [mesh.vertices[loop.vertex_index].co for loop in loops]
        # The plane is flat, so each polygon's tangent frame is one frame (its first loop's).
        n = loops[0].normal.normalized()
        t = loops[0].tangent.normalized()
        b = loops[0].bitangent_sign * n.cross(t)
        # Points inside the polygon (away from its island's border): weights of its corners.
        if len(loops) == 3:
            weights = [(0.6, 0.2, 0.2), (0.2, 0.6, 0.2), (0.2, 0.2, 0.6), (1 / 3, 1 / 3, 1 / 3)]
        else:
            weights = [((1 - a) * (1 - c), a * (1 - c), a * c, (1 - a) * c)
                       for a, c in ((0.25, 0.25), (0.5, 0.5), (0.75, 0.25), (0.25, 0.75))]
        for w in weights:
            uv = sum((uvs[k] * w[k] for k in range(len(w))), Vector((0.0, 0.0)))
            point = sum((points[k] * w[k] for k in range(len(w))), Vector((0.0, 0.0, 0.0)))
            px, py = min(int(uv.x * width), width - 1), min(int(uv.y * height), height - 1)
            rgb = pixels[4 * (py * width + px): 4 * (py * width + px) + 3]
            x, y, z = (2 * value - 1 for value in rgb)
            shown = (t * x + b * y + n * z).normalized()
            truth = bump_normal(point.x, point.y)
            errors.append(math.degrees(shown.angle(truth)))
            slopes += [(truth.x, shown.x), (truth.y, shown.y)]
    errors.sort()
    # The bumps tilt the normal by up to about 29 degrees; the map must show that tilt, with
    # the right sign along both axes, everywhere.
    assert errors[len(errors) // 2] < 3.0 and errors[-1] < 8.0, errors[-5:]
    assert all((s > 0) == (t > 0) for t, s in slopes if abs(t) > 0.1)
