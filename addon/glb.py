"""Minimal GLB (binary glTF 2.0) writer and reader for meshes with UVs, colours and textures; stdlib only.

This module is the one place where axes convert. Blender is Z-up, glTF is Y-up: a
Blender point ``(x, y, z)`` is the glTF point ``(x, z, -y)``, and back, glTF ``(X, Y, Z)``
is Blender ``(X, -Z, Y)``. Both are rotations, so triangle winding is kept. Everything
outside this module (the add-on's Blender side) sees Blender axes only; everything in the
GLB bytes (what the backend sees) is glTF axes.

Arrays are flat ``array.array``: positions and normals ``'f'`` of length ``3 n``, triangle
indices unsigned 32-bit of length ``3 m`` — the shapes Blender's ``foreach_get``/``foreach_set``
use, so no numpy is needed.

Beyond triangles (the result format of ``backend/mesh/gltf.py``):

- UVs (``TEXCOORD_0``): glTF puts the texture origin at the top-left, Blender at the
  bottom-left; here too the conversion happens once: ``v_blender = 1 - v_gltf``.
- Polygons: glTF stores triangles only, so quads travel in the ``MESHSMITH_polygons``
  extension of a primitive, ``{"faceSizes": accessor}``: one UNSIGNED_BYTE (3 or 4) per
  polygon, the triangles listed polygon by polygon, a quad ``(a, b, c, d)`` as the two
  triangles ``(a, b, c), (a, c, d)``. Readers that do not know it see the triangles.
- Vertex colours (``COLOR_0``): linear RGBA floats, as the glTF spec defines them (Blender's
  own glTF exporter writes them so too).
- Material: ``pbrMetallicRoughness.baseColorTexture`` (sRGB) and ``normalTexture``
  (tangent space, +Y up: OpenGL's and Blender's convention), images stored in the binary chunk.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

_MAGIC = b"glTF"
_VERSION = 2
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_HEADER = struct.Struct("<4sII")
_CHUNK_HEADER = struct.Struct("<II")

#: Typecode of an unsigned 32-bit integer array on this platform.
U32 = "I" if array("I").itemsize == 4 else "L"

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
#: componentType -> (array typecode, byte size) for the types this reader accepts.
_COMPONENTS = {
    5120: ("b", 1),
    _UBYTE: ("B", 1),
    5122: ("h", 2),
    _USHORT: ("H", 2),
    _UINT: (U32, 4),
    _FLOAT: ("f", 4),
}
_TYPE_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_MODE_TRIANGLES, _MODE_STRIP, _MODE_FAN = 4, 5, 6
#: Name of the glTF extension that carries polygon sizes (see the module docstring).
POLYGONS_EXTENSION = "MESHSMITH_polygons"
#: Divisors of normalized integer components (glTF 2.0, "Accessor data types").
_NORMALIZED = {"B": 255.0, "H": 65535.0, "b": 127.0, "h": 32767.0}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_BIG_ENDIAN = sys.byteorder == "big"

Matrix = tuple[tuple[float, float, float, float], ...]  # row-major 4x4
_IDENTITY: Matrix = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))


@dataclass(frozen=True)
class Texture:
    """An encoded image as stored in the GLB: ``data`` is the PNG or JPEG file's bytes."""

    data: bytes
    mime_type: str


@dataclass
class Material:
    """The parts of a glTF PBR material that Meshsmith uses (glTF's defaults where absent)."""

    name: str = ""
    base_color: Texture | None = None
    normal: Texture | None = None
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic: float = 1.0
    roughness: float = 1.0
    normal_scale: float = 1.0


@dataclass
class TriangleMesh:
    """A triangle mesh in Blender axes, with optional polygons, UVs, colours and a material.

    Attributes
    ----------
    positions : array('f'), length 3 n
    indices : array(U32), length 3 m, indices into ``positions`` (as vertices)
    normals : array('f') of length 3 n, or None
    face_sizes : array('B') of length k, or None
        Polygon sizes (3 or 4); ``indices`` lists each polygon's triangles in order, a quad
        ``(a, b, c, d)`` as ``(a, b, c), (a, c, d)``. None: every triangle is a face.
    uvs : array('f') of length 2 n, or None
        Per-vertex texture coordinates, Blender's convention (origin at the bottom-left).
    colors : array('f') of length 4 n, or None
        Per-vertex linear RGBA.
    material : Material or None
    warnings : list of str
        What the reader could not use and how it carried on (e.g. polygon sizes that do not
        fit the triangles: those triangles are imported as triangles).
    vertex_ids : array(U32) of length n, or None
        ``MESHSMITH_polygons`` ``vertexIds``: vertices that are copies of one vertex share an
        id (see :func:`addon.corners.weld`). None when any primitive lacks them.
    """

    positions: array
    indices: array
    normals: array | None = None
    face_sizes: array | None = None
    uvs: array | None = None
    colors: array | None = None
    material: Material | None = None
    warnings: list[str] = field(default_factory=list)
    vertex_ids: array | None = None

    @property
    def vertex_count(self) -> int:
        return len(self.positions) // 3

    @property
    def triangle_count(self) -> int:
        return len(self.indices) // 3

    @property
    def polygon_count(self) -> int:
        return self.triangle_count if self.face_sizes is None else len(self.face_sizes)

    def polygons(self) -> tuple[array, array]:
        """The faces as Blender wants them: ``(loop_starts, corners)``.

        ``loop_starts`` (array('i'), one per polygon) indexes ``corners`` (array(U32), vertex
        indices, 3 or 4 per polygon). Quads are rebuilt from their two triangles.
        """
        if self.face_sizes is None:
            return array("i", range(0, len(self.indices), 3)), array(U32, self.indices)
        tri = self.indices
        starts = array("i", bytes(4 * len(self.face_sizes)))
        corners = array(U32)
        t = 0
        for p, size in enumerate(self.face_sizes):
            starts[p] = len(corners)
            if size == 3:
                corners.extend(tri[t : t + 3])
                t += 3
            else:
                corners.extend((tri[t], tri[t + 1], tri[t + 2], tri[t + 5]))
                t += 6
        return starts, corners


# -- axes -------------------------------------------------------------------------------------


def blender_to_gltf(values: Sequence[float]) -> array:
    """Flat Blender ``(x, y, z)`` triples -> flat glTF ``(x, z, -y)`` triples, float32."""
    src = values if isinstance(values, array) and values.typecode == "f" else array("f", values)
    out = array("f", bytes(4 * len(src)))
    out[0::3] = src[0::3]
    out[1::3] = src[2::3]
    out[2::3] = array("f", [-v for v in src[1::3]])
    return out


def gltf_to_blender(values: Sequence[float]) -> array:
    """Flat glTF ``(X, Y, Z)`` triples -> flat Blender ``(X, -Z, Y)`` triples, float32."""
    src = values if isinstance(values, array) and values.typecode == "f" else array("f", values)
    out = array("f", bytes(4 * len(src)))
    out[0::3] = src[0::3]
    out[1::3] = array("f", [-v for v in src[2::3]])
    out[2::3] = src[1::3]
    return out


# -- writing ----------------------------------------------------------------------------------


def _little_endian_bytes(values: array) -> bytes:
    if _BIG_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def quads_and_triangles(loop_totals: Sequence[int], loop_vertices: Sequence[int], triangles: Sequence[int],
                        triangle_polygons: Sequence[int]) -> tuple[array, array]:
    """Triangles laid out for ``MESHSMITH_polygons``: quads kept, every other polygon as Blender triangulates it.

    Parameters
    ----------
    loop_totals : int sequence, one per polygon
        Corners per polygon (Blender's ``MeshPolygon.loop_total``), polygons in order.
    loop_vertices : int sequence, one per corner
        The vertex of every corner, polygon after polygon (``MeshLoop.vertex_index``).
    triangles, triangle_polygons : int sequences, 3 per triangle and 1 per triangle
        Blender's loop triangles (vertex indices) and the polygon each belongs to.

    Returns
    -------
    indices : array(U32)
        A quad ``(a, b, c, d)`` as ``(a, b, c), (a, c, d)``; a triangle as itself; an n-gon
        as Blender's own triangles of it (concave ones included), each its own face.
    face_sizes : array('B')
        3 or 4 per face of ``indices``.
    """
    by_polygon: dict[int, list[int]] = {}
    for t, polygon in enumerate(triangle_polygons):
        if loop_totals[polygon] > 4:
            by_polygon.setdefault(polygon, []).extend(triangles[3 * t : 3 * t + 3])
    indices = array(U32)
    sizes = array("B")
    corner = 0
    for polygon, total in enumerate(loop_totals):
        if total == 4:
            a, b, c, d = loop_vertices[corner : corner + 4]
            indices.extend((a, b, c, a, c, d))
            sizes.append(4)
        elif total == 3:
            indices.extend(tuple(loop_vertices[corner : corner + 3]))
            sizes.append(3)
        else:
            fan = by_polygon.get(polygon, [])
            indices.extend(fan)
            sizes.extend(array("B", b"\x03" * (len(fan) // 3)))
        corner += total
    return indices, sizes


def write_glb(
    positions: Sequence[float],
    indices: Sequence[int],
    normals: Sequence[float] | None = None,
    *,
    name: str = "mesh",
    uvs: Sequence[float] | None = None,
    colors: Sequence[float] | None = None,
    base_color: bytes | None = None,
    face_sizes: Sequence[int] | None = None,
    vertex_ids: Sequence[int] | None = None,
) -> bytes:
    """Encode one triangle mesh, given in Blender axes, as GLB bytes (glTF axes inside).

    Parameters
    ----------
    positions : flat float sequence, length 3 n
        Vertex coordinates in Blender axes.
    indices : flat int sequence, length 3 m
        Counter-clockwise triangles (Blender's and glTF's front face), indices into the vertices.
    normals : flat float sequence, length 3 n, optional
        Unit vertex normals in Blender axes.
    name
        Name of the glTF mesh, node and material.
    uvs : flat float sequence, length 2 n, optional
        Per-vertex UVs in Blender's convention (bottom-left origin); written as ``TEXCOORD_0``.
    colors : flat float sequence, length 4 n, optional
        Per-vertex linear RGBA; written as ``COLOR_0``.
    base_color : bytes, optional
        A PNG image: the base colour texture of the mesh's material (needs ``uvs``).
    face_sizes : int sequence of 3 and 4, optional
        Polygons, written as ``MESHSMITH_polygons``: ``indices`` lists each polygon's triangles
        in order, a quad ``(a, b, c, d)`` as ``(a, b, c), (a, c, d)`` (see :func:`quads_and_triangles`).
    vertex_ids : int sequence, one per vertex, optional
        Written as ``MESHSMITH_polygons`` ``vertexIds``: vertices that copy one vertex (split
        along UV seams) share an id.

    Raises
    ------
    ValueError
        Lengths not multiples of 3, no triangles, an index out of range, a non-finite
        coordinate, attribute lengths that do not match the vertices, or a texture that is not PNG.
    """
    if len(positions) % 3:
        raise ValueError(f"positions must hold x, y, z triples; got {len(positions)} values")
    if len(indices) % 3:
        raise ValueError(f"indices must hold triangles (3 per face); got {len(indices)} values")
    vertex_count = len(positions) // 3
    if vertex_count == 0 or not indices:
        raise ValueError(f"a mesh needs vertices and triangles; got {vertex_count} vertices, {len(indices) // 3} triangles")
    index_array = indices if isinstance(indices, array) and indices.typecode == U32 else array(U32, indices)
    if max(index_array) >= vertex_count:
        raise ValueError(f"indices reach {max(index_array)} but there are only {vertex_count} vertices")
    gl_positions = blender_to_gltf(positions)
    if not all(map(math.isfinite, gl_positions)):
        raise ValueError("positions contain NaN or infinite coordinates")
    for label, values, width in (("normals", normals, 3), ("uvs", uvs, 2), ("colors", colors, 4), ("vertex_ids", vertex_ids, 1)):
        if values is not None and len(values) != width * vertex_count:
            raise ValueError(f"{label} must hold {width} values per vertex ({width * vertex_count}); got {len(values)}")
    if face_sizes is not None:
        if any(size not in (3, 4) for size in face_sizes):
            raise ValueError("face_sizes may only hold 3 and 4")
        if sum(size - 2 for size in face_sizes) != len(indices) // 3:
            raise ValueError(f"face_sizes describe {sum(size - 2 for size in face_sizes)} triangles, indices hold {len(indices) // 3}")
    if base_color is not None:
        if uvs is None:
            raise ValueError("base_color needs uvs: a texture cannot be placed on a mesh without UVs")
        if base_color[:8] != _PNG_SIGNATURE:
            raise ValueError("base_color must be PNG bytes")

    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add_view(data: bytes, target: int | None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(_pad(data, b"\x00"))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    def add(data: bytes, target: int, accessor: dict) -> int:
        accessors.append({"bufferView": add_view(data, target), **accessor})
        return len(accessors) - 1

    # glTF requires min/max on POSITION; they are taken from the float32 values as stored.
    lows = [min(gl_positions[axis::3]) for axis in range(3)]
    highs = [max(gl_positions[axis::3]) for axis in range(3)]
    attributes = {
        "POSITION": add(
            _little_endian_bytes(gl_positions),
            _ARRAY_BUFFER,
            {"componentType": _FLOAT, "count": vertex_count, "type": "VEC3", "min": lows, "max": highs},
        )
    }
    if normals is not None:
        attributes["NORMAL"] = add(
            _little_endian_bytes(blender_to_gltf(normals)),
            _ARRAY_BUFFER,
            {"componentType": _FLOAT, "count": vertex_count, "type": "VEC3"},
        )
    if uvs is not None:
        gl_uvs = array("f", uvs)
        gl_uvs[1::2] = array("f", [1.0 - v for v in gl_uvs[1::2]])
        if not all(map(math.isfinite, gl_uvs)):
            raise ValueError("uvs contain NaN or infinite values")
        attributes["TEXCOORD_0"] = add(
            _little_endian_bytes(gl_uvs), _ARRAY_BUFFER, {"componentType": _FLOAT, "count": vertex_count, "type": "VEC2"}
        )
    if colors is not None:
        gl_colors = array("f", colors)
        if not all(map(math.isfinite, gl_colors)):
            raise ValueError("colors contain NaN or infinite values")
        attributes["COLOR_0"] = add(
            _little_endian_bytes(gl_colors), _ARRAY_BUFFER, {"componentType": _FLOAT, "count": vertex_count, "type": "VEC4"}
        )
    index_accessor = add(
        _little_endian_bytes(index_array),
        _ELEMENT_ARRAY_BUFFER,
        {"componentType": _UINT, "count": len(index_array), "type": "SCALAR"},
    )
    primitive: dict = {"attributes": attributes, "indices": index_accessor, "mode": _MODE_TRIANGLES}
    document: dict = {"asset": {"version": "2.0", "generator": "Meshsmith Blender add-on"}}
    extension: dict = {}
    if face_sizes is not None and any(size == 4 for size in face_sizes):
        sizes = add_view(bytes(array("B", face_sizes)), None)
        accessors.append({"bufferView": sizes, "componentType": _UBYTE, "count": len(face_sizes), "type": "SCALAR"})
        extension["faceSizes"] = len(accessors) - 1
    if vertex_ids is not None:
        ids = add_view(_little_endian_bytes(array(U32, vertex_ids)), None)
        accessors.append({"bufferView": ids, "componentType": _UINT, "count": vertex_count, "type": "SCALAR"})
        extension["vertexIds"] = len(accessors) - 1
    if extension:
        primitive["extensions"] = {POLYGONS_EXTENSION: extension}
        document["extensionsUsed"] = [POLYGONS_EXTENSION]
    if base_color is not None:
        document["images"] = [{"bufferView": add_view(base_color, None), "mimeType": "image/png"}]
        document["samplers"] = [{"magFilter": 9729, "minFilter": 9987}]  # linear, mipmapped; repeat
        document["textures"] = [{"source": 0, "sampler": 0}]
        document["materials"] = [
            {
                "name": name,
                "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0},
            }
        ]
        primitive["material"] = 0
    binary = b"".join(blobs)
    document.update(
        scene=0,
        scenes=[{"nodes": [0]}],
        nodes=[{"mesh": 0, "name": name}],
        meshes=[{"name": name, "primitives": [primitive]}],
        accessors=accessors,
        bufferViews=views,
        buffers=[{"byteLength": len(binary)}],
    )
    json_chunk = _pad(json.dumps(document, separators=(",", ":")).encode("utf-8"), b" ")
    total = _HEADER.size + 2 * _CHUNK_HEADER.size + len(json_chunk) + len(binary)
    return b"".join(
        (
            _HEADER.pack(_MAGIC, _VERSION, total),
            _CHUNK_HEADER.pack(len(json_chunk), _CHUNK_JSON),
            json_chunk,
            _CHUNK_HEADER.pack(len(binary), _CHUNK_BIN),
            binary,
        )
    )


# -- reading ----------------------------------------------------------------------------------


def _split_chunks(data: bytes) -> tuple[dict, bytes]:
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        raise ValueError("data is not a GLB file (it does not start with 'glTF')")
    _, version, length = _HEADER.unpack_from(data, 0)
    if version != _VERSION:
        raise ValueError(f"GLB version {version} is not supported; only glTF 2.0 is")
    if length > len(data):
        raise ValueError(f"GLB is truncated: its header says {length} bytes, got {len(data)}")
    offset = _HEADER.size
    document: dict | None = None
    binary = b""
    while offset + _CHUNK_HEADER.size <= length:
        chunk_length, chunk_type = _CHUNK_HEADER.unpack_from(data, offset)
        offset += _CHUNK_HEADER.size
        chunk = data[offset : offset + chunk_length]
        if len(chunk) != chunk_length:
            raise ValueError("GLB is truncated inside a chunk")
        offset += chunk_length
        if chunk_type == _CHUNK_JSON and document is None:
            try:
                document = json.loads(chunk.decode("utf-8"))
            except ValueError as exc:
                raise ValueError(f"GLB JSON chunk is not valid JSON: {exc}") from exc
        elif chunk_type == _CHUNK_BIN and not binary:
            binary = chunk
        # Other chunk types must be ignored (glTF 2.0, "Chunks").
    if not isinstance(document, dict):
        raise ValueError("GLB has no JSON chunk")
    return document, binary


def _read_accessor(document: dict, binary: bytes, index: int) -> tuple[array, int]:
    """The accessor's values as a flat array and the number of components per element."""
    try:
        accessor = document["accessors"][index]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"accessor {index} does not exist") from None
    if "sparse" in accessor:
        raise ValueError(f"accessor {index} is sparse, which this reader does not support")
    component = _COMPONENTS.get(accessor.get("componentType"))
    width = _TYPE_WIDTH.get(accessor.get("type"))
    if component is None or width is None:
        raise ValueError(f"accessor {index} has unsupported componentType/type {accessor.get('componentType')}/{accessor.get('type')}")
    typecode, size = component
    count = int(accessor.get("count", 0))
    if "bufferView" not in accessor:
        return array(typecode, bytes(size * width * count)), width  # all zeros, per the spec
    view = document["bufferViews"][accessor["bufferView"]]
    buffer = document["buffers"][view.get("buffer", 0)]
    if view.get("buffer", 0) != 0 or "uri" in buffer:
        raise ValueError("the GLB refers to an external buffer; only self-contained GLB files are supported")
    element = size * width
    stride = view.get("byteStride") or element
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    end = start + stride * (count - 1) + element if count else start
    view_end = view.get("byteOffset", 0) + view["byteLength"]
    if end > view_end or view_end > len(binary):
        raise ValueError(f"accessor {index} reaches past the end of its buffer")
    values = array(typecode)
    if stride == element:
        values.frombytes(binary[start : start + element * count])
    else:
        for i in range(count):
            values.frombytes(binary[start + i * stride : start + i * stride + element])
    if _BIG_ENDIAN and size > 1:
        values.byteswap()
    return values, width


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return tuple(tuple(sum(a[r][k] * b[k][c] for k in range(4)) for c in range(4)) for r in range(4))  # type: ignore[return-value]


def node_matrix(node: dict) -> Matrix:
    """A node's local transform, from ``matrix`` (column-major) or ``translation/rotation/scale``."""
    if "matrix" in node:
        m = [float(v) for v in node["matrix"]]
        if len(m) != 16:
            raise ValueError(f"node matrix must have 16 values, got {len(m)}")
        return tuple(tuple(m[c * 4 + r] for c in range(4)) for r in range(4))  # type: ignore[return-value]
    tx, ty, tz = (float(v) for v in node.get("translation", (0.0, 0.0, 0.0)))
    x, y, z, w = (float(v) for v in node.get("rotation", (0.0, 0.0, 0.0, 1.0)))
    sx, sy, sz = (float(v) for v in node.get("scale", (1.0, 1.0, 1.0)))
    norm = math.sqrt(x * x + y * y + z * z + w * w) or 1.0
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    rotation = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )
    scale = (sx, sy, sz)
    translation = (tx, ty, tz)
    return tuple(  # type: ignore[return-value]
        tuple(rotation[r][c] * scale[c] for c in range(3)) + (translation[r],) for r in range(3)
    ) + ((0.0, 0.0, 0.0, 1.0),)


def _mesh_instances(document: dict) -> Iterator[tuple[int, Matrix]]:
    """(mesh index, world matrix) for every node that shows a mesh in the default scene."""
    nodes = document.get("nodes") or []
    scenes = document.get("scenes") or []
    if scenes:
        roots = scenes[document.get("scene", 0)].get("nodes", [])
    elif nodes:
        children = {child for node in nodes for child in node.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    else:
        # No node graph at all: show every mesh untransformed rather than nothing.
        yield from ((i, _IDENTITY) for i in range(len(document.get("meshes") or [])))
        return
    stack: list[tuple[int, Matrix, frozenset[int]]] = [(root, _IDENTITY, frozenset()) for root in reversed(roots)]
    while stack:
        index, parent, ancestors = stack.pop()
        if index in ancestors:
            raise ValueError(f"node {index} is its own ancestor; the node graph must be a tree")
        node = nodes[index]
        world = _matmul(parent, node_matrix(node))
        if "mesh" in node:
            yield node["mesh"], world
        for child in reversed(node.get("children", [])):
            stack.append((child, world, ancestors | {index}))


def _triangles(indices: array, mode: int) -> array:
    if mode == _MODE_TRIANGLES:
        return array(U32, indices[: len(indices) - len(indices) % 3])
    out = array(U32)
    if mode == _MODE_STRIP:
        for i in range(len(indices) - 2):
            # Odd triangles of a strip swap their first two vertices to keep the winding.
            a, b = (i, i + 1) if i % 2 == 0 else (i + 1, i)
            out.extend((indices[a], indices[b], indices[i + 2]))
    elif mode == _MODE_FAN:
        for i in range(1, len(indices) - 1):
            out.extend((indices[i], indices[i + 1], indices[0]))
    return out


def _transform_points(values: array, m: Matrix) -> array:
    if m == _IDENTITY:
        return values
    out = array("f", values)
    (a, b, c, d), (e, f, g, h), (i, j, k, l) = m[0], m[1], m[2]
    for n in range(0, len(values), 3):
        x, y, z = values[n], values[n + 1], values[n + 2]
        out[n] = a * x + b * y + c * z + d
        out[n + 1] = e * x + f * y + g * z + h
        out[n + 2] = i * x + j * y + k * z + l
    return out


def _determinant3(m: Matrix) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def _transform_normals(values: array, m: Matrix) -> array:
    if m == _IDENTITY:
        return values
    # Normals transform by the inverse transpose; the cofactor matrix is that times det,
    # so only det's sign matters before renormalizing.
    sign = 1.0 if _determinant3(m) >= 0 else -1.0
    cof = [[0.0] * 3 for _ in range(3)]
    for r in range(3):
        for c in range(3):
            r1, r2 = [x for x in range(3) if x != r]
            c1, c2 = [x for x in range(3) if x != c]
            minor = m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
            cof[r][c] = sign * (-minor if (r + c) % 2 else minor)
    out = array("f", values)
    for n in range(0, len(values), 3):
        x, y, z = values[n], values[n + 1], values[n + 2]
        nx = cof[0][0] * x + cof[0][1] * y + cof[0][2] * z
        ny = cof[1][0] * x + cof[1][1] * y + cof[1][2] * z
        nz = cof[2][0] * x + cof[2][1] * y + cof[2][2] * z
        length = math.sqrt(nx * nx + ny * ny + nz * nz) or 1.0
        out[n], out[n + 1], out[n + 2] = nx / length, ny / length, nz / length
    return out


def _read_floats(document: dict, binary: bytes, index: int, widths: tuple[int, ...], what: str) -> tuple[array, int]:
    """An accessor as floats: FLOAT as is, normalized integers divided to [0, 1] (or [-1, 1])."""
    values, width = _read_accessor(document, binary, index)
    if width not in widths:
        raise ValueError(f"{what} must have {' or '.join(map(str, widths))} components, accessor {index} has {width}")
    if values.typecode == "f":
        return values, width
    accessor = document["accessors"][index]
    divisor = _NORMALIZED.get(values.typecode)
    if divisor is None or not accessor.get("normalized", False):
        raise ValueError(f"{what} must be floats or normalized 8/16-bit integers (accessor {index})")
    return array("f", (max(v / divisor, -1.0) for v in values)), width


def _polygon_sizes(document: dict, binary: bytes, primitive: dict, faces: array, mesh_index: int
                   ) -> tuple[array | None, str | None]:
    """The primitive's ``MESHSMITH_polygons`` sizes, checked against its triangles.

    Returns ``(sizes, None)``, ``(None, None)`` when the extension is absent, or ``(None, why)``
    when it does not describe these triangles: the triangles are still a good mesh, so the
    caller imports them as triangles and passes the warning on rather than losing the result.
    """
    extension = (primitive.get("extensions") or {}).get(POLYGONS_EXTENSION)
    if extension is None:
        return None, None
    try:
        return _checked_polygon_sizes(document, binary, extension, faces, mesh_index), None
    except ValueError as exc:
        return None, f"{exc}; imported as triangles"


def _vertex_ids(document: dict, binary: bytes, primitive: dict, count: int) -> array | None:
    """The primitive's ``MESHSMITH_polygons`` vertex ids, one per vertex; None when absent or unusable."""
    extension = (primitive.get("extensions") or {}).get(POLYGONS_EXTENSION)
    if not isinstance(extension, dict) or "vertexIds" not in extension:
        return None
    try:
        raw, width = _read_accessor(document, binary, extension["vertexIds"])
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if width != 1 or raw.typecode not in ("B", "H", U32) or len(raw) != count:
        return None
    return array(U32, raw)


def _checked_polygon_sizes(document: dict, binary: bytes, extension, faces: array, mesh_index: int) -> array:
    if not isinstance(extension, dict) or "faceSizes" not in extension:
        raise ValueError(f"mesh {mesh_index}: the {POLYGONS_EXTENSION} extension has no faceSizes accessor")
    raw, width = _read_accessor(document, binary, extension["faceSizes"])
    if width != 1 or raw.typecode not in ("B", "H", U32):
        raise ValueError(f"mesh {mesh_index}: {POLYGONS_EXTENSION} faceSizes must be unsigned integer scalars")
    if any(size not in (3, 4) for size in raw):
        raise ValueError(f"mesh {mesh_index}: {POLYGONS_EXTENSION} faceSizes may only be 3 or 4")
    sizes = array("B", raw)
    needed = sum(1 if size == 3 else 2 for size in sizes)
    if 3 * needed != len(faces):
        raise ValueError(
            f"mesh {mesh_index}: {POLYGONS_EXTENSION} lists polygons for {needed} triangles, the primitive has {len(faces) // 3}"
        )
    t = 0
    for p, size in enumerate(sizes):
        if size == 4 and (faces[t + 3] != faces[t] or faces[t + 4] != faces[t + 2]):
            raise ValueError(
                f"mesh {mesh_index}: polygon {p} is marked a quad but its triangles are not (a, b, c), (a, c, d)"
            )
        t += 3 * (size - 2)
    return sizes


def _reverse_faces(faces: array, sizes: array | None) -> array:
    """Flip the winding of every face, keeping quads in the (a, b, c), (a, c, d) layout."""
    out = array(U32, faces)
    if sizes is None:
        out[0::3], out[1::3] = faces[1::3], faces[0::3]
        return out
    t = 0
    for size in sizes:
        if size == 3:
            out[t], out[t + 1] = faces[t + 1], faces[t]
            t += 3
        else:
            a, b, c, d = faces[t], faces[t + 1], faces[t + 2], faces[t + 5]
            out[t : t + 6] = array(U32, (a, d, c, a, c, b))  # the quad (a, d, c, b)
            t += 6
    return out


def _sniff_image(data: bytes) -> str:
    if data[:8] == _PNG_SIGNATURE:
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    raise ValueError("a texture image is neither PNG nor JPEG")


def _read_texture(document: dict, binary: bytes, info: object) -> Texture | None:
    """The image of a ``textureInfo`` (``{"index": ...}``); None when absent."""
    if not isinstance(info, dict) or "index" not in info:
        return None
    try:
        texture = document["textures"][info["index"]]
        source = texture.get("source")
        if source is None:
            return None
        image = document["images"][source]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"texture {info.get('index')} or its image does not exist") from None
    if "bufferView" in image:
        view = document["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        data = binary[start : start + view["byteLength"]]
        if len(data) != view["byteLength"]:
            raise ValueError(f"image {source} reaches past the end of the binary chunk")
    elif str(image.get("uri", "")).startswith("data:"):
        try:
            data = base64.b64decode(image["uri"].split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error) as exc:
            raise ValueError(f"image {source} has a malformed data: URI") from exc
    else:
        raise ValueError(f"image {source} is an external file; only self-contained GLB files are supported")
    return Texture(data=data, mime_type=_sniff_image(data))


def _read_material(document: dict, binary: bytes, index: int) -> Material:
    try:
        entry = document["materials"][index]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"material {index} does not exist") from None
    pbr = entry.get("pbrMetallicRoughness") or {}
    normal_info = entry.get("normalTexture")
    factor = pbr.get("baseColorFactor", (1.0, 1.0, 1.0, 1.0))
    return Material(
        name=str(entry.get("name", "")),
        base_color=_read_texture(document, binary, pbr.get("baseColorTexture")),
        normal=_read_texture(document, binary, normal_info),
        base_color_factor=tuple(float(v) for v in factor) if len(factor) == 4 else (1.0, 1.0, 1.0, 1.0),  # type: ignore[arg-type]
        metallic=float(pbr.get("metallicFactor", 1.0)),
        roughness=float(pbr.get("roughnessFactor", 1.0)),
        normal_scale=float(normal_info.get("scale", 1.0)) if isinstance(normal_info, dict) else 1.0,
    )


def read_glb(data: bytes) -> TriangleMesh:
    """Decode every triangle primitive of a GLB's default scene into one mesh in Blender axes.

    Node transforms (``matrix`` or TRS, through the whole hierarchy) are applied; a mirroring
    transform flips triangle winding back, as the glTF spec asks. Triangle strips and fans are
    converted; points and lines are skipped. Normals, UVs (``TEXCOORD_0``) and colours
    (``COLOR_0``) are returned only when every primitive has them; polygon sizes
    (``MESHSMITH_polygons``) when any primitive has them (the others count as triangles).
    The material is the first one a primitive uses.

    Raises
    ------
    ValueError
        Not a GLB, truncated, external buffers or images, required extensions, bad indices,
        or no triangles. Polygon sizes that do not match the triangles are not an error: those
        triangles come as triangles, with a line in ``warnings``.
    """
    document, binary = _split_chunks(data)
    required = document.get("extensionsRequired") or []
    if required:
        raise ValueError(f"the GLB requires extensions this reader does not support: {', '.join(required)}")
    meshes = document.get("meshes") or []
    positions = array("f")
    indices = array(U32)
    normals: array | None = array("f")
    uvs: array | None = array("f")
    colors: array | None = array("f")
    face_sizes = array("B")
    any_polygons = False
    material: Material | None = None
    warnings: list[str] = []
    vertex_ids: array | None = array(U32)
    for mesh_index, world in _mesh_instances(document):
        for primitive in meshes[mesh_index].get("primitives", []):
            mode = primitive.get("mode", _MODE_TRIANGLES)
            if mode not in (_MODE_TRIANGLES, _MODE_STRIP, _MODE_FAN):
                continue
            attributes = primitive.get("attributes", {})
            if "POSITION" not in attributes:
                raise ValueError(f"a primitive of mesh {mesh_index} has no POSITION attribute")
            local, width = _read_accessor(document, binary, attributes["POSITION"])
            if width != 3 or local.typecode != "f":
                raise ValueError(f"mesh {mesh_index} positions must be float VEC3")
            count = len(local) // 3
            if "indices" in primitive:
                raw, width = _read_accessor(document, binary, primitive["indices"])
                if width != 1 or raw.typecode not in ("B", "H", U32):
                    raise ValueError(f"mesh {mesh_index} indices must be unsigned integer scalars")
            else:
                raw = array(U32, range(count))
            faces = _triangles(raw, mode)
            if faces and max(faces) >= count:
                raise ValueError(f"mesh {mesh_index} has an index {max(faces)} past its {count} vertices")
            sizes, warning = (_polygon_sizes(document, binary, primitive, faces, mesh_index)
                              if mode == _MODE_TRIANGLES else (None, None))
            if warning:
                warnings.append(warning)
            if _determinant3(world) < 0:
                faces = _reverse_faces(faces, sizes)
            any_polygons = any_polygons or sizes is not None
            face_sizes.extend(sizes if sizes is not None else array("B", b"\x03" * (len(faces) // 3)))
            offset = len(positions) // 3
            if vertex_ids is not None:
                ids = _vertex_ids(document, binary, primitive, count) if mode == _MODE_TRIANGLES else None
                if ids is None:
                    vertex_ids = None
                else:
                    # Ids of different primitives never meet: shift them past the ones before.
                    shift = max(vertex_ids) + 1 if vertex_ids else 0
                    vertex_ids.extend(array(U32, (i + shift for i in ids)) if shift else ids)
            positions.extend(_transform_points(local, world))
            indices.extend(array(U32, (i + offset for i in faces)) if offset else faces)
            if normals is not None and "NORMAL" in attributes:
                local_normals, width = _read_accessor(document, binary, attributes["NORMAL"])
                if width != 3 or local_normals.typecode != "f" or len(local_normals) != len(local):
                    normals = None
                else:
                    normals.extend(_transform_normals(local_normals, world))
            else:
                normals = None
            if uvs is not None and "TEXCOORD_0" in attributes:
                texcoords, _ = _read_floats(document, binary, attributes["TEXCOORD_0"], (2,), f"mesh {mesh_index} TEXCOORD_0")
                if len(texcoords) != 2 * count:
                    raise ValueError(f"mesh {mesh_index} TEXCOORD_0 has {len(texcoords) // 2} entries for {count} vertices")
                texcoords[1::2] = array("f", [1.0 - v for v in texcoords[1::2]])
                uvs.extend(texcoords)
            else:
                uvs = None
            if colors is not None and "COLOR_0" in attributes:
                rgba, width = _read_floats(document, binary, attributes["COLOR_0"], (3, 4), f"mesh {mesh_index} COLOR_0")
                if len(rgba) != width * count:
                    raise ValueError(f"mesh {mesh_index} COLOR_0 has {len(rgba) // width} entries for {count} vertices")
                if width == 3:
                    padded = array("f", [1.0]) * (4 * count)
                    for channel in range(3):
                        padded[channel::4] = rgba[channel::3]
                    rgba = padded
                colors.extend(rgba)
            else:
                colors = None
            if material is None and "material" in primitive:
                material = _read_material(document, binary, primitive["material"])
    if not indices:
        raise ValueError("the GLB contains no triangles")
    return TriangleMesh(
        positions=gltf_to_blender(positions),
        indices=indices,
        normals=gltf_to_blender(normals) if normals is not None else None,
        face_sizes=face_sizes if any_polygons else None,
        uvs=uvs,
        colors=colors,
        material=material,
        warnings=warnings,
        vertex_ids=vertex_ids if vertex_ids else None,
    )
