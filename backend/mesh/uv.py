"""UV unwrapping: cut a mesh into charts and pack them into one square texture (xatlas).

Method
    xatlas segments the surface into charts, flattens each (least-squares conformal maps) and
    packs them into an atlas of ``texture_size`` x ``texture_size`` texels with ``padding``
    empty texels around every chart (plus xatlas' one-texel bilinear margin). The texel
    density (texels per world unit) is chosen so that the charts fill one atlas: a first
    guess from the surface area, shrunk while the charts spill into a second atlas, then the
    layout is scaled up to use the whole square when it came out smaller (which only widens
    the gutters).

    xatlas' charting time grows much faster than linearly with the face count (a 326k-face
    remesh: ~70 s in one piece, ~8 s in 16 pieces on this project's 2-core machine), so
    meshes above :data:`PIECE_FACES` faces are first split into spatially compact pieces
    (recursive median cuts of the polygon centroids) that are charted separately and packed
    together. A piece border is a seam like any other chart border.

Conventions
    UVs are per vertex with the origin at the bottom-left (Blender's); texel ``(row r,
    column c)`` of the image (row 0 at the top, as PNG stores it) has its centre at
    ``u = (c + 0.5) / size``, ``v = 1 - (r + 0.5) / size``. Vertices are split where a seam
    runs (same position, different UV); face order is kept, so polygons (``face_sizes``)
    stay grouped, except that a quad whose diagonal became a seam is stored as its two
    triangles (counted in :attr:`Unwrapped.quads_split`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from backend.mesh.io import Mesh
from backend.progress import ProgressFn, null_progress

log = logging.getLogger(__name__)

#: Meshes with more faces than this are charted in pieces of about this size (see module doc).
PIECE_FACES = 16384
#: Share of the atlas the packed charts are first assumed to cover, for the first density guess.
FIRST_FILL = 0.55
#: Each retry after the charts overflowed one atlas shrinks the density by this factor.
SHRINK = 0.88
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Unwrapped:
    """An unwrapped mesh and facts about its layout.

    Attributes
    ----------
    mesh : Mesh
        Vertices split along seams, same faces in the same order, per-vertex ``uv``.
    vertex_map : (n', ) int64
        For each new vertex, the index of the input vertex it copies.
    charts : int
    utilization : float
        Share of the atlas' texels covered by charts.
    texels_per_unit : float
        Texel density along the surface (texels per world unit), at ``texture_size``.
    quads_split : int
        Quads stored as two triangles because a seam runs along their diagonal.
    """

    mesh: Mesh
    vertex_map: np.ndarray
    charts: int
    utilization: float
    texels_per_unit: float
    quads_split: int


def unwrap(mesh: Mesh, *, texture_size: int = 1024, padding: int = 4,
           progress: ProgressFn = null_progress) -> Unwrapped:
    """UV-unwrap ``mesh`` into one ``texture_size`` square atlas with ``padding`` texel gutters.

    Parameters
    ----------
    mesh : Mesh
        Triangles (and optional quads through ``face_sizes``); its own ``uv`` and material are
        ignored and its ``normals`` are carried over to the split vertices.
    texture_size : int
        Side of the square texture in texels (16..16384).
    padding : int
        Empty texels kept around each chart (0..64), against colour bleeding across seams.

    Returns
    -------
    Unwrapped
    """
    import xatlas

    if not 16 <= int(texture_size) <= 16384:
        raise ValueError(f"texture_size must be in 16..16384 texels, got {texture_size!r}")
    if not 0 <= int(padding) <= 64:
        raise ValueError(f"padding must be in 0..64 texels, got {padding!r}")
    size, padding = int(texture_size), int(padding)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    polygon = _polygon_of_face(mesh)
    pieces = _pieces(vertices, faces, polygon)
    area = _surface_area(vertices, faces)
    if area <= 0.0:
        raise ValueError("mesh has zero surface area; there is nothing to unwrap")
    # First guess: the charts cover FIRST_FILL of the atlas.
    tpu = size * math.sqrt(FIRST_FILL / area)
    atlas = None
    for attempt in range(MAX_ATTEMPTS):
        progress(attempt / (attempt + 2), f"unwrapping UVs ({len(pieces)} pieces)" if len(pieces) > 1
                 else "unwrapping UVs")
        atlas = xatlas.Atlas()
        for piece_faces in pieces:
            used, local = np.unique(faces[piece_faces], return_inverse=True)
            atlas.add_mesh(vertices[used].astype(np.float32), local.reshape(-1, 3).astype(np.uint32))
        chart_options = xatlas.ChartOptions()
        pack = xatlas.PackOptions()
        pack.resolution, pack.padding, pack.texels_per_unit, pack.bilinear = size, padding, tpu, True
        atlas.generate(chart_options=chart_options, pack_options=pack)
        if atlas.atlas_count <= 1:
            break
        log.info("charts overflow one %d px atlas at %.4g texels/unit (%d atlases); shrinking",
                 size, tpu, atlas.atlas_count)
        tpu *= SHRINK / math.sqrt(atlas.atlas_count - 0.5) if atlas.atlas_count > 2 else SHRINK
    else:
        raise ValueError(f"could not pack the charts into one {size} px atlas after {MAX_ATTEMPTS} tries")

    new_vertex_parts, face_out, uv_parts, offset = [], np.empty_like(faces), [], 0
    for i, piece_faces in enumerate(pieces):
        used = np.unique(faces[piece_faces])
        vmapping, indices, uvs = atlas[i]
        new_vertex_parts.append(used[np.asarray(vmapping, dtype=np.int64)])
        face_out[piece_faces] = np.asarray(indices, dtype=np.int64) + offset
        uv_parts.append(np.asarray(uvs, dtype=np.float64))
        offset += len(vmapping)
    vertex_map = np.concatenate(new_vertex_parts)
    uv = np.concatenate(uv_parts)
    # xatlas packs from its origin; scale the layout up to fill the square when it came out
    # smaller (only the gutters and the density grow). Which way its axes point does not
    # matter: charts come out in either orientation anyway, and the tangents follow the UVs.
    extent = float(uv.max(initial=0.0))
    grow = 1.0
    if 0.0 < extent < 0.98:
        grow = 1.0 / extent
        uv = uv * grow
    out_faces, sizes, split = _regroup_quads(face_out, mesh.face_sizes)
    normals = None if mesh.normals is None else np.asarray(mesh.normals)[vertex_map]
    new_mesh = Mesh(vertices[vertex_map], out_faces, sizes, uv=uv, normals=normals)
    progress(1.0, "unwrapping UVs")
    return Unwrapped(new_mesh, vertex_map, int(atlas.chart_count), float(atlas.utilization) * grow * grow,
                     float(tpu) * grow, split)


def _polygon_of_face(mesh: Mesh) -> np.ndarray:
    """Index of the polygon each triangle belongs to, (m,) int64."""
    if mesh.face_sizes is None:
        return np.arange(len(mesh.faces))
    sizes = np.asarray(mesh.face_sizes, dtype=np.int64)
    return np.repeat(np.arange(len(sizes)), sizes - 2)


def _surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def _pieces(vertices: np.ndarray, faces: np.ndarray, polygon: np.ndarray) -> list[np.ndarray]:
    """Face index arrays of spatially compact pieces of at most about PIECE_FACES faces; the
    triangles of one polygon stay in one piece."""
    if len(faces) <= PIECE_FACES:
        return [np.arange(len(faces))]
    n_poly = int(polygon.max()) + 1
    centroid = np.zeros((n_poly, 3))
    np.add.at(centroid, polygon, vertices[faces].mean(axis=1))
    count = np.bincount(polygon, minlength=n_poly).astype(np.float64)
    centroid /= count[:, None]
    groups, stack = [], [np.arange(n_poly)]
    while stack:
        ids = stack.pop()
        if count[ids].sum() <= PIECE_FACES:
            groups.append(ids)
            continue
        pts = centroid[ids]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        order = ids[np.argsort(pts[:, axis], kind="stable")]
        half = len(order) // 2
        stack += [order[:half], order[half:]]
    piece_of_polygon = np.empty(n_poly, dtype=np.int64)
    for k, ids in enumerate(groups):
        piece_of_polygon[ids] = k
    piece = piece_of_polygon[polygon]
    order = np.argsort(piece, kind="stable")
    bounds = np.searchsorted(piece[order], np.arange(len(groups) + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(len(groups))]


def _regroup_quads(faces: np.ndarray, face_sizes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Keep each quad whose two triangles still share their diagonal's (split) vertices; store
    the others as two triangles. Returns faces, face sizes and the number of quads split."""
    if face_sizes is None:
        return faces, None, 0
    sizes = np.asarray(face_sizes, dtype=np.uint8).copy()
    first = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) - 2)[:-1]])
    quads = np.flatnonzero(sizes == 4)
    t1, t2 = faces[first[quads]], faces[first[quads] + 1]
    broken = quads[(t1[:, 0] != t2[:, 0]) | (t1[:, 2] != t2[:, 1])]
    if len(broken) == 0:
        return faces, sizes, 0
    sizes = np.insert(sizes, broken + 1, 3)
    sizes[broken + np.arange(len(broken))] = 3
    return faces, sizes, int(len(broken))
