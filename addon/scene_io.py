"""Move meshes between the Blender scene and GLB bytes: export the active object, import a result."""

from __future__ import annotations

from array import array

import bpy
from mathutils import Matrix

from . import glb
from .errors import MeshsmithError

#: Collection that receives every imported result.
RESULT_COLLECTION = "Meshsmith"


def evaluated_triangles(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> tuple[array, array]:
    """The object's mesh with modifiers applied, in local coordinates, as loop triangles.

    Returns
    -------
    positions : array('f'), length 3 n (Blender axes, object space)
    indices : array(glb.U32), length 3 m
    """
    if obj.mode == "EDIT":
        # The evaluated mesh only sees edit-mode changes once they are written back.
        obj.update_from_editmode()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        positions = array("f", bytes(4 * 3 * len(mesh.vertices)))
        mesh.vertices.foreach_get("co", positions)
        indices = array(glb.U32, bytes(4 * 3 * len(mesh.loop_triangles)))
        mesh.loop_triangles.foreach_get("vertices", indices)
    finally:
        evaluated.to_mesh_clear()
    return positions, indices


def export_object_glb(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> bytes:
    """The object's evaluated mesh as GLB bytes (object space; the world matrix stays in Blender).

    Raises :class:`MeshsmithError` when the object has no faces.
    """
    positions, indices = evaluated_triangles(obj, depsgraph)
    if not indices:
        raise MeshsmithError(f"{obj.name!r} has no faces (after modifiers); Meshsmith needs a surface to work on.")
    try:
        return glb.write_glb(positions, indices, name=obj.name)
    except ValueError as exc:
        raise MeshsmithError(f"{obj.name!r} cannot be exported: {exc}.") from exc


def result_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's ``Meshsmith`` collection, created under the scene collection when missing."""
    collection = bpy.data.collections.get(RESULT_COLLECTION)
    if collection is None or collection.library is not None:
        collection = bpy.data.collections.new(RESULT_COLLECTION)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def mesh_from_triangles(name: str, triangles: glb.TriangleMesh) -> bpy.types.Mesh:
    """A new mesh datablock from a triangle mesh in Blender axes; validated, flat shaded."""
    mesh = bpy.data.meshes.new(name)
    corner_count = len(triangles.indices)
    mesh.vertices.add(triangles.vertex_count)
    mesh.vertices.foreach_set("co", triangles.positions)
    mesh.loops.add(corner_count)
    mesh.polygons.add(triangles.triangle_count)
    mesh.polygons.foreach_set("loop_start", array("i", range(0, corner_count, 3)))
    mesh.polygons.foreach_set("vertices", triangles.indices)
    # Marching-cubes facets are the geometry; flat shading shows it as it is.
    mesh.shade_flat()
    mesh.update(calc_edges=True)
    if mesh.validate(clean_customdata=False):
        mesh.update()
    return mesh


def import_result(
    scene: bpy.types.Scene,
    name: str,
    triangles: glb.TriangleMesh,
    matrix_world: Matrix,
) -> bpy.types.Object:
    """Add a new object ``name`` (mesh data named alike) to the scene's Meshsmith collection."""
    mesh = mesh_from_triangles(name, triangles)
    obj = bpy.data.objects.new(name, mesh)
    result_collection(scene).objects.link(obj)
    obj.matrix_world = matrix_world
    return obj
