"""UV unwrapping: cut a mesh into charts and pack them into one square texture.

Two methods; ``method="auto"`` takes xatlas up to :data:`XATLAS_MAX_FACES` faces and
projection above (and always when the ``xatlas`` module is not installed).

``xatlas`` (low-poly and artist meshes)
    xatlas segments the surface into charts, flattens each (least-squares conformal maps)
    and packs them into an atlas of ``texture_size`` x ``texture_size`` texels with
    ``padding`` empty texels around every chart (plus its one-texel bilinear margin). The
    texel density is chosen so the charts fill one atlas: a first guess from the surface
    area, shrunk while the charts spill into a second atlas; a layout that came out smaller
    than the square is scaled up to fill it (only the gutters grow). Meshes above
    :data:`PIECE_FACES` faces are charted in spatially compact pieces (recursive median cuts
    of the polygon centroids), since xatlas' charting time grows much faster than the face
    count.

``project`` (dense meshes: watertight remeshes, scans)
    xatlas needs minutes and thousands of charts on a 300k-face remesh (measured: a 326k-face
    remesh took ~70 s in one piece on this project's 2-core machine, and its 3,600 charts did
    not fit one 1024 px atlas with 4 px gutters). Dense surfaces get normal-clustered planar
    charts instead, the method of Blender's Smart UV Project: each polygon takes the nearest
    of 14 directions (the 6 axes and 8 cube diagonals, so a face is at most 36.2 degrees from
    its plane and stretched at most 1.24x), labels are smoothed by a few rounds of majority
    vote among edge neighbours (within 70 degrees), charts of fewer than 64 polygons are
    merged into the neighbour they share most edges with (within 80 degrees; 88 for charts
    of a few polygons), and each connected region of one label is a chart, projected orthographically on its direction's plane (never mirrored: every face
    keeps a positive UV area) and turned to its principal axes. Charts are shelf-packed at a
    common density found by bisection, ``padding`` + 3 texels apart. A chart whose projection
    folds over itself (a texel centre inside two of its triangles) is cut in two at its
    median and the packing redone.

Conventions
    UVs are per vertex with the origin at the bottom-left (Blender's); texel ``(row r,
    column c)`` of the image (row 0 at the top, as PNG stores it) has its centre at
    ``u = (c + 0.5) / size``, ``v = 1 - (r + 0.5) / size``. Vertices are split where a seam
    runs (same position, different UV); face order is kept, so polygons (``face_sizes``)
    stay grouped, except that a quad whose diagonal became a seam is stored as its two
    triangles (counted in :attr:`Unwrapped.quads_split`; ``project`` labels whole polygons,
    so it never splits one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from backend.errors import BadParams
from backend.mesh.metrics import surface_area
from backend.mesh.types import Mesh
from backend.progress import ProgressFn, null_progress


class ChartsDoNotFit(BadParams):
    """More UV charts than the texture has room for, even with no padding; the message says what to change."""

log = logging.getLogger(__name__)

METHODS = ("auto", "xatlas", "project")
#: ``auto`` uses xatlas up to this many faces, projection above.
XATLAS_MAX_FACES = 60_000
#: xatlas charts meshes above this many faces in pieces of about this size (see module doc).
PIECE_FACES = 16384
#: Share of the atlas the packed charts are first assumed to cover, for the first density guess.
FIRST_FILL = 0.55
#: Each retry after xatlas' charts overflowed one atlas shrinks the density by this factor.
SHRINK = 0.88
MAX_ATTEMPTS = 6
#: Projection directions: the 6 axes and the 8 cube diagonals.
DIRECTIONS = np.concatenate([np.eye(3), -np.eye(3),
                             np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / np.sqrt(3)])
#: Rounds of majority smoothing of the projection labels, and the cosine a face must keep.
SMOOTHING_ROUNDS = 3
SMOOTHING_MIN_COS = math.cos(math.radians(70.0))
#: Charts of fewer polygons are folded into a neighbour when they face within ~80 degrees of its plane.
MIN_CHART_POLYGONS = 64
MERGE_MIN_COS = math.cos(math.radians(80.0))
MERGE_ROUNDS = 8
#: Charts this small merge even when nearly edge-on (slivers of a few texels, stretched).
TINY_CHART_POLYGONS = 8
TINY_MERGE_MIN_COS = math.cos(math.radians(88.0))
#: Rounds of cutting charts that fold over themselves.
MAX_SPLIT_ROUNDS = 4


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
    method : str
        ``xatlas`` or ``project``.
    """

    mesh: Mesh
    vertex_map: np.ndarray
    charts: int
    utilization: float
    texels_per_unit: float
    quads_split: int
    method: str


def unwrap(mesh: Mesh, *, texture_size: int = 1024, padding: int = 4, method: str = "auto",
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
    method : {"auto", "xatlas", "project"}
        See the module docstring.

    Returns
    -------
    Unwrapped
    """
    if not 16 <= int(texture_size) <= 16384:
        raise ValueError(f"texture_size must be in 16..16384 texels, got {texture_size!r}")
    if not 0 <= int(padding) <= 64:
        raise ValueError(f"padding must be in 0..64 texels, got {padding!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    size, padding = int(texture_size), int(padding)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    polygon = _polygon_of_face(mesh)
    area = surface_area(vertices, faces)
    if area <= 0.0:
        raise ValueError("mesh has zero surface area; there is nothing to unwrap")
    if method == "auto":
        method = "xatlas" if len(faces) <= XATLAS_MAX_FACES and _has_xatlas() else "project"
    layout = None
    if method == "xatlas":
        layout = _xatlas(vertices, faces, polygon, size, padding, area, progress)
        if layout is None:
            log.info("xatlas could not fit one %d px atlas; projecting instead", size)
            method = "project"
    if method == "project":
        layout = _project(vertices, faces, polygon, size, padding, area, progress)
    vertex_map, face_out, uv, charts, utilization, tpu = layout
    out_faces, sizes, split = _regroup_quads(face_out, mesh.face_sizes)
    normals = None if mesh.normals is None else np.asarray(mesh.normals)[vertex_map]
    new_mesh = Mesh(vertices[vertex_map], out_faces, sizes, uv=uv, normals=normals)
    progress(1.0, "unwrapping UVs")
    return Unwrapped(new_mesh, vertex_map, int(charts), float(utilization), float(tpu), split, method)


def _has_xatlas() -> bool:
    import importlib.util

    return importlib.util.find_spec("xatlas") is not None


class _NoFit(ValueError):
    def __init__(self, charts: int, size: int, padding: int):
        super().__init__(f"{charts} UV charts do not fit a {size} px texture with {padding} px padding")
        self.charts = charts


# -- xatlas -------------------------------------------------------------------------------


def _xatlas(vertices, faces, polygon, size, padding, area, progress):
    """(vertex_map, faces, uv, charts, utilization, texels per unit), or None when it does not fit."""
    import xatlas

    pieces = _pieces(vertices, faces, polygon)
    tpu = size * math.sqrt(FIRST_FILL / area)
    for attempt in range(MAX_ATTEMPTS):
        progress(attempt / (attempt + 2), f"unwrapping UVs ({len(pieces)} pieces)" if len(pieces) > 1
                 else "unwrapping UVs")
        atlas = xatlas.Atlas()
        for piece_faces in pieces:
            used, local = np.unique(faces[piece_faces], return_inverse=True)
            atlas.add_mesh(vertices[used].astype(np.float32), local.reshape(-1, 3).astype(np.uint32))
        pack = xatlas.PackOptions()
        pack.resolution, pack.padding, pack.texels_per_unit, pack.bilinear = size, padding, tpu, True
        atlas.generate(chart_options=xatlas.ChartOptions(), pack_options=pack)
        if atlas.atlas_count <= 1:
            break
        log.info("charts overflow one %d px atlas at %.4g texels/unit (%d atlases); shrinking",
                 size, tpu, atlas.atlas_count)
        tpu *= SHRINK / math.sqrt(atlas.atlas_count - 0.5) if atlas.atlas_count > 2 else SHRINK
    else:
        return None
    new_vertex_parts, face_out, uv_parts, offset = [], np.empty_like(faces), [], 0
    for i, piece_faces in enumerate(pieces):
        used = np.unique(faces[piece_faces])
        vmapping, indices, uvs = atlas[i]
        new_vertex_parts.append(used[np.asarray(vmapping, dtype=np.int64)])
        face_out[piece_faces] = np.asarray(indices, dtype=np.int64) + offset
        uv_parts.append(np.asarray(uvs, dtype=np.float64))
        offset += len(vmapping)
    uv = np.concatenate(uv_parts)
    # Which way xatlas' axes point does not matter: its charts come out in either orientation
    # anyway, and the tangents follow the UVs. A layout smaller than the square is scaled up.
    extent = float(uv.max(initial=0.0))
    grow = 1.0 / extent if 0.0 < extent < 0.98 else 1.0
    return (np.concatenate(new_vertex_parts), face_out, uv * grow, atlas.chart_count,
            atlas.utilization * grow * grow, tpu * grow)


def _pieces(vertices: np.ndarray, faces: np.ndarray, polygon: np.ndarray) -> list[np.ndarray]:
    """Face index arrays of spatially compact pieces of at most about PIECE_FACES faces; the
    triangles of one polygon stay in one piece."""
    if len(faces) <= PIECE_FACES:
        return [np.arange(len(faces))]
    centroid = _polygon_mean(vertices[faces].mean(axis=1), polygon)
    count = np.bincount(polygon).astype(np.float64)
    groups, stack = [], [np.arange(len(centroid))]
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
    piece_of_polygon = np.empty(len(centroid), dtype=np.int64)
    for k, ids in enumerate(groups):
        piece_of_polygon[ids] = k
    piece = piece_of_polygon[polygon]
    order = np.argsort(piece, kind="stable")
    bounds = np.searchsorted(piece[order], np.arange(len(groups) + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(len(groups))]


# -- projection ---------------------------------------------------------------------------


def _project(vertices, faces, polygon, size, padding, area, progress):
    """Normal-clustered planar charts, shelf-packed (see the module docstring)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    progress(0.0, "unwrapping UVs (projecting)")
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    poly_normal = _unit(_polygon_sum(cross, polygon))
    label = np.argmax(poly_normal @ DIRECTIONS.T, axis=1)  # per polygon
    pa, pb = _edge_neighbours(faces)
    pa, pb = polygon[pa], polygon[pb]
    inner = pa != pb
    pa, pb = pa[inner], pb[inner]
    for _ in range(SMOOTHING_ROUNDS):
        votes = np.zeros((len(label), len(DIRECTIONS)))
        np.add.at(votes, (pa, label[pb]), 1.0)
        np.add.at(votes, (pb, label[pa]), 1.0)
        votes[np.arange(len(label)), label] += 1.5  # a tie keeps the own label
        best = np.argmax(votes, axis=1)
        fits = np.einsum("ij,ij->i", poly_normal, DIRECTIONS[best]) >= SMOOTHING_MIN_COS
        label = np.where(fits, best, label)
    same = label[pa] == label[pb]
    graph = coo_matrix((np.ones(int(same.sum())), (pa[same], pb[same])), shape=(len(label),) * 2)
    _, chart = connected_components(graph, directed=False)  # per polygon
    chart, label = _merge_small(chart, label, poly_normal, pa, pb)
    from backend.mesh.texture.atlas import overlapping_groups

    suspects = np.ones(len(faces), dtype=bool)  # faces whose chart may fold; all at first
    for round_ in range(MAX_SPLIT_ROUNDS + 1):
        chart_of_face = chart[polygon]
        vertex_map, face_out, local_uv = _chart_vertices(vertices, faces, chart_of_face, label[polygon])
        n_charts = int(chart.max()) + 1
        uv, tpu, padding = _pack_shrinking(local_uv, face_out, chart_of_face, n_charts, size, padding, area)
        progress(0.5 + 0.4 * round_ / (MAX_SPLIT_ROUNDS + 1), "unwrapping UVs (checking overlaps)")
        # A fold is a property of the chart's own projection, so only the charts cut in the
        # previous round need looking at again.
        folded = overlapping_groups(uv, face_out[suspects], size, chart_of_face[suspects])
        if len(folded) == 0 or round_ == MAX_SPLIT_ROUNDS:
            if len(folded):
                log.info("%d UV charts still overlap themselves after %d cuts", len(folded), round_)
            break
        before = chart.copy()
        chart = _cut_charts(chart, folded, local_uv, face_out, polygon, pa, pb, label)
        suspects = np.isin(before, folded)[polygon]
    covered = _uv_area(uv, face_out)
    return vertex_map, face_out, uv, n_charts, covered, tpu


def _merge_small(chart, label, poly_normal, pa, pb):
    """Fold charts of fewer than MIN_CHART_POLYGONS polygons into the neighbour they share most
    edges with, when all their polygons face within MERGE_MIN_COS of its direction. Each tiny
    chart costs its gutters in the atlas; a remesh's staircase triangles make thousands."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    for _ in range(MERGE_ROUNDS):
        n = int(chart.max()) + 1
        size = np.bincount(chart, minlength=n)
        ca, cb = chart[pa], chart[pb]
        cross = ca != cb
        a = np.concatenate([ca[cross], cb[cross]])
        b = np.concatenate([cb[cross], ca[cross]])
        small = size[a] < MIN_CHART_POLYGONS
        a, b = a[small], b[small]
        if len(a) == 0:
            break
        pair, shared = np.unique(a * n + b, return_counts=True)
        pa_, pb_ = pair // n, pair % n
        # Per small chart, the neighbour sharing most edges (larger one on ties).
        order = np.lexsort((-size[pb_], -shared, pa_))
        first = order[np.concatenate([[True], pa_[order][1:] != pa_[order][:-1]])]
        src, dst = pa_[first], pb_[first]
        target_label = np.full(n, -1)
        target_label[src] = _label_of_chart(chart, label, n)[dst]
        goes = target_label[chart] >= 0
        cos = np.where(goes, np.einsum("ij,ij->i", poly_normal, DIRECTIONS[np.maximum(target_label[chart], 0)]), 1.0)
        worst = np.ones(n)
        np.minimum.at(worst, chart, cos)
        ok = np.zeros(n, dtype=bool)
        ok[src] = worst[src] >= np.where(size[src] < TINY_CHART_POLYGONS, TINY_MERGE_MIN_COS, MERGE_MIN_COS)
        # A small chart whose neighbour also merges this round waits, so merges do not chain.
        ok[dst[ok[dst]]] = False
        if not ok.any():
            break
        into = np.arange(n)
        into[src[ok[src]]] = dst[ok[src]]
        moved = ok[chart]
        label = np.where(moved, target_label[chart], label)
        chart = into[chart]
        same = (label[pa] == label[pb]) & (chart[pa] == chart[pb])
        graph = coo_matrix((np.ones(int(same.sum())), (pa[same], pb[same])), shape=(len(chart),) * 2)
        chart = connected_components(graph, directed=False)[1]
    return chart, label


def _label_of_chart(chart, label, n):
    out = np.zeros(n, dtype=np.int64)
    out[chart] = label
    return out


def _chart_vertices(vertices, faces, chart_of_face, label_of_face):
    """Split vertices per chart and project them: (vertex_map, faces, uv in world units, PCA-aligned)."""
    n_charts = int(chart_of_face.max()) + 1
    key = faces * n_charts + chart_of_face[:, None]
    keys, inverse = np.unique(key.ravel(), return_inverse=True)
    face_out = inverse.reshape(-1, 3)
    vertex_map = keys // n_charts
    chart_of_vertex = keys % n_charts
    direction_of_chart = np.zeros(n_charts, dtype=np.int64)
    direction_of_chart[chart_of_face] = label_of_face
    d = DIRECTIONS[direction_of_chart[chart_of_vertex]]
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = _unit(np.cross(helper, d))
    e2 = np.cross(d, e1)  # (e1, e2, d) right-handed: faces facing d keep a positive UV area
    p = vertices[vertex_map]
    uv = np.stack([np.einsum("ij,ij->i", p, e1), np.einsum("ij,ij->i", p, e2)], axis=1)
    # Turn each chart to its principal axes (a rotation: orientation kept) for tighter boxes.
    count = np.bincount(chart_of_vertex, minlength=n_charts).astype(np.float64)
    mean = np.stack([np.bincount(chart_of_vertex, uv[:, k], n_charts) for k in range(2)], axis=1) / count[:, None]
    rel = uv - mean[chart_of_vertex]
    cxx = np.bincount(chart_of_vertex, rel[:, 0] ** 2, n_charts)
    cyy = np.bincount(chart_of_vertex, rel[:, 1] ** 2, n_charts)
    cxy = np.bincount(chart_of_vertex, rel[:, 0] * rel[:, 1], n_charts)
    angle = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)[chart_of_vertex]
    c, s = np.cos(angle), np.sin(angle)
    uv = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], axis=1)
    return vertex_map, face_out, uv


def _pack_shrinking(local_uv, face_out, chart_of_face, n_charts, size, padding, area):
    """:func:`_pack`, halving the padding while the charts do not fit: a rough surface cuts into many
    charts, each needing its padding all round, and a thinner seam guard beats no texture.
    Returns (uv, texels per unit, the padding used); raises :class:`ChartsDoNotFit`."""
    for pad in sorted({padding, *[padding >> k for k in range(1, 7)]}, reverse=True):
        try:
            uv, tpu = _pack(local_uv, face_out, chart_of_face, n_charts, size, pad, area)
            return uv, tpu, pad
        except _NoFit as exc:
            log.info("%s%s", exc, f"; trying {pad >> 1} px padding" if pad else "")
    raise ChartsDoNotFit(f"The surface cuts into {n_charts} UV charts, more than a {size} px texture holds "
                         "even without padding. Choose a larger texture size.")


def _pack(local_uv, face_out, chart_of_face, n_charts, size, padding, area):
    """Shelf-pack the charts at the largest common density that fits; (uv in [0, 1], texels per unit)."""
    chart_of_vertex = np.zeros(len(local_uv), dtype=np.int64)
    chart_of_vertex[face_out.ravel()] = np.repeat(chart_of_face, 3)
    lo = np.full((n_charts, 2), np.inf)
    hi = np.full((n_charts, 2), -np.inf)
    np.minimum.at(lo, chart_of_vertex, local_uv)
    np.maximum.at(hi, chart_of_vertex, local_uv)
    extent = hi - lo
    # Longer side across, so shelves stay low.
    turn = extent[:, 1] > extent[:, 0]
    extent = np.where(turn[:, None], extent[:, ::-1], extent)
    gap = padding + 3  # bilinear border texels on both sides plus the padding
    lower, upper, best = 0.0, size / math.sqrt(area), None
    for _ in range(30):
        tpu = 0.5 * (lower + upper)
        cells = np.ceil(extent * tpu).astype(np.int64) + 1 + gap
        spot = _shelf(cells, size)
        if spot is None:
            upper = tpu
        else:
            lower, best = tpu, (tpu, cells, spot)
        if upper - lower < 1e-3 * upper:
            break
    if best is None:
        raise _NoFit(n_charts, size, padding)
    tpu, cells, spot = best
    local = local_uv - lo[chart_of_vertex]
    t = turn[chart_of_vertex]
    local = np.where(t[:, None], np.stack([local[:, 1], extent[chart_of_vertex, 1] - local[:, 0]], axis=1), local)
    # A quarter turn keeps the orientation: (u, v) -> (v, w - u).
    # Texel rows grow downwards and v upwards: flip within the box, so nothing is mirrored.
    local = np.stack([local[:, 0], extent[chart_of_vertex, 1] - local[:, 1]], axis=1)
    texel = spot[chart_of_vertex] + gap / 2.0 + local * tpu
    uv = np.stack([texel[:, 0] / size, 1.0 - texel[:, 1] / size], axis=1)
    return uv, tpu


def _shelf(cells: np.ndarray, size: int) -> np.ndarray | None:
    """Top-left corners (k, 2) in texels (x right, y down) of boxes ``cells`` (k, 2) on shelves; None if they overflow."""
    if (cells > size).any():
        return None
    order = np.argsort(-cells[:, 1], kind="stable")
    spot = np.zeros_like(cells)
    x = y = shelf = 0
    for i in order.tolist():
        w, h = int(cells[i, 0]), int(cells[i, 1])
        if x + w > size:
            y, x, shelf = y + shelf, 0, 0
        spot[i] = (x, y)
        x += w
        shelf = max(shelf, h)
        if y + shelf > size:
            return None
    return spot


def _cut_charts(chart, folded, local_uv, face_out, polygon, pa, pb, label):
    """Cut each chart in ``folded`` in two at the median of its longer UV axis (per polygon)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    centre = local_uv[face_out].mean(axis=1)  # per face
    poly_centre = _polygon_mean(centre, polygon)
    new = chart.copy()
    next_id = int(chart.max()) + 1
    for c in folded.tolist():
        ids = np.flatnonzero(chart == c)
        pts = poly_centre[ids]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        upper = pts[:, axis] > np.median(pts[:, axis])
        if upper.all() or not upper.any():
            upper = np.arange(len(ids)) >= len(ids) // 2
        new[ids[upper]] = next_id
        next_id += 1
    # Keep charts connected: components of (same label, same chart) neighbours.
    same = (label[pa] == label[pb]) & (new[pa] == new[pb])
    graph = coo_matrix((np.ones(int(same.sum())), (pa[same], pb[same])), shape=(len(new),) * 2)
    return connected_components(graph, directed=False)[1]


def _edge_neighbours(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces (a, b) sharing an edge (each pair of a manifold edge once)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    owner = np.tile(np.arange(len(faces)), 3)
    key = edges[:, 0] * (int(faces.max()) + 1) + edges[:, 1]
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    same = key[1:] == key[:-1]
    return owner[:-1][same], owner[1:][same]


# -- helpers ------------------------------------------------------------------------------


def _polygon_of_face(mesh: Mesh) -> np.ndarray:
    """Index of the polygon each triangle belongs to, (m,) int64."""
    if mesh.face_sizes is None:
        return np.arange(len(mesh.faces))
    sizes = np.asarray(mesh.face_sizes, dtype=np.int64)
    return np.repeat(np.arange(len(sizes)), sizes - 2)


def _polygon_sum(values: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    out = np.zeros((int(polygon.max()) + 1, values.shape[1]))
    np.add.at(out, polygon, values)
    return out


def _polygon_mean(values: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    return _polygon_sum(values, polygon) / np.bincount(polygon).astype(np.float64)[:, None]


def _uv_area(uv: np.ndarray, faces: np.ndarray) -> float:
    t = uv[faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return float(0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum())


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)


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
