"""Move meshes between the Blender scene and GLB bytes: export objects for upload, import a result.

Export: an object's evaluated mesh (modifiers applied), triangulated, in object space; for a
colour source also its UVs and base colour image, or its active colour attribute.
Import: a new object with the result's polygons (quads stay quads), its UV layer and a
node material (Principled BSDF fed by packed image textures and a tangent-space normal map).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import bpy
from mathutils import Matrix

from . import corners, glb, png
from .errors import MeshsmithError

#: Collection that receives every imported result.
RESULT_COLLECTION = "Meshsmith"
UV_NAME = "UVMap"
#: Colour spaces whose float pixels are scene-linear colour (not data).
_DATA_COLORSPACES = frozenset({"Non-Color", "Raw"})


@dataclass
class EvaluatedMesh:
    """An object's mesh with modifiers applied, read out of Blender as flat arrays (object space).

    Reading is C copies (``foreach_get``, through the attribute API where it exists: about 20x
    faster than the per-element one on a million faces) and must happen on Blender's main
    thread; :meth:`glb` encodes it and may run on any thread.
    """

    name: str
    positions: array                # 3 per vertex, Blender axes
    loop_vertices: array            # vertex per corner (U32)
    #: Corners per polygon; None when every polygon is a triangle (not read then).
    loop_totals: array | None
    #: Blender's loop triangles (their corners) and their polygons; read only when there are n-gons.
    triangle_loops: array
    triangle_polygons: array
    #: The UV map sent with the mesh (2 per corner) and its name; None unless asked for and present.
    loop_uvs: array | None = None
    uv_name: str | None = None

    @property
    def polygon_count(self) -> int:
        return len(self.loop_vertices) // 3 if self.loop_totals is None else len(self.loop_totals)

    def glb(self) -> bytes:
        """GLB bytes: quads as quads (``MESHSMITH_polygons``), other polygons as Blender's triangles.

        With a UV map, vertices are split where their corners' UVs differ (glTF keeps UVs per
        vertex) and each copy carries its Blender vertex as ``vertexIds``, so the result can be
        welded back into one piece.
        """
        if self.polygon_count == 0:
            raise MeshsmithError(f"{self.name!r} has no faces (after modifiers); Meshsmith needs a surface to work on.")
        positions, corner_vertices, uvs, ids = self.positions, self.loop_vertices, None, None
        if self.loop_uvs is not None:
            split = corners.split_by_corner(self.positions, self.loop_vertices, range(len(self.loop_vertices)),
                                            loop_uvs=self.loop_uvs)
            positions, corner_vertices, uvs, ids = split.positions, split.indices, split.uvs, split.source_vertices
        if self.loop_totals is None:
            indices, sizes = corner_vertices, None
        else:
            triangles = array(glb.U32, [corner_vertices[loop] for loop in self.triangle_loops])
            indices, sizes = glb.quads_and_triangles(self.loop_totals, corner_vertices, triangles,
                                                     self.triangle_polygons)
        try:
            return glb.write_glb(positions, indices, name=self.name, face_sizes=sizes, uvs=uvs, vertex_ids=ids)
        except ValueError as exc:
            raise MeshsmithError(f"{self.name!r} cannot be exported: {exc}.") from exc


def _read(collection, attribute: str, width: int, typecode: str) -> array:
    out = array(typecode, bytes(array(typecode).itemsize * width * len(collection)))
    collection.foreach_get(attribute, out)
    return out


def _read_attribute(mesh: bpy.types.Mesh, name: str, value: str, width: int, typecode: str, count: int) -> array | None:
    """A mesh attribute's values through the attribute API; None where this Blender lacks it."""
    attribute = mesh.attributes.get(name)
    if attribute is None or len(attribute.data) != count:
        return None
    out = array(typecode, bytes(array(typecode).itemsize * width * count))
    try:
        attribute.data.foreach_get(value, out)
    except (TypeError, RuntimeError):
        return None
    return out


def read_evaluated(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph, *, uvs: bool = False) -> EvaluatedMesh:
    """The object's evaluated mesh as arrays (main thread; see :class:`EvaluatedMesh`); with
    ``uvs``, also its active render UV map when it has one."""
    if obj.mode == "EDIT":
        # The evaluated mesh only sees edit-mode changes once they are written back.
        obj.update_from_editmode()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        n_vertices, n_loops, n_polygons = len(mesh.vertices), len(mesh.loops), len(mesh.polygons)
        positions = _read_attribute(mesh, "position", "vector", 3, "f", n_vertices) or _read(mesh.vertices, "co", 3, "f")
        corners = _read_attribute(mesh, ".corner_vert", "value", 1, "i", n_loops)
        if corners is None:
            loop_vertices = _read(mesh.loops, "vertex_index", 1, glb.U32)
        else:
            loop_vertices = array(glb.U32)
            loop_vertices.frombytes(corners.tobytes())     # the same 32-bit values, unsigned
        loop_totals = None if n_loops == 3 * n_polygons else _read(mesh.polygons, "loop_total", 1, "i")
        triangle_loops, triangle_polygons = array(glb.U32), array("i")
        if loop_totals is not None and max(loop_totals, default=0) > 4:
            mesh.calc_loop_triangles()
            triangle_loops = _read(mesh.loop_triangles, "loops", 3, glb.U32)
            triangle_polygons = _read(mesh.loop_triangles, "polygon_index", 1, "i")
        loop_uvs = uv_name = None
        layers = mesh.uv_layers
        layer = next((layer for layer in layers if layer.active_render), None) or layers.active
        if uvs and layer is not None:
            uv_name = layer.name
            loop_uvs = _read_attribute(mesh, uv_name, "vector", 2, "f", n_loops) or _read(layer.uv, "vector", 2, "f")
        return EvaluatedMesh(obj.name, positions, loop_vertices, loop_totals, triangle_loops, triangle_polygons,
                             loop_uvs, uv_name)
    finally:
        evaluated.to_mesh_clear()


def export_object_glb(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> bytes:
    """The object's evaluated mesh as GLB bytes (object space; the world matrix stays in Blender).

    Quads travel as quads. Raises :class:`MeshsmithError` when the object has no faces.
    """
    return read_evaluated(obj, depsgraph).glb()


# -- colour sources --------------------------------------------------------------------------


@dataclass
class ColourSource:
    """Where an object's colour comes from: an image through a UV map, or a colour attribute."""

    image: bpy.types.Image | None = None
    #: UV map the image node reads; None: the mesh's active render UV map.
    uv_map: str | None = None
    attribute: str | None = None

    def describe(self) -> str:
        return f"image {self.image.name!r}" if self.image is not None else f"colour attribute {self.attribute!r}"


def _upstream(socket: bpy.types.NodeSocket) -> bpy.types.Node | None:
    """The node feeding ``socket``, looking through reroutes; None when unlinked or muted."""
    while socket.is_linked:
        link = socket.links[0]
        if not link.is_valid or link.is_muted:
            return None
        node = link.from_node
        if node.type != "REROUTE":
            return node
        socket = node.inputs[0]
    return None


def _principled(tree: bpy.types.NodeTree) -> bpy.types.Node | None:
    """The Principled BSDF the material's output shows, else the tree's only one."""
    output = tree.get_output_node("ALL")
    if output is not None:
        node = _upstream(output.inputs["Surface"])
        if node is not None and node.type == "BSDF_PRINCIPLED":
            return node
    found = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"]
    return found[0] if len(found) == 1 else None


def base_color_image(material: bpy.types.Material | None) -> tuple[bpy.types.Image, str | None] | None:
    """The image an Image Texture node feeds into the material's Principled BSDF Base Color,
    and the UV map name a UV Map node gives that texture (None: the active render UV map)."""
    if material is None or material.node_tree is None:
        return None
    # Blender 4.x materials may hold a node tree they do not use; 5.x always uses it.
    if bpy.app.version < (5, 0, 0) and not material.use_nodes:
        return None
    bsdf = _principled(material.node_tree)
    if bsdf is None:
        return None
    node = _upstream(bsdf.inputs["Base Color"])
    if node is None or node.type != "TEX_IMAGE" or node.image is None:
        return None
    vector = _upstream(node.inputs["Vector"])
    uv_map = vector.uv_map if vector is not None and vector.type == "UVMAP" and vector.uv_map else None
    return node.image, uv_map


def colour_source(obj: bpy.types.Object) -> ColourSource | None:
    """Where ``obj``'s colour comes from, or None when it has none.

    A base colour image wins over a colour attribute. Raises :class:`MeshsmithError` when
    the faces use materials with different base colour images (one image is what is sent).
    """
    mesh = obj.data
    used = set(range(len(obj.material_slots)))
    if len(obj.material_slots) > 1 and len(mesh.polygons):
        indices = array("i", bytes(4 * len(mesh.polygons)))
        mesh.polygons.foreach_get("material_index", indices)
        used = set(indices)
    images: dict[str, tuple[bpy.types.Image, str | None]] = {}
    for index in sorted(used):
        if index < len(obj.material_slots):
            found = base_color_image(obj.material_slots[index].material)
            if found is not None:
                images.setdefault(found[0].name, found)
    if len(images) > 1:
        names = ", ".join(sorted(images))
        raise MeshsmithError(
            f"{obj.name!r} uses {len(images)} base colour images ({names}); Meshsmith bakes from one. "
            "Join them into one image first (e.g. bake the colour to a single texture)."
        )
    if images:
        image, uv_map = next(iter(images.values()))
        return ColourSource(image=image, uv_map=uv_map)
    attribute = mesh.color_attributes.active_color
    if attribute is not None:
        return ColourSource(attribute=attribute.name)
    return None


def no_colour_message(obj: bpy.types.Object) -> str:
    return (
        f"{obj.name!r} has no colour to bake from: give it a material whose Principled BSDF Base Color "
        "comes from an Image Texture node (with a UV map), or a colour attribute."
    )


def image_png(image: bpy.types.Image) -> bytes:
    """The image as PNG bytes: its own PNG file or packed data when unchanged, else encoded from its pixels."""
    if image.source not in {"FILE", "GENERATED"}:
        raise MeshsmithError(
            f"The image {image.name!r} is a {image.source.lower()} image; Meshsmith needs a single still image "
            "(not UDIM tiles, a movie or a sequence)."
        )
    if not image.is_dirty:
        if image.packed_file is not None:
            data = bytes(image.packed_file.data)
            if png.is_png(data):
                return data
        elif image.source == "FILE" and image.filepath:
            path = Path(bpy.path.abspath(image.filepath, library=image.library))
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                data = b""
            if png.is_png(data):
                return data
    width, height = image.size
    if width == 0 or height == 0:
        raise MeshsmithError(f"The image {image.name!r} has no pixels; is its file ({image.filepath}) missing?")
    pixels = array("f", bytes(4 * 4 * width * height))
    image.pixels.foreach_get(pixels)
    linear = image.is_float and image.colorspace_settings.name not in _DATA_COLORSPACES
    return png.encode_rgba(pixels, width, height, linear=linear)


def export_textured_glb(
    obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph, *, transform: Matrix | None = None
) -> bytes:
    """The object's evaluated mesh with its colour, as GLB bytes: UVs (``TEXCOORD_0``) and its
    base colour image as the material's texture, or its colour attribute as ``COLOR_0``.

    ``transform`` maps the object's local space into the frame the mesh is sent in (default:
    its own local space). Raises :class:`MeshsmithError` when the object has no colour, no
    UV map for its image, or no faces.
    """
    source = colour_source(obj)
    if source is None:
        raise MeshsmithError(no_colour_message(obj))
    uv_name = source.uv_map
    if source.image is not None and uv_name is None:
        layers = obj.data.uv_layers
        layer = next((layer for layer in layers if layer.active_render), None) or layers.active
        if layer is None:
            raise MeshsmithError(f"{obj.name!r} shows the image {source.image.name!r} but has no UV map.")
        uv_name = layer.name
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        if transform is not None:
            mesh.transform(transform)
        mesh.calc_loop_triangles()
        triangles = len(mesh.loop_triangles)
        if not triangles:
            raise MeshsmithError(f"{obj.name!r} has no faces (after modifiers); there is nothing to bake from.")
        positions = array("f", bytes(4 * 3 * len(mesh.vertices)))
        mesh.vertices.foreach_get("co", positions)
        tri_vertices = array(glb.U32, bytes(4 * 3 * triangles))
        mesh.loop_triangles.foreach_get("vertices", tri_vertices)
        tri_loops = array(glb.U32, bytes(4 * 3 * triangles))
        mesh.loop_triangles.foreach_get("loops", tri_loops)
        loop_uvs = loop_colors = vertex_colors = None
        if source.image is not None:
            layer = mesh.uv_layers.get(uv_name)
            if layer is None:
                raise MeshsmithError(f"{obj.name!r} has no UV map {uv_name!r} after its modifiers.")
            loop_uvs = array("f", bytes(4 * 2 * len(mesh.loops)))
            layer.uv.foreach_get("vector", loop_uvs)
        else:
            attribute = mesh.color_attributes.get(source.attribute)
            if attribute is None or attribute.domain not in {"POINT", "CORNER"}:
                raise MeshsmithError(
                    f"The colour attribute {source.attribute!r} of {obj.name!r} is not on its points or face corners."
                )
            values = array("f", bytes(4 * 4 * len(attribute.data)))
            attribute.data.foreach_get("color", values)  # scene-linear, as glTF's COLOR_0
            if attribute.domain == "POINT":
                vertex_colors = values
            else:
                loop_colors = values
    finally:
        evaluated.to_mesh_clear()
    split = corners.split_by_corner(
        positions, tri_vertices, tri_loops, loop_uvs=loop_uvs, loop_colors=loop_colors, vertex_colors=vertex_colors
    )
    base_color = image_png(source.image) if source.image is not None else None
    try:
        return glb.write_glb(
            split.positions, split.indices, name=obj.name, uvs=split.uvs, colors=split.colors, base_color=base_color
        )
    except ValueError as exc:
        raise MeshsmithError(f"{obj.name!r} cannot be exported: {exc}.") from exc


# -- import -----------------------------------------------------------------------------------


def result_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's ``Meshsmith`` collection, created under the scene collection when missing."""
    collection = bpy.data.collections.get(RESULT_COLLECTION)
    if collection is None or collection.library is not None:
        collection = bpy.data.collections.new(RESULT_COLLECTION)
    if collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def mesh_from_result(name: str, data: glb.TriangleMesh, *, smooth: bool = False, sharp_angle: float | None = None) -> bpy.types.Mesh:
    """A new mesh datablock from a result in Blender axes: its polygons, and its UVs as the layer ``UVMap``.

    With UVs, the copies glTF made of a vertex along UV seams are welded (by the result's vertex
    ids, else by equal positions), so the result is one connected mesh whose seams live in the
    UV layer. ``smooth`` shades smooth;
    ``sharp_angle`` (radians) also marks edges sharper than it, and implies smooth. Normals the
    result carries (a normal map is baked against them) become the mesh's custom normals,
    shaded smooth, so Blender shades with exactly those.
    """
    starts, loop_vertices = data.polygons()
    positions = data.positions
    loop_uvs = corners.gather(data.uvs, loop_vertices, 2) if data.uvs is not None else None
    loop_normals = corners.gather(data.normals, loop_vertices, 3) if data.normals is not None else None
    if data.uvs is not None:
        positions, loop_vertices = corners.weld(positions, loop_vertices, data.vertex_ids)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(positions) // 3)
    mesh.vertices.foreach_set("co", positions)
    mesh.loops.add(len(loop_vertices))
    mesh.loops.foreach_set("vertex_index", loop_vertices)
    mesh.polygons.add(len(starts))
    mesh.polygons.foreach_set("loop_start", starts)
    mesh.update(calc_edges=True)
    if loop_uvs is not None:
        mesh.uv_layers.new(name=UV_NAME).uv.foreach_set("vector", loop_uvs)
    if sharp_angle is not None and loop_normals is None:
        mesh.set_sharp_from_angle(angle=sharp_angle)
    elif smooth or loop_normals is not None:
        mesh.shade_smooth()
    else:
        # Marching-cubes facets are the geometry; flat shading shows it as it is.
        mesh.shade_flat()
    if mesh.validate(clean_customdata=False):
        mesh.update()
    if loop_normals is not None and len(loop_normals) == 3 * len(mesh.loops):
        # After validate: it may drop degenerate faces, and custom normals are per loop.
        mesh.normals_split_custom_set(list(zip(loop_normals[0::3], loop_normals[1::3], loop_normals[2::3])))
    return mesh


def _packed_image(name: str, texture: glb.Texture, *, colour: bool) -> bpy.types.Image:
    """A new image whose file is ``texture``'s bytes, packed into the .blend (no file on disk)."""
    image = bpy.data.images.new(name, 8, 8)  # the size is a placeholder until the packed file loads
    image.pack(data=texture.data, data_len=len(texture.data))
    image.source = "FILE"
    image.colorspace_settings.name = "sRGB" if colour else "Non-Color"
    return image


def material_from_result(name: str, result: glb.Material, uv_map: str = UV_NAME) -> bpy.types.Material:
    """A node material: Image Texture -> Base Color; Image Texture (Non-Color) -> Normal Map
    (tangent space, on ``uv_map``) -> Normal; the images packed."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x; 5.x materials always have their node tree
        material.use_nodes = True
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        output = tree.get_output_node("ALL") or nodes.new("ShaderNodeOutputMaterial")
        links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    bsdf.inputs["Metallic"].default_value = result.metallic
    bsdf.inputs["Roughness"].default_value = result.roughness
    x, y = bsdf.location
    if result.base_color is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.name = texture.label = "Base Color"
        texture.image = _packed_image(f"{name}_base_color", result.base_color, colour=True)
        texture.location = (x - 400, y)
        links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = result.base_color_factor
    if result.normal is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.name = texture.label = "Normal"
        texture.image = _packed_image(f"{name}_normal", result.normal, colour=False)
        texture.location = (x - 600, y - 320)
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.space = "TANGENT"
        normal_map.uv_map = uv_map
        normal_map.inputs["Strength"].default_value = result.normal_scale
        normal_map.location = (x - 250, y - 320)
        links.new(texture.outputs["Color"], normal_map.inputs["Color"])
        links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    return material


def import_result(
    scene: bpy.types.Scene,
    name: str,
    data: glb.TriangleMesh,
    matrix_world: Matrix,
    *,
    smooth: bool = False,
    sharp_angle: float | None = None,
) -> bpy.types.Object:
    """Add a new object ``name`` (mesh and material named alike) to the scene's Meshsmith collection.

    A result with a material gets it as a node material with packed images; one with a
    normal map is shaded smooth, as its normals were baked against smooth shading.
    """
    material = data.material
    if material is not None and data.uvs is None and (material.base_color or material.normal):
        raise MeshsmithError("The backend's result has textures but no UVs to place them with.")
    has_normal_map = material is not None and material.normal is not None
    mesh = mesh_from_result(
        name, data, smooth=smooth or has_normal_map, sharp_angle=None if has_normal_map else sharp_angle
    )
    if material is not None:
        mesh.materials.append(material_from_result(name, material))
    obj = bpy.data.objects.new(name, mesh)
    result_collection(scene).objects.link(obj)
    obj.matrix_world = matrix_world
    return obj
