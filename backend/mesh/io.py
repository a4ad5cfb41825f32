"""Read and write mesh files: sniff the format from content, validate, write atomically.

Everything enters the backend through :func:`load_mesh_bytes` or :func:`load_mesh`, so every
pipeline can rely on finite coordinates, in-range indices and at least one triangle.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from backend.conventions import MESH_SUFFIXES
from backend.errors import BadMesh, UnsupportedFormat
from backend.mesh.types import Mesh

log = logging.getLogger(__name__)

#: Format name -> the suffix trimesh knows it by.
FORMATS = {"glb": "glb", "obj": "obj", "ply": "ply", "stl": "stl"}


def sniff_format(data: bytes) -> str:
    """Name the mesh format of ``data`` from its content, not from a file name.

    Returns one of ``"glb"``, ``"ply"``, ``"stl"``, ``"obj"``; raises
    :class:`UnsupportedFormat` for anything else.
    """
    if data[:4] == b"glTF":
        return "glb"
    if data[:3] == b"ply":
        return "ply"
    # A binary STL is an 80-byte header, a triangle count and 50 bytes a triangle; its
    # header may well start with "solid", so the size rule is checked first.
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + 50 * count:
            return "stl"
    head = data[:4096].lstrip().lower()
    if head.startswith(b"solid") and b"facet" in data[:65536].lower():
        return "stl"
    if _looks_like_obj(data):
        return "obj"
    raise UnsupportedFormat(
        "The file is not a mesh format Meshsmith reads. Export it as GLB, OBJ, PLY or STL and try again."
    )


def _looks_like_obj(data: bytes) -> bool:
    try:
        text = data[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return False
    keys = {line.split(maxsplit=1)[0] for line in text.splitlines() if line.strip() and not line.startswith("#")}
    return "v" in keys


def load_mesh_bytes(data: bytes, *, name: str = "the upload") -> Mesh:
    """Parse and validate a mesh file given as bytes (GLB, OBJ, PLY or STL).

    Scenes (several nodes or primitives) are flattened into one mesh with their node
    transforms applied; polygons are triangulated, except that a GLB of one primitive with
    the ``MESHSMITH_polygons`` extension (a Meshsmith result, e.g. an artist mesh sent on to
    the texture pipeline) keeps its quads as ``face_sizes`` and its ``vertexIds``, and a GLB of
    one primitive keeps its UVs (``TEXCOORD_0``; the texture pipeline may bake into them).
    Nothing is merged or repaired here: broken meshes are what the pipelines are for.

    Raises
    ------
    UnsupportedFormat
        The content is none of the supported formats.
    BadMesh
        The file is unreadable, has no triangles, non-finite coordinates or bad indices.
    """
    if not data:
        raise BadMesh(f"{name} is empty (0 bytes). Export the mesh again and upload the file.")
    fmt = sniff_format(data)
    import trimesh

    try:
        # Geometry only: materials would make trimesh decode every texture and pack them into one
        # atlas (a 542 KB GLB took 490 MB and 0.33 s; without them 2 MB and 4 ms).
        loaded = trimesh.load(io.BytesIO(data), file_type=FORMATS[fmt], process=False, force="mesh",
                              skip_materials=True)
    except Exception as exc:  # trimesh raises many types on malformed files
        log.info("trimesh failed on %s: %r", name, exc)
        raise BadMesh(
            f"{name} looks like {fmt.upper()} but could not be read: it is damaged, cut short, or uses a part of "
            f"the format Meshsmith does not read. Re-export it from your modelling tool (plain {fmt.upper()}, "
            "no external files)."
        ) from exc
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    mesh = validate_mesh(vertices, faces, name=name)
    if fmt == "glb":
        from backend.mesh.gltf import read_primitive_extras

        extras = read_primitive_extras(data, len(mesh.faces), len(mesh.vertices))
        mesh = Mesh(mesh.vertices, mesh.faces, face_sizes=extras.face_sizes, uv=extras.uv,
                    vertex_ids=extras.vertex_ids)
    return mesh


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Read and validate the mesh file at ``path`` (format sniffed from content)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadMesh(f"Cannot read {path}: {exc.strerror}.") from exc
    return load_mesh_bytes(data, name=str(path))


def validate_mesh(vertices: np.ndarray, faces: np.ndarray, *, name: str = "the mesh") -> Mesh:
    """Check that ``vertices`` (n, 3) and ``faces`` (m, 3) make a usable triangle mesh."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise BadMesh(f"{name}: vertices must have shape (n, 3), got {vertices.shape}.")
    if faces.size == 0 or len(vertices) == 0:
        raise BadMesh(f"{name} contains no triangles. Select an object with faces and export it again.")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise BadMesh(f"{name}: faces must have shape (m, 3), got {faces.shape}.")
    if not np.issubdtype(faces.dtype, np.integer):
        raise BadMesh(f"{name}: face indices must be integers, got {faces.dtype}.")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise BadMesh(
            f"{name} has {int(bad.sum())} of {len(vertices)} vertices with NaN or infinite coordinates. "
            "Delete or fix those vertices (in Blender: Mesh > Clean Up) and export again."
        )
    lo, hi = int(faces.min()), int(faces.max())
    if lo < 0 or hi >= len(vertices):
        raise BadMesh(
            f"{name} has face indices from {lo} to {hi} but only {len(vertices)} vertices. "
            "The file is corrupt; export it again."
        )
    return Mesh(vertices=vertices, faces=faces.astype(np.int64, copy=False))


def mesh_to_bytes(mesh: Mesh, fmt: str) -> bytes:
    """Encode ``mesh`` as ``fmt`` (``glb``, ``obj``, ``ply`` or ``stl``).

    GLB keeps polygons, UVs and the material (:mod:`backend.mesh.gltf`); OBJ keeps polygons
    and UVs; PLY and STL hold the triangles only.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    if fmt in ("glb", "obj"):
        from backend.mesh.gltf import write_glb, write_obj

        return write_glb(mesh) if fmt == "glb" else write_obj(mesh)
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    data = tm.export(file_type=FORMATS[fmt])
    return data.encode("utf-8") if isinstance(data, str) else data


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` atomically, in the format its suffix names."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"path must end in one of {', '.join(MESH_SUFFIXES)}, got {path.name!r}")
    write_atomic(path, mesh_to_bytes(mesh, suffix[1:]))
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
