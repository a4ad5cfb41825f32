"""GLB writing for results: triangles, optional polygons (quads), UVs and a PBR material.

The job API returns every result as GLB. glTF stores triangles only, so polygons travel in
a small extension the Meshsmith add-on reads (other glTF readers ignore it and see the
triangles):

``MESHSMITH_polygons`` on the primitive: ``{"faceSizes": <accessor>}``, an UNSIGNED_BYTE
SCALAR accessor with one entry (3 or 4) per polygon. The primitive's triangles are listed
polygon by polygon; a quad ``(a, b, c, d)`` is the two triangles ``(a, b, c), (a, c, d)``.
Optionally ``"vertexIds": <accessor>``, UNSIGNED_INT SCALAR, one per vertex: vertices that
are copies of one vertex (split along UV seams or hard edges) share an id; the add-on welds
by it (distinct vertices at one position stay distinct).
It is named in ``extensionsUsed``, not in ``extensionsRequired``.

Coordinates are written as the backend holds them (glTF axes, +Y up: the add-on converts
from Blender's axes before upload). UVs are held with the origin at the bottom-left (as
Blender and OpenGL use them) and written with glTF's top-left origin: ``v_gltf = 1 - v``.
The material is ``pbrMetallicRoughness`` with an optional ``baseColorTexture`` and an
optional tangent-space ``normalTexture`` (glTF's convention: +Y up, MikkTSpace tangents,
which is also Blender's), both PNG images stored in the binary chunk. Per-vertex normals,
when the mesh carries them (results with a normal map do: the map is baked against them),
are written as ``NORMAL``; without them glTF readers shade flat.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from backend.mesh.types import Mesh

POLYGONS_EXTENSION = "MESHSMITH_polygons"

_MAGIC, _VERSION = b"glTF", 2
_CHUNK_JSON, _CHUNK_BIN = 0x4E4F534A, 0x004E4942
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_MODE_TRIANGLES = 4


def polygon_triangles(polygons: list[list[int]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (m, 3) int64 and face sizes (k,) uint8 for polygons of 3 or 4 corners.

    ``polygons`` is a (k, 3) or (k, 4) array, or a list of index lists of length 3 or 4
    (mixed). Quads ``(a, b, c, d)`` become ``(a, b, c), (a, c, d)``, in polygon order.
    """
    if isinstance(polygons, np.ndarray):
        if polygons.ndim != 2 or polygons.shape[1] not in (3, 4):
            raise ValueError(f"polygons must have shape (k, 3) or (k, 4), got {polygons.shape}")
        rows = polygons.astype(np.int64)
        sizes = np.full(len(rows), rows.shape[1], dtype=np.uint8)
        if rows.shape[1] == 3:
            return rows, sizes
        tris = np.stack([rows[:, [0, 1, 2]], rows[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
        return tris, sizes
    sizes = np.array([len(p) for p in polygons], dtype=np.int64)
    if len(sizes) and not np.isin(sizes, (3, 4)).all():
        raise ValueError(f"polygons must have 3 or 4 corners, found sizes {sorted(set(sizes.tolist()) - {3, 4})}")
    tris = []
    for p in polygons:
        tris.append((p[0], p[1], p[2]))
        if len(p) == 4:
            tris.append((p[0], p[2], p[3]))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3), sizes.astype(np.uint8)


def polygons_of(mesh: "Mesh") -> list[np.ndarray]:
    """The mesh's polygons as index arrays: each triangle alone, or grouped by ``face_sizes``."""
    if mesh.face_sizes is None:
        return list(mesh.faces)
    out, t = [], 0
    for size in mesh.face_sizes.tolist():
        if size == 3:
            out.append(mesh.faces[t])
            t += 1
        else:
            a, b = mesh.faces[t], mesh.faces[t + 1]
            out.append(np.array([a[0], a[1], a[2], b[2]]))
            t += 2
    return out


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("material textures must be PNG images")
    return struct.unpack(">II", data[16:24])


def write_glb(mesh: "Mesh", *, name: str = "meshsmith") -> bytes:
    """Encode ``mesh`` (and its polygons, UVs and material, when present) as GLB bytes."""
    vertices = np.ascontiguousarray(mesh.vertices, dtype="<f4")
    faces = np.ascontiguousarray(mesh.faces, dtype="<u4")
    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def view(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\x00" * (-len(data) % 4))
        entry = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        views.append(entry)
        return len(views) - 1

    def accessor(data: np.ndarray, component: int, kind: str, target: int | None, **extra) -> int:
        accessors.append({"bufferView": view(data.tobytes(), target), "componentType": component,
                          "count": int(len(data)), "type": kind, **extra})
        return len(accessors) - 1

    attributes = {"POSITION": accessor(vertices, _FLOAT, "VEC3", _ARRAY_BUFFER,
                                       min=vertices.min(axis=0).tolist(), max=vertices.max(axis=0).tolist())}
    if mesh.normals is not None:
        attributes["NORMAL"] = accessor(np.ascontiguousarray(mesh.normals, dtype="<f4"), _FLOAT, "VEC3", _ARRAY_BUFFER)
    if mesh.uv is not None:
        uv = np.array(mesh.uv, dtype="<f4")
        uv[:, 1] = 1.0 - uv[:, 1]
        attributes["TEXCOORD_0"] = accessor(uv, _FLOAT, "VEC2", _ARRAY_BUFFER)
    primitive: dict = {"attributes": attributes, "mode": _MODE_TRIANGLES,
                       "indices": accessor(faces.reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER)}
    document: dict = {"asset": {"version": "2.0", "generator": "Meshsmith backend"}}
    if mesh.face_sizes is not None or mesh.vertex_ids is not None:
        sizes = (np.full(len(faces), 3, dtype=np.uint8) if mesh.face_sizes is None
                 else np.ascontiguousarray(mesh.face_sizes, dtype=np.uint8))
        extension = {"faceSizes": accessor(sizes, _UBYTE, "SCALAR", None)}
        if mesh.vertex_ids is not None:
            ids = np.ascontiguousarray(mesh.vertex_ids, dtype="<u4")
            if ids.shape != (len(vertices),):
                raise ValueError(f"vertex_ids must hold one id per vertex ({len(vertices)}), got shape {ids.shape}")
            extension["vertexIds"] = accessor(ids, _UINT, "SCALAR", None)
        primitive["extensions"] = {POLYGONS_EXTENSION: extension}
        document["extensionsUsed"] = [POLYGONS_EXTENSION]
    material = mesh.material
    if material is not None:
        images, textures = [], []

        def texture(png: bytes) -> dict:
            _png_size(png)
            images.append({"bufferView": view(png), "mimeType": "image/png"})
            textures.append({"source": len(images) - 1, "sampler": 0})
            return {"index": len(textures) - 1}

        pbr: dict = {"metallicFactor": material.metallic, "roughnessFactor": material.roughness}
        entry: dict = {"name": material.name, "pbrMetallicRoughness": pbr}
        if material.base_color is not None:
            pbr["baseColorTexture"] = texture(material.base_color)
        if material.normal is not None:
            entry["normalTexture"] = texture(material.normal)
        document.update(materials=[entry], images=images, textures=textures,
                        samplers=[{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}])
        primitive["material"] = 0
    binary = b"".join(blobs)
    document.update(scene=0, scenes=[{"nodes": [0]}], nodes=[{"mesh": 0, "name": name}],
                    meshes=[{"name": name, "primitives": [primitive]}], accessors=accessors, bufferViews=views,
                    buffers=[{"byteLength": len(binary)}])
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", _MAGIC, _VERSION, total), struct.pack("<II", len(text), _CHUNK_JSON), text,
                     struct.pack("<II", len(binary), _CHUNK_BIN), binary])


def write_obj(mesh: "Mesh") -> bytes:
    """Encode ``mesh`` as OBJ text, polygons kept (``f a b c d``), UVs as ``vt`` when present."""
    lines = ["# Meshsmith"]
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in np.asarray(mesh.vertices, dtype=np.float64).tolist()]
    has_uv = mesh.uv is not None
    if has_uv:
        lines += [f"vt {u:.7g} {v:.7g}" for u, v in np.asarray(mesh.uv, dtype=np.float64).tolist()]
    for polygon in polygons_of(mesh):
        ids = (polygon + 1).tolist()
        lines.append("f " + " ".join(f"{i}/{i}" if has_uv else str(i) for i in ids))
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class PrimitiveExtras:
    """What a one-primitive GLB carries beyond triangles, read by :func:`read_primitive_extras`.

    Each field is None when absent or unusable (wrong type, count or values).
    """

    face_sizes: np.ndarray | None = None    # (k,) uint8, 3 or 4, summing to the triangles
    vertex_ids: np.ndarray | None = None    # (n,) int64, MESHSMITH_polygons vertexIds
    uv: np.ndarray | None = None            # (n, 2) float64, TEXCOORD_0, bottom-left origin


def read_primitive_extras(data: bytes, triangle_count: int, vertex_count: int) -> PrimitiveExtras:
    """The ``MESHSMITH_polygons`` face sizes and vertex ids and the ``TEXCOORD_0`` UVs of a GLB.

    Only for a GLB whose one node holds one mesh of one primitive (so a reader that
    flattens the scene keeps its vertex and triangle order), and only values that fit
    ``triangle_count`` triangles and ``vertex_count`` vertices; anything else (other files,
    damaged or foreign extensions) gives None for that field, and the mesh is read without it.
    """
    try:
        if data[:4] != _MAGIC:
            return PrimitiveExtras()
        length, kind = struct.unpack_from("<II", data, 12)
        if kind != _CHUNK_JSON:
            return PrimitiveExtras()
        document = json.loads(data[20:20 + length])
        meshes, nodes = document.get("meshes", []), document.get("nodes", [])
        if len(meshes) != 1 or len(meshes[0].get("primitives", [])) != 1 or len(nodes) != 1:
            return PrimitiveExtras()
        primitive = meshes[0]["primitives"][0]
        binary_start = 20 + length + 8
    except (KeyError, IndexError, TypeError, ValueError, struct.error, AttributeError):
        return PrimitiveExtras()

    def read(index, component: int, kind: str, dtype: str, width: int, count: int | None = None) -> np.ndarray | None:
        """An accessor's values, (count, width) or (count,); None unless tightly packed as expected."""
        try:
            accessor = document["accessors"][index]
            view = document["bufferViews"][accessor["bufferView"]]
            if accessor["componentType"] != component or accessor["type"] != kind:
                return None
            if count is not None and accessor["count"] != count:
                return None
            if view.get("byteStride") not in (None, np.dtype(dtype).itemsize * width):
                return None
            start = binary_start + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
            values = np.frombuffer(data, dtype=dtype, count=int(accessor["count"]) * width, offset=start)
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return values.reshape(-1, width) if width > 1 else values.copy()

    extensions = primitive.get("extensions")
    extension = extensions.get(POLYGONS_EXTENSION) if isinstance(extensions, dict) else None
    sizes = ids = None
    if isinstance(extension, dict):
        raw = read(extension.get("faceSizes"), _UBYTE, "SCALAR", "u1", 1)
        if (raw is not None and np.isin(raw, (3, 4)).all()
                and int(raw.astype(np.int64).sum() - 2 * len(raw)) == triangle_count):
            sizes = raw.astype(np.uint8)
        raw = read(extension.get("vertexIds"), _UINT, "SCALAR", "<u4", 1, vertex_count)
        if raw is not None:
            ids = raw.astype(np.int64)
    uv = None
    attributes = primitive.get("attributes")
    if isinstance(attributes, dict) and "TEXCOORD_0" in attributes:
        raw = read(attributes["TEXCOORD_0"], _FLOAT, "VEC2", "<f4", 2, vertex_count)
        if raw is not None and np.isfinite(raw).all():
            uv = raw.astype(np.float64)
            uv[:, 1] = 1.0 - uv[:, 1]
    return PrimitiveExtras(sizes, ids, uv)

