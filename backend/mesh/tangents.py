"""Shading normals, MikkTSpace-style tangents, and tangent-space normal map encoding.

A tangent-space normal map is only right for the exact normals and tangents a renderer
rebuilds, so this module states them, and :mod:`backend.mesh.texture.bake` encodes with them.

Vertex normals (:func:`vertex_normals`)
    The sum of the unit normals of the faces around a vertex, each weighted by the face's
    corner angle there (as Blender computes smooth normals), normalized. Vertices that share
    a position (copies made by UV seams) share the normal, so seams do not show in shading.
    :func:`split_at_hard_edges` does the same within smoothing groups: vertices are split
    along edges sharper than a hard angle, so that creases shade crisp. Results with a normal
    map carry the normals it was baked against (``Mesh.normals``, written as the glTF
    ``NORMAL`` attribute, which Blender's glTF importer keeps as custom normals).

Tangents (:func:`vertex_tangents`), MikkTSpace's rules (the library Blender and glTF use)
    Per triangle, the direction in which ``u`` grows: ``T_f = (dv2 e1 - dv1 e2) / det`` with
    ``e1, e2`` the edges from the first corner, ``(du1, dv1), (du2, dv2)`` their UV deltas and
    ``det = du1 dv2 - du2 dv1`` (the signed UV area times 2; its sign is the face's
    handedness). At each corner, ``T_f`` is projected on the plane of the vertex normal ``n``
    and normalized, and added with the weight of the corner angle (measured between the two
    edges projected on the same plane). Per vertex the sum is projected on ``n`` once more
    and normalized (Gram-Schmidt); its sign ``w`` is the handedness of the faces (+1 when the
    UV area is positive). Faces with no UV area add nothing. MikkTSpace splits a vertex
    whose faces disagree in handedness; charts from :mod:`backend.mesh.texture.uv` never mirror
    within a chart, so a vertex copy (one per chart) has one handedness.

Per pixel (what Cycles' and EEVEE's Normal Map node do, and what :func:`encode_normals` inverts)
    ``T`` and ``N`` are the barycentric interpolation of the vertex tangents and normals,
    *not* renormalized; ``B = w * cross(N, T)``; a texel holding ``rgb`` (8-bit, read as
    Non-Color data) stands for ``c = 2 * rgb - 1`` and shades with
    ``normalize(c.x T + c.y B + c.z N)``. This is glTF's and Blender's convention: +X along
    +U, +Y along +V ("OpenGL", Y up), +Z out of the surface; the flat colour is (128, 128, 255).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Below this length a vector is treated as zero.
EPS = 1e-12


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (m, 3) of the triangles (zero for degenerate ones), counter-clockwise = front."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    return _unit(n)


def corner_angles(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Interior angle (m, 3) of each triangle at each of its corners, radians."""
    p = vertices[faces]  # (m, 3, 3)
    out = np.empty(faces.shape)
    for i in range(3):
        e1 = _unit(p[:, (i + 1) % 3] - p[:, i])
        e2 = _unit(p[:, (i + 2) % 3] - p[:, i])
        out[:, i] = np.arccos(np.clip(np.einsum("ij,ij->i", e1, e2), -1.0, 1.0))
    return out


def weld(vertices: np.ndarray) -> np.ndarray:
    """Index (n,) of a representative among vertices at exactly the same position."""
    _, first, inverse = np.unique(np.asarray(vertices), axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Angle-weighted unit vertex normals (n, 3), shared by vertices at the same position.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int

    Returns
    -------
    (n, 3) float64; a vertex in no face gets (0, 0, 1).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    rep = weld(vertices)
    fn = face_normals(vertices, faces)
    angles = corner_angles(vertices, faces)
    acc = np.zeros((len(vertices), 3))
    for i in range(3):
        np.add.at(acc, rep[faces[:, i]], fn * angles[:, i:i + 1])
    out = _unit(acc[rep])
    out[np.linalg.norm(out, axis=1) < 0.5] = (0.0, 0.0, 1.0)
    return out


@dataclass(frozen=True)
class SmoothingGroups:
    """Triangles joined across soft edges (see :func:`smoothing_groups`).

    Attributes
    ----------
    group : (m,) int64
        Each triangle's group.
    edges : (p, 2) int64
        The edges that lie in exactly two triangles, ``(lo, hi)`` vertex indices.
    f0, f1 : (p,) int64
        Those two triangles.
    hard : (p,) bool
        Whether the edge is hard (the triangles' normals differ by more than the angle).
    """

    group: np.ndarray
    edges: np.ndarray
    f0: np.ndarray
    f1: np.ndarray
    hard: np.ndarray


def smoothing_groups(normals: np.ndarray, faces: np.ndarray, angle_deg: float,
                     polygon: np.ndarray | None = None) -> SmoothingGroups:
    """Connected sets of triangles across edges whose faces meet at no more than ``angle_deg``.

    Edges in one or in three or more triangles join nothing. The bake's hard edges
    (:func:`split_at_hard_edges`) and the artist pipeline's crease patches
    (:mod:`backend.mesh.retopo.artist`) are both these groups.

    Parameters
    ----------
    normals : (m, 3) float
        Unit face normals (:func:`face_normals`).
    faces : (m, 3) int
        Triangles on welded vertex indices (copies at one position share an index).
    angle_deg : float
    polygon : (m,) int or None
        The polygon each triangle belongs to: an edge inside a polygon (a quad's diagonal)
        is never hard, however far the polygon folds, since Blender has no edge there.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(faces)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)       # face f at rows 3f..3f+2
    key = edges[:, 0] * (int(faces.max(initial=0)) + 1) + edges[:, 1]
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    pair = first[np.diff(np.r_[first, len(ks)]) == 2]
    f0, f1 = order[pair] // 3, order[pair + 1] // 3
    hard = np.einsum("ij,ij->i", normals[f0], normals[f1]) < np.cos(np.radians(angle_deg)) - 1e-12
    if polygon is not None:
        hard &= polygon[f0] != polygon[f1]
    soft = ~hard
    _, group = connected_components(coo_matrix((np.ones(int(soft.sum())), (f0[soft], f1[soft])), shape=(m, m)),
                                    directed=False)
    return SmoothingGroups(group, edges[order[pair]], f0, f1, hard)


def split_at_hard_edges(vertices: np.ndarray, faces: np.ndarray, hard_angle: float,
                        face_sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split vertices along hard edges; smooth normals within each side.

    An edge is hard when its two triangles' normals differ by more than ``hard_angle``
    degrees (edges in one or three or more triangles count as hard too). Triangles joined
    through soft edges form *smoothing groups*; a vertex gets one copy per group around it,
    with the angle-weighted normal of that group's triangles there (copies at the same
    position, UV seams, share it). This is what Blender shows for a mesh whose sharp edges
    are marked and which is shaded smooth: creases stay crisp, curved surfaces smooth.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    hard_angle : float
        Degrees, in ``(0, 180]``; 180 makes every shared edge soft (plain :func:`vertex_normals`).
    face_sizes : (k,) int or None
        Polygon sizes (3 or 4) when ``faces`` lists polygons' triangles in order (see
        :mod:`backend.mesh.gltf`): a polygon is never split, so a quad ``(a, b, c), (a, c, d)``
        stays two triangles of that form on the copies.

    Returns
    -------
    source : (n',) int64
        The input vertex each output vertex copies (``n' >= n`` minus unused vertices).
    faces : (m, 3) int64
        The same triangles on the copies.
    normals : (n', 3) float64
        Unit normals.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    m = len(faces)
    rep = weld(vertices)
    fn = face_normals(vertices, faces)
    wf = rep[faces]
    polygon = None if face_sizes is None else np.repeat(np.arange(len(face_sizes)), np.asarray(face_sizes) - 2)
    group = smoothing_groups(fn, wf, hard_angle, polygon).group
    groups = int(group.max()) + 1 if m else 1
    corner_group = np.repeat(group, 3)
    copies, inverse = np.unique(faces.reshape(-1) * groups + corner_group, return_inverse=True)
    shared, shared_inverse = np.unique(wf.reshape(-1) * groups + corner_group, return_inverse=True)
    weighted = (fn[:, None, :] * corner_angles(vertices, faces)[..., None]).reshape(-1, 3)
    acc = np.zeros((len(shared), 3))
    np.add.at(acc, shared_inverse.reshape(-1), weighted)
    normals = np.zeros((len(copies), 3))
    normals[inverse.reshape(-1)] = _unit(acc)[shared_inverse.reshape(-1)]
    normals[np.linalg.norm(normals, axis=1) < 0.5] = (0.0, 0.0, 1.0)
    return copies // groups, inverse.reshape(-1, 3).astype(np.int64), normals


def vertex_tangents(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """MikkTSpace-style tangents (n, 4): unit ``xyz`` orthogonal to the normal, ``w`` = +-1.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    uv : (n, 2) float
        Origin bottom-left.
    normals : (n, 3) float
        Unit vertex normals (those the renderer will use).

    Returns
    -------
    (n, 4) float64. A vertex whose faces have no UV area gets any unit vector orthogonal to
    its normal, with ``w = 1``.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    uv = np.asarray(uv, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    p, t = vertices[faces], uv[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    has_area = np.abs(det) > EPS
    # Direction of growing u (the sign of det folded in), its length irrelevant.
    t_face = (d2[:, 1:2] * e1 - d1[:, 1:2] * e2) * np.where(det < 0, -1.0, 1.0)[:, None]
    handed = np.where(det < 0, -1.0, 1.0)
    acc = np.zeros((len(vertices), 3))
    sign_acc = np.zeros(len(vertices))
    for i in range(3):
        v = faces[:, i]
        n = normals[v]
        tc = _unit(_project(t_face, n))
        a = _unit(_project(p[:, (i + 1) % 3] - p[:, i], n))
        b = _unit(_project(p[:, (i + 2) % 3] - p[:, i], n))
        angle = np.arccos(np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0))
        weight = np.where(has_area, angle, 0.0)
        np.add.at(acc, v, tc * weight[:, None])
        np.add.at(sign_acc, v, handed * weight)
    tangent = _unit(_project(acc, normals))
    missing = np.linalg.norm(tangent, axis=1) < 0.5
    if missing.any():
        tangent[missing] = _any_orthogonal(normals[missing])
    w = np.where(sign_acc < 0, -1.0, 1.0)
    return np.concatenate([tangent, w[:, None]], axis=1)


def encode_normals(target_normals: np.ndarray, tangent: np.ndarray, normal: np.ndarray, sign: np.ndarray
                   ) -> np.ndarray:
    """Tangent-space coordinates (k, 3) that make the renderer shade with ``target_normals``.

    Inverts the per-pixel rule of the module docstring: with ``T = tangent``, ``N = normal``
    (interpolated, not renormalized) and ``B = sign * cross(N, T)``, solves
    ``[T B N] c = target`` and normalizes ``c``; the renderer's ``normalize(c.x T + c.y B + c.z N)``
    then gives back ``target`` exactly (up to 8-bit rounding).

    Parameters
    ----------
    target_normals : (k, 3) float
        Wanted unit shading normals, same frame as ``tangent`` and ``normal``.
    tangent, normal : (k, 3) float
    sign : (k,) float

    Returns
    -------
    (k, 3) float64 unit vectors; (0, 0, 1) where the frame is degenerate.
    """
    t = np.asarray(tangent, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    b = np.asarray(sign, dtype=np.float64)[:, None] * np.cross(n, t)
    frame = np.stack([t, b, n], axis=2)  # columns T, B, N: (k, 3, 3)
    det = np.linalg.det(frame)
    ok = np.abs(det) > 1e-9
    out = np.tile([0.0, 0.0, 1.0], (len(t), 1))
    if ok.any():
        c = np.linalg.solve(frame[ok], np.asarray(target_normals, dtype=np.float64)[ok][..., None])[..., 0]
        out[ok] = _unit(c)
    bad = np.linalg.norm(out, axis=1) < 0.5
    out[bad] = (0.0, 0.0, 1.0)
    return out


def decode_normals(coords: np.ndarray, tangent: np.ndarray, normal: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """The renderer's side: unit shading normals (k, 3) from tangent-space ``coords`` (k, 3)."""
    t = np.asarray(tangent, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    b = np.asarray(sign, dtype=np.float64)[:, None] * np.cross(n, t)
    c = np.asarray(coords, dtype=np.float64)
    return _unit(c[:, 0:1] * t + c[:, 1:2] * b + c[:, 2:3] * n)


def to_rgb8(coords: np.ndarray) -> np.ndarray:
    """8-bit colours (k, 3) uint8 of tangent-space unit vectors: ``rgb = round((c + 1) / 2 * 255)``."""
    return np.clip(np.round((np.asarray(coords) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_rgb8(rgb: np.ndarray) -> np.ndarray:
    """Blender's decoding of a Non-Color normal map texel: ``c = 2 * rgb / 255 - 1``, (k, 3) float64."""
    return np.asarray(rgb, dtype=np.float64) / 255.0 * 2.0 - 1.0


def _project(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    return v - n * np.einsum("ij,ij->i", v, n)[:, None]


def _unit(v: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(length > EPS, v / np.where(length > EPS, length, 1.0), 0.0)


def _any_orthogonal(n: np.ndarray) -> np.ndarray:
    helper = np.where(np.abs(n[:, 0:1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    return _unit(np.cross(np.cross(n, helper), n))
