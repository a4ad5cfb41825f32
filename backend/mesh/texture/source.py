"""Colour sources for baking: a mesh with its base colour (textures, vertex or face colours).

:func:`load_colour_source` reads GLB, OBJ (+ MTL + images next to it), PLY, or a ZIP holding
one such mesh with its files, into a :class:`ColourSource`: every primitive of every node,
node transforms applied, one triangle list, and per triangle the *part* (primitive) whose
material colours it, so a scene with several textured materials (CesiumMilkTruck) keeps
each primitive's own texture.

Colour of a surface point (glTF's rule, as Blender's importer wires it)
    ``base = factor * texture(uv) * vertex_colour``, each in linear RGB(A): ``factor`` is the
    material's base colour factor (glTF: linear; OBJ ``Kd``: taken as linear, as Blender's
    OBJ importer does), the texture is decoded from sRGB to linear and sampled bilinearly with
    repeat wrapping in linear space, vertex colours are linear in glTF and sRGB in PLY/OBJ.
    :meth:`ColourSource.colour_at` returns it encoded back to sRGB (what a baked PNG holds).
    Texture coordinates follow trimesh's reading: origin bottom-left.

Normals
    The shading normal a renderer gives the source: the file's vertex normals, interpolated,
    when the file has them; else the flat face normal (glTF's rule for a primitive without
    normals, and what Blender shows for an OBJ or PLY without them).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.errors import BadSource, UnsupportedFormat

log = logging.getLogger(__name__)

#: Files a ZIP source may hold: one mesh and what it refers to.
ZIP_MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
#: Uncompressed size a ZIP source may unpack to, as a multiple of the archive's own size (zip bombs).
ZIP_MAX_RATIO = 200


@dataclass(frozen=True)
class ColourPart:
    """The material of one primitive.

    Attributes
    ----------
    name : str
    factor : (4,) float64
        Linear RGBA base colour factor.
    image : (h, w, 4) float32 or None
        Base colour texture, decoded to linear RGBA; row 0 is the top of the image.
    roughness, metallic : float or None
        glTF factors (the spec's default 1.0 when a glTF material omits them); None for
        formats that do not say.
    """

    name: str
    factor: np.ndarray
    image: np.ndarray | None = None
    roughness: float | None = None
    metallic: float | None = None


@dataclass(frozen=True)
class ColourSource:
    """A coloured triangle mesh, flattened from a scene.

    Attributes
    ----------
    vertices : (n, 3) float64
    faces : (m, 3) int64
    part : (m,) int64
        Index into ``parts`` of each face's material.
    parts : list of ColourPart
    uv : (n, 2) float64 or None
        Origin bottom-left; rows of vertices without UVs are 0.
    vertex_colour : (n, 4) float64 or None
        Linear RGBA; 1 where a primitive has none.
    face_colour : (m, 4) float64 or None
        Linear RGBA; 1 where a primitive has none.
    normals : (n, 3) float64 or None
        The file's vertex normals (unit); None: shade flat.
    has_normals : (m,) bool
        Faces whose primitive brought normals (the others shade flat).
    """

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    parts: list[ColourPart]
    uv: np.ndarray | None = None
    vertex_colour: np.ndarray | None = None
    face_colour: np.ndarray | None = None
    normals: np.ndarray | None = None
    has_normals: np.ndarray | None = None
    name: str = field(default="the source")

    def colour_at(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """sRGB RGBA (k, 4) float64 in [0, 1] at barycentric points ``bary`` (k, 3) of ``face`` (k,)."""
        face = np.asarray(face, dtype=np.int64)
        bary = np.asarray(bary, dtype=np.float64)
        corners = self.faces[face]
        linear = np.ones((len(face), 4))
        part = self.part[face]
        factors = np.stack([p.factor for p in self.parts])
        linear *= factors[part]
        if self.uv is not None:
            uv = np.einsum("kc,kcj->kj", bary, self.uv[corners])
            for index, p in enumerate(self.parts):
                if p.image is None:
                    continue
                sel = np.flatnonzero(part == index)
                if len(sel):
                    linear[sel] *= sample_bilinear(p.image, uv[sel])
        if self.vertex_colour is not None:
            linear *= np.einsum("kc,kcj->kj", bary, self.vertex_colour[corners])
        if self.face_colour is not None:
            linear *= self.face_colour[face]
        out = np.clip(linear, 0.0, 1.0)
        out[:, :3] = linear_to_srgb(out[:, :3])
        return out

    def surface_factors(self) -> tuple[float, float] | None:
        """Area-weighted mean ``(roughness, metallic)`` over the parts that state them, or None.

        A baked result has one material; carrying the source's roughness over matters as much
        as its colour for how a render looks (the Duck: 33 dB with roughness 0.8 against its
        1.0, 42 dB with 1.0).
        """
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        per_part = np.bincount(self.part, area, minlength=len(self.parts))
        known = [(w, p) for w, p in zip(per_part, self.parts) if p.roughness is not None and w > 0]
        if not known:
            return None
        total = sum(w for w, _ in known)
        return (float(sum(w * p.roughness for w, p in known) / total),
                float(sum(w * (p.metallic or 0.0) for w, p in known) / total))

    def normal_at(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Unit shading normals (k, 3) at ``bary`` (k, 3) of ``face`` (k,) (see the module doc)."""
        face = np.asarray(face, dtype=np.int64)
        a, b, c = (self.vertices[self.faces[face, i]] for i in range(3))
        flat = np.cross(b - a, c - a)
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-300)
        if self.normals is None:
            return flat
        smooth = np.einsum("kc,kcj->kj", np.asarray(bary, dtype=np.float64), self.normals[self.faces[face]])
        length = np.linalg.norm(smooth, axis=1, keepdims=True)
        ok = (length[:, 0] > 1e-9) & self.has_normals[face]
        return np.where(ok[:, None], smooth / np.maximum(length, 1e-300), flat)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function's inverse, elementwise on values in [0, 1]."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, elementwise on values in [0, 1]."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples (k, C) of ``image`` (h, w, C) at ``uv`` (k, 2), repeat wrapping.

    UV origin bottom-left; texel ``(r, c)`` has its centre at ``((c + .5) / w, 1 - (r + .5) / h)``.
    """
    h, w = image.shape[:2]
    x = np.asarray(uv[:, 0], dtype=np.float64) * w - 0.5
    y = (1.0 - np.asarray(uv[:, 1], dtype=np.float64)) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    c0, c1 = np.mod(x0, w), np.mod(x0 + 1, w)
    r0, r1 = np.mod(y0, h), np.mod(y0 + 1, h)
    top = image[r0, c0] * (1.0 - fx) + image[r0, c1] * fx
    bottom = image[r1, c0] * (1.0 - fx) + image[r1, c1] * fx
    return top * (1.0 - fy) + bottom * fy


def load_colour_source(path: str | os.PathLike, *, name: str | None = None) -> ColourSource:
    """Read a coloured mesh from ``path``: GLB / glTF, OBJ (+ MTL + images beside it), PLY or a ZIP.

    Raises
    ------
    BadSource
        Unreadable, no triangles, non-finite coordinates, or no colour (no texture, vertex
        or face colours, or material colour anywhere).
    """
    path = Path(path)
    label = name or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadSource(f"Cannot read the source {path}: {exc.strerror}.") from exc
    if zipfile.is_zipfile(path):
        return load_colour_source_bytes(data, name=label)
    return _load_path(path, label)


def load_colour_source_bytes(data: bytes, *, name: str = "the source") -> ColourSource:
    """Like :func:`load_colour_source`, from bytes (a GLB, PLY, OBJ without its textures, or a ZIP)."""
    if not data:
        raise BadSource(f"{name} is empty (0 bytes). Export the coloured mesh again and upload it.")
    with tempfile.TemporaryDirectory(prefix="meshsmith-source-") as tmp:
        if data[:4] == b"PK\x03\x04":
            path = _unpack_zip(data, Path(tmp), name)
        else:
            from backend.mesh.io import sniff_format

            try:
                fmt = sniff_format(data)
            except UnsupportedFormat as exc:
                raise BadSource(f"{name} is not a mesh Meshsmith reads colour from. Upload a GLB (textures "
                                "embedded), a PLY with vertex colours, or a ZIP of an OBJ with its MTL and "
                                "images.") from exc
            if fmt == "stl":
                raise BadSource(f"{name} is an STL file, which holds no colour. Upload a GLB with its texture, "
                                "a PLY with vertex colours, or a ZIP of an OBJ with its MTL and images.")
            path = Path(tmp) / f"source.{fmt}"
            path.write_bytes(data)
        return _load_path(path, name)


def _unpack_zip(data: bytes, into: Path, name: str) -> Path:
    """Unpack a ZIP source safely into ``into``; return the one mesh file in it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, NotImplementedError, OSError, EOFError) as exc:
        log.info("opening %s as a ZIP failed: %r", name, exc)
        raise BadSource(f"{name} is not a readable ZIP archive. Zip the mesh and its files again.") from exc
    total = sum(i.file_size for i in infos)
    if total > ZIP_MAX_RATIO * max(len(data), 1 << 20):
        raise BadSource(f"{name} unpacks to {total / 2**20:.0f} MB, too much for its size; upload the files unzipped "
                        "or a GLB instead.")
    meshes = []
    for info in infos:
        rel = _safe_member(info.filename, name)
        if rel is None:
            continue
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_bytes(archive.read(info))
        except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError, NotImplementedError,
                zlib.error) as exc:
            log.info("unpacking %s from %s failed: %r", info.filename, name, exc)
            raise BadSource(f"{name}: the file {info.filename!r} in the ZIP cannot be unpacked (the ZIP is damaged "
                            "or uses an unusual compression). Zip the files again.") from exc
        if target.suffix.lower() in ZIP_MESH_SUFFIXES:
            meshes.append(target)
    if len(meshes) != 1:
        found = ", ".join(sorted(str(m.relative_to(into)) for m in meshes)) or "none"
        raise BadSource(f"{name} must hold exactly one mesh file ({', '.join(ZIP_MESH_SUFFIXES)}) with its "
                        f"materials and images; found {found}.")
    return meshes[0]


def _safe_member(filename: str, name: str) -> Path | None:
    """The relative path of a ZIP member, or None for a folder; refuses absolute and '..' paths."""
    parts = filename.replace("\\", "/").split("/")
    if filename.startswith(("/", "\\")) or ":" in parts[0] or any(p == ".." for p in parts):
        raise BadSource(f"{name} contains the path {filename!r}, which points outside the archive. "
                        "Zip the files again from their own folder.")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts or filename.endswith("/"):
        return None
    return Path(*parts)


def _load_path(path: Path, name: str) -> ColourSource:
    import trimesh

    suffix = path.suffix.lower()
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many types on malformed files
        log.info("trimesh failed on %s: %r", name, exc)
        raise BadSource(f"{name} could not be read as a mesh: it is damaged, cut short, or uses a part of the "
                        "format Meshsmith does not read. Re-export it from your modelling tool.") from exc
    linear_vertex_colours = suffix in (".glb", ".gltf")
    verts, faces, normals, has_n, parts, part_of_face = [], [], [], [], [], []
    uvs, vcols, fcols = [], [], []
    any_uv = any_vcol = any_fcol = coloured = False
    images: dict[int, np.ndarray] = {}
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geom = scene.geometry.get(geometry_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = np.asarray(geom.vertices, dtype=np.float64)
        f = np.asarray(geom.faces, dtype=np.int64)
        m = np.asarray(transform, dtype=np.float64)
        v = v @ m[:3, :3].T + m[:3, 3]
        if np.linalg.det(m[:3, :3]) < 0:
            f = f[:, ::-1]
        file_normals = "vertex_normals" in geom._cache  # loaded from the file, not computed
        if file_normals:
            n = np.asarray(geom.vertex_normals, dtype=np.float64) @ np.linalg.inv(m[:3, :3])
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
        else:
            n = np.zeros_like(v)
        part, uv, vcol, fcol, has_colour = _material(geom, len(parts), images, linear_vertex_colours)
        coloured |= has_colour
        parts.append(part)
        verts.append(v)
        faces.append(f + offset)
        normals.append(n)
        has_n.append(np.full(len(f), file_normals))
        part_of_face.append(np.full(len(f), len(parts) - 1))
        uvs.append(uv if uv is not None else np.zeros((len(v), 2)))
        vcols.append(vcol if vcol is not None else np.ones((len(v), 4)))
        fcols.append(fcol if fcol is not None else np.ones((len(f), 4)))
        any_uv |= uv is not None
        any_vcol |= vcol is not None
        any_fcol |= fcol is not None
        offset += len(v)
    if not verts:
        raise BadSource(f"{name} contains no triangles. Select an object with faces and export it again.")
    vertices = np.concatenate(verts)
    if not np.isfinite(vertices).all():
        raise BadSource(f"{name} has vertices with NaN or infinite coordinates. Fix them (in Blender: Mesh > "
                        "Clean Up) and export again.")
    if not coloured:
        raise BadSource(
            f"{name} has no colour to bake: no texture, no vertex colours and no material colour. "
            "Export it with its texture (GLB embeds it; for OBJ zip it with its MTL and images) or with "
            "vertex colours (PLY).")
    has_normals = np.concatenate(has_n)
    return ColourSource(
        vertices=vertices, faces=np.concatenate(faces), part=np.concatenate(part_of_face), parts=parts,
        uv=np.concatenate(uvs) if any_uv else None,
        vertex_colour=np.concatenate(vcols) if any_vcol else None,
        face_colour=np.concatenate(fcols) if any_fcol else None,
        normals=np.concatenate(normals) if has_normals.any() else None,
        has_normals=has_normals, name=name)


def _material(geom, index: int, images: dict[int, np.ndarray], linear_vertex_colours: bool):
    """(part, uv, vertex colours, face colours, has colour) of one trimesh geometry."""
    from trimesh.visual.color import ColorVisuals
    from trimesh.visual.texture import TextureVisuals

    visual = geom.visual
    ones = np.ones(4)
    if isinstance(visual, TextureVisuals):
        material = visual.material
        uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
        image = factor = None
        if hasattr(material, "baseColorTexture"):  # PBRMaterial (glTF)
            image = material.baseColorTexture
            factor = material.baseColorFactor
        elif material is not None and not _placeholder(material):  # SimpleMaterial (OBJ + MTL)
            image = getattr(material, "image", None)
            factor = None if image is not None else getattr(material, "diffuse", None)
        decoded = None
        if image is not None and uv is not None:
            key = id(image)
            if key not in images:
                rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
                rgba[..., :3] = srgb_to_linear(rgba[..., :3])
                images[key] = rgba.astype(np.float32)
            decoded = images[key]
        f = ones if factor is None else np.asarray(factor, dtype=np.float64).reshape(-1)[:4] / 255.0
        if len(f) == 3:
            f = np.append(f, 1.0)
        has = decoded is not None or factor is not None
        name = getattr(material, "name", None) or f"part {index}"
        rough = metal = None
        if hasattr(material, "roughnessFactor"):
            rough = 1.0 if material.roughnessFactor is None else float(material.roughnessFactor)
            metal = 1.0 if material.metallicFactor is None else float(material.metallicFactor)
        part = ColourPart(str(name), f, decoded, rough, metal)
        return part, uv if decoded is not None else None, None, None, has
    if isinstance(visual, ColorVisuals) and visual.kind in ("vertex", "face"):
        def convert(c):
            c = np.asarray(c, dtype=np.float64)[:, :4] / 255.0
            if not linear_vertex_colours:
                c[:, :3] = srgb_to_linear(c[:, :3])
            return c
        if visual.kind == "vertex":
            return ColourPart(f"part {index}", ones), None, convert(visual.vertex_colors), None, True
        return ColourPart(f"part {index}", ones), None, None, convert(visual.face_colors), True
    return ColourPart(f"part {index}", ones), None, None, None, False



def _placeholder(material) -> bool:
    """trimesh gives an OBJ with UVs but no MTL a uniform grey 2 x 2 image; that is no colour."""
    from trimesh.visual.material import color_image

    image = getattr(material, "image", None)
    if image is None or image.size != (2, 2):
        return False
    return bool(np.array_equal(np.asarray(image.convert("RGBA")), np.asarray(color_image().convert("RGBA"))))
