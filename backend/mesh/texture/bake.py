"""Bake textures onto a mesh: UVs, base colour from a coloured mesh or posed views, normal map.

:func:`bake_textures` is the one entry point (the ``texture`` pipeline and the command line
call it; an "artist + texture" preset chains it after the artist remesh):

1. UV unwrap the target (:mod:`backend.mesh.texture.uv`): texture size and gutter padding in texels;
   or keep the target's own UVs (:func:`own_layout`: an artist's layout survives the bake).
2. Rasterize the atlas (:mod:`backend.mesh.texture.atlas`): per covered texel, its triangle and
   barycentrics, hence its 3D point, interpolated normal and tangent frame.
3. Base colour, from exactly one source:

   * a coloured mesh (:mod:`backend.mesh.texture.source`): each texel's point goes to where the line
     along its normal meets the source surface, within a cage of :data:`CAGE` of the
     source's size (:meth:`backend.mesh.nearest.SurfaceIndex.along_normals`; else its closest
     point; candidates facing away from the texel's normal lose to nearly as close ones
     facing the same way), and takes the source's colour there (its own texture sampled bilinearly at its own UVs, or its vertex
     / face / material colours);
   * posed views (:mod:`backend.mesh.texture.projection`): projected with a depth test against the
     target's own z-buffer, blended by view angle; texels no view sees are filled by
     diffusion over the surface (:func:`_fill_unseen`).

4. Normal map (optional), tangent-space: the shading normal of the source at the same
   point (or the views' normal maps, when they have them), expressed in the
   target's per-texel tangent frame (:mod:`backend.mesh.tangents`, which states the
   convention: MikkTSpace tangents, +Y up, ``rgb = (n + 1) / 2``). The target's normals are
   returned with the mesh (``Mesh.normals``), since the map is only right on them. They are
   split along edges sharper than :data:`HARD_ANGLE` (so texels near a crease
   also look for the source along their own side's normal, not round the corner: on
   CesiumMilkTruck's 2,000-face artist mesh, 1 dB of masked PSNR).
5. Gutters: every texel outside the charts takes the nearest baked texel (dilation), so
   filtering and mip-maps never pull in background.

Everything is vectorized over texels (numpy, scipy); the cost is dominated by the UV
unwrap of large meshes and by the closest-point search (about 12 exact point-triangle tests
per texel).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from backend.errors import BadMesh
from backend.mesh.nearest import SurfaceIndex
from backend.mesh.tangents import encode_normals, split_at_hard_edges, to_rgb8, vertex_normals, vertex_tangents, weld
from backend.mesh.texture import atlas as atlas_mod
from backend.mesh.texture.projection import PosedViews, bake_from_views
from backend.mesh.texture.source import ColourSource
from backend.mesh.texture.uv import Unwrapped, unwrap
from backend.mesh.types import Material, Mesh
from backend.progress import ProgressFn, null_progress, subrange

log = logging.getLogger(__name__)

#: Texels per chunk of the source bake (bounds memory, gives progress points).
TEXEL_CHUNK = 1 << 17
#: How far along its normal a texel looks for the source surface, as a share of the source's
#: bounding-box diagonal (a "cage"); beyond it, or where the search does not converge, the
#: closest point is used.
CAGE = 0.05
#: Edges whose faces meet at more than this many degrees are hard: the shading normals (and
#: the directions texels look along for the source) split there instead of bending round.
HARD_ANGLE = 40.0
#: Kept UVs may stray this far outside the unit square (rounding of exporters) before they are refused.
UV_SLACK = 1e-3


@dataclass
class BakeResult:
    """A baked mesh and facts about the bake.

    Attributes
    ----------
    mesh : Mesh
        Split vertices, the target's faces (and polygons), ``uv``, ``normals`` (the shading
        normals: split at hard edges, and those a normal map was baked against; None only
        with ``hard_angle=None`` and no normal map, when readers shade flat) and a
        :class:`Material` with ``base_color`` (and ``normal``) PNGs.
    summary : dict
        JSON-able facts: texture size, charts, texels covered, seconds per stage, ...
    base_color : (size, size, 3) uint8
    normal_map : (size, size, 3) uint8 or None
    """

    mesh: Mesh
    summary: dict = field(default_factory=dict)
    base_color: np.ndarray | None = None
    normal_map: np.ndarray | None = None


def bake_textures(target: Mesh, *, source: ColourSource | None = None, views: PosedViews | None = None,
                  texture_size: int = 1024, padding: int = 4, normal_map: bool = True,
                  view_power: float = 4.0, roughness: float | None = None, uv_method: str = "auto",
                  hard_angle: float | None = HARD_ANGLE, progress: ProgressFn = null_progress) -> BakeResult:
    """UV-unwrap ``target`` and bake its base colour (and normal map) from ``source`` or ``views``.

    Parameters
    ----------
    target : Mesh
        The mesh to texture (its frame and scale are kept). Its polygons (``face_sizes``) are
        kept, except quads whose diagonal becomes a UV seam (stored as two triangles).
    source : ColourSource, optional
        A coloured mesh in the same frame as ``target`` (e.g. the original of a remesh).
    views : PosedViews, optional
        Posed images of the object; exactly one of ``source`` and ``views`` is required.
    texture_size : int
        Side of the square textures, in texels.
    padding : int
        Empty texels around each UV chart.
    normal_map : bool
        Bake a tangent-space normal map too (from the source's shading normals, or from the
        views' normal maps when they carry them; views without normals bake none).
    view_power : float
        Exponent of the view-angle cosine when blending views.
    roughness : float, optional
        The result's roughness; None: the source's (area-weighted over its glTF materials),
        else 0.8. The metallic factor follows the source the same way (else 0).
    uv_method : {"auto", "xatlas", "project", "keep"}
        See :mod:`backend.mesh.texture.uv`; ``keep`` bakes into the target's own UVs
        (:func:`own_layout`), keeping its vertices and polygons as they are.
    hard_angle : float or None
        Edges whose faces meet at more than this many degrees are hard: the result's normals
        split there (:func:`backend.mesh.tangents.split_at_hard_edges`) and texels look for
        the source along their own side's normal, and the result carries these normals even
        without a normal map (smooth shading, crisp creases: on the bench's low-poly Duck
        without a normal map 36.8 -> 38.1 dB against flat shading). None: smooth normals
        everywhere, written only with a normal map.

    Returns
    -------
    BakeResult
    """
    if (source is None) == (views is None):
        raise ValueError("exactly one of source and views is required, got "
                         + ("both" if source is not None else "neither"))
    if view_power < 0:
        raise ValueError(f"view_power must be >= 0, got {view_power!r}")
    timing: dict[str, float] = {}
    lap = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        timing[name] = round(now - lap, 3)
        lap = now

    if uv_method == "keep":
        unwrapped = own_layout(target, texture_size)
    else:
        unwrapped = unwrap(target, texture_size=texture_size, padding=padding, method=uv_method,
                           progress=subrange(progress, 0.0, 0.3))
    mesh = unwrapped.mesh
    stage("unwrap")
    progress(0.3, "rasterizing the atlas")
    size = int(texture_size)
    texels = atlas_mod.rasterize(mesh.uv, mesh.faces, size)
    if len(texels.pixel) == 0:
        raise BadMesh("The UV layout covers no texel: the mesh is too small for this texture size. Use a larger "
                      "texture size.")
    # Each vertex's vertex in the target, and through the target's own ids (seam copies it
    # arrived with) the vertex it copies.
    vertex_ids = unwrapped.vertex_map
    if target.vertex_ids is not None:
        vertex_ids = np.asarray(target.vertex_ids, dtype=np.int64)[vertex_ids]
    if hard_angle is not None:
        copy, faces, normals = split_at_hard_edges(mesh.vertices, mesh.faces, hard_angle, mesh.face_sizes)
        mesh = Mesh(mesh.vertices[copy], faces, mesh.face_sizes, uv=mesh.uv[copy])
        vertex_ids = vertex_ids[copy]
    else:
        normals = vertex_normals(mesh.vertices, mesh.faces)
    points = texels.interpolate(mesh.vertices, mesh.faces)
    texel_normals = _unit(texels.interpolate(normals, mesh.faces))
    stage("rasterize")

    want_normals = normal_map
    source_normals = None
    if source is not None:
        colour, source_normals = _from_source(source, points, texel_normals, want_normals,
                                              subrange(progress, 0.3, 0.85))
        unseen = 0
    else:
        colour, source_normals, unseen = _from_views(views, mesh, texels, points, texel_normals, view_power,
                                                     want_normals, subrange(progress, 0.3, 0.85))
    stage("colour" if not want_normals else "colour_and_normals")

    progress(0.85, "encoding textures")
    base = atlas_mod.dilate(texels.image(colour), _known(texels))
    # RGB only: results are opaque (glTF alphaMode OPAQUE ignores alpha anyway).
    base_u8 = np.clip(np.round(base[..., :3] * 255.0), 0, 255).astype(np.uint8)
    normal_u8 = None
    out_normals = normals if hard_angle is not None else None
    if want_normals and source_normals is not None:
        tangents = vertex_tangents(mesh.vertices, mesh.faces, mesh.uv, normals)
        t = texels.interpolate(tangents[:, :3], mesh.faces)
        n = texels.interpolate(normals, mesh.faces)
        w = texels.interpolate(tangents[:, 3], mesh.faces)
        coords = encode_normals(source_normals, t, n, np.where(w < 0, -1.0, 1.0))
        img = texels.image(to_rgb8(coords))
        normal_u8 = atlas_mod.dilate(img, _known(texels))
        out_normals = normals
    stage("encode")
    factors = source.surface_factors() if source is not None else None
    rough = roughness if roughness is not None else factors[0] if factors else Material.roughness
    metallic = factors[1] if factors else 0.0
    material = Material(base_color=_png(base_u8), normal=None if normal_u8 is None else _png(normal_u8),
                        roughness=round(float(rough), 4), metallic=round(float(metallic), 4))
    result_mesh = Mesh(mesh.vertices, mesh.faces, mesh.face_sizes, uv=mesh.uv, material=material,
                       normals=out_normals, vertex_ids=np.asarray(vertex_ids, dtype=np.int64))
    stage("png")
    progress(1.0, "baked")
    summary = {
        "texture_size": size,
        "uv_method": unwrapped.method,
        "charts": unwrapped.charts,
        "utilization": round(unwrapped.utilization if uv_method != "keep" else texels.inside.sum() / size ** 2, 3),
        "texels_covered": int(texels.inside.sum()),
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "normal_map": normal_u8 is not None,
        "roughness": material.roughness,
        "metallic": material.metallic,
        "colour_from": "source" if source is not None else "views",
        "stage_seconds": timing,
    }
    if mesh.face_sizes is not None:
        summary["quads_split_by_seams"] = unwrapped.quads_split
    if views is not None:
        summary["texels_unseen"] = int(unseen)
        # The share of the surface's texels some view saw; the rest is filled across the surface.
        summary["texels_seen_share"] = round(1.0 - unseen / max(len(texels.pixel), 1), 3)
        if normal_map and normal_u8 is None:
            summary["normal_map_skipped"] = "the views carry no normal maps (files.normal_world)"
    return BakeResult(result_mesh, summary, base_u8, normal_u8)


def own_layout(target: Mesh, texture_size: int) -> Unwrapped:
    """The target's own UVs as the layout to bake into (``uv_method="keep"``).

    They must exist, be finite and lie in the unit square (a baked texture covers only that
    square: tiled and UDIM layouts cannot be kept); islands may overlap (mirrored halves then
    share their texels). Raises ValueError with what to do otherwise.
    """
    if target.uv is None:
        raise BadMesh("The target has no UVs to keep; give it a UV map or let Meshsmith unwrap it "
                      "(Keep UVs off; uv_method 'auto').")
    uv = np.asarray(target.uv, dtype=np.float64)
    if uv.shape != (len(target.vertices), 2) or not np.isfinite(uv).all():
        raise BadMesh("The target's UVs are not one finite (u, v) pair per vertex; unwrap it again.")
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    if lo.min() < -UV_SLACK or hi.max() > 1.0 + UV_SLACK:
        raise BadMesh(f"The target's UVs reach outside the 0..1 square (u {lo[0]:.3g}..{hi[0]:.3g}, "
                      f"v {lo[1]:.3g}..{hi[1]:.3g}) and one texture covers only that square; pack them into it "
                      "(in Blender: UV > Pack Islands) or let Meshsmith unwrap (Keep UVs off).")
    faces = np.asarray(target.faces, dtype=np.int64)
    uv_area = 0.5 * np.abs(np.cross(uv[faces[:, 1]] - uv[faces[:, 0]], uv[faces[:, 2]] - uv[faces[:, 0]])).sum()
    if uv_area * texture_size ** 2 < 1.0:
        raise BadMesh("The target's UV map has (almost) no area, so no texel would land on it; unwrap it "
                      "or let Meshsmith unwrap (Keep UVs off).")
    n = len(target.vertices)
    mesh = Mesh(np.asarray(target.vertices, dtype=np.float64), faces, target.face_sizes, uv=np.clip(uv, 0.0, 1.0),
                normals=target.normals)
    islands = _islands(faces, n)
    return Unwrapped(mesh, np.arange(n, dtype=np.int64), islands, float("nan"), float("nan"), 0, "keep")


def _islands(faces: np.ndarray, n: int) -> int:
    """Connected pieces of faces sharing vertices (the UV islands of a mesh split along its seams)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    used = np.zeros(n, dtype=bool)
    used[faces.ravel()] = True
    _, label = connected_components(graph, directed=False)
    return int(len(np.unique(label[used])))


def _from_source(source: ColourSource, points: np.ndarray, normals: np.ndarray, want_normals: bool,
                 progress: ProgressFn) -> tuple[np.ndarray, np.ndarray | None]:
    progress(0.0, "indexing the source")
    index = SurfaceIndex(source.vertices, source.faces)
    lo, hi = source.vertices.min(axis=0), source.vertices.max(axis=0)
    reach = CAGE * float(np.linalg.norm(hi - lo))
    k = len(points)
    colour = np.zeros((k, 4))
    src_normals = np.zeros((k, 3)) if want_normals else None
    for start in range(0, k, TEXEL_CHUNK):
        stop = min(start + TEXEL_CHUNK, k)
        hit = index.along_normals(points[start:stop], normals[start:stop], max_distance=reach)
        colour[start:stop] = source.colour_at(hit.face, hit.bary)
        if src_normals is not None:
            src_normals[start:stop] = source.normal_at(hit.face, hit.bary)
        progress(0.1 + 0.9 * stop / k, "sampling the source")
    return colour, src_normals


def _from_views(views: PosedViews, mesh: Mesh, texels: atlas_mod.Texels, points: np.ndarray,
                normals: np.ndarray, power: float, want_normals: bool, progress: ProgressFn
                ) -> tuple[np.ndarray, np.ndarray | None, int]:
    samples = bake_from_views(views, mesh.vertices, mesh.faces, points, normals, power=power,
                              progress=subrange(progress, 0.0, 0.8))
    progress(0.8, "filling what no view sees")
    seen = samples.weight > 0
    colour = _fill_unseen(samples.colour, seen, mesh, texels)
    src_normals = None
    if want_normals and samples.normal is not None:
        # Unseen texels keep the target's own normal: a flat (128, 128, 255) texel.
        src_normals = np.where(seen[:, None], samples.normal, normals)
    return colour, src_normals, int((~seen).sum())


def _fill_unseen(colour: np.ndarray, seen: np.ndarray, mesh: Mesh, texels: atlas_mod.Texels) -> np.ndarray:
    """Colour texels no view saw by diffusion over the surface.

    Seen texels give their colour to the corners of their triangle (barycentric weights);
    vertices that got some are fixed, the others solve Laplace's equation over the mesh edges
    (vertices at one position welded, so colour crosses UV seams), and unseen texels take the
    interpolation of their triangle's corners. A connected piece that no view sees at all
    takes the mean seen colour.
    """
    if seen.all() or not seen.any():
        if not seen.any():
            return np.tile([0.5, 0.5, 0.5, 1.0], (len(colour), 1))
        return colour
    from scipy.sparse import coo_matrix, csr_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import spsolve

    rep = weld(mesh.vertices)
    ids, vid = np.unique(rep, return_inverse=True)
    faces = vid[mesh.faces]
    nv = len(ids)
    corner = faces[texels.face[seen]]  # (s, 3)
    wts = np.clip(texels.bary[seen], 0.0, None)
    acc = np.zeros((nv, colour.shape[1]))
    wsum = np.zeros(nv)
    for c in range(3):
        np.add.at(acc, corner[:, c], wts[:, c:c + 1] * colour[seen])
        np.add.at(wsum, corner[:, c], wts[:, c])
    known = wsum > 1e-6
    value = np.zeros((nv, colour.shape[1]))
    value[known] = acc[known] / wsum[known, None]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(nv, nv))
    adj = csr_matrix(((adj + adj.T) > 0).astype(np.float64))
    unknown = np.flatnonzero(~known)
    if len(unknown):
        _, label = connected_components(adj, directed=False)
        has_known = np.zeros(label.max() + 1, dtype=bool)
        has_known[label[known]] = True
        solvable = unknown[has_known[label[unknown]]]
        lonely = unknown[~has_known[label[unknown]]]
        if len(solvable):
            degree = np.asarray(adj.sum(axis=1)).ravel()
            sub = adj[solvable][:, solvable]
            lap = csr_matrix((degree[solvable], (np.arange(len(solvable)), np.arange(len(solvable)))),
                             shape=(len(solvable),) * 2) - sub
            rhs = adj[solvable][:, np.flatnonzero(known)] @ value[known]
            value[solvable] = np.atleast_2d(spsolve(lap.tocsc(), rhs)).reshape(len(solvable), -1)
        if len(lonely):
            value[lonely] = colour[seen].mean(axis=0)
    out = colour.copy()
    miss = ~seen
    out[miss] = np.einsum("kc,kcj->kj", np.clip(texels.bary[miss], 0.0, None), value[faces[texels.face[miss]]])
    return np.clip(out, 0.0, 1.0)


def _known(texels: atlas_mod.Texels) -> np.ndarray:
    known = np.zeros(texels.size * texels.size, dtype=bool)
    known[texels.pixel] = True
    return known.reshape(texels.size, texels.size)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    mode = "RGBA" if pixels.shape[2] == 4 else "RGB"
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()
