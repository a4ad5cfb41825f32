"""Triangles to quads: pairing the triangles of a quad-dominant mesh, and subdivision into quads.

Pairing (:func:`pair_triangles`) joins each triangle to its nearest partner along a path
through quads, re-cutting the quads on the way: no polygon is added and no vertex moves (but
where a path ends at an open border, whose edge collapses).

Subdivision (:func:`subdivide`): every polygon of ``n`` corners becomes ``n`` quads, through its centroid and its edges'
midpoints (the topology of one Catmull-Clark step, without its smoothing): a pure-quad mesh
with the same winding, whose new vertices the caller may move onto a surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.mesh.polygons import NO_CORNER, edge_counts, halfedges, merged_positions, pad, polygon_sizes

# -- subdivision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Subdivision:
    """What :func:`subdivide` returns.

    Attributes
    ----------
    vertices : (n + e + k, 3) float64
        The old vertices, then edge midpoints, then polygon centroids.
    polygons : (sum of sizes, 4) int64
        Quads only, wound as their polygons.
    new : (n + e + k,) bool
        True for the midpoints and centroids.
    """

    vertices: np.ndarray
    polygons: np.ndarray
    new: np.ndarray = field(repr=False)


def subdivide(vertices: np.ndarray, polygons: np.ndarray) -> Subdivision:
    """Split every polygon of ``n`` corners into ``n`` quads (module doc, "Subdivision")."""
    n, k = len(vertices), len(polygons)
    src, dst, face, corner = halfedges(polygons)
    edges, _, edge_of = edge_counts(polygons)
    sizes = polygon_sizes(polygons)
    mid = 0.5 * (vertices[edges[:, 0]] + vertices[edges[:, 1]])
    centre = np.zeros((k, 3))
    np.add.at(centre, face, vertices[src])
    centre /= sizes[:, None]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    prev = start[face] + (corner - 1) % sizes[face]                   # half-edge entering src
    quads = np.stack([src, n + edge_of, n + len(edges) + face, n + edge_of[prev]], axis=1)
    out_v = np.vstack([vertices, mid, centre])
    new = np.zeros(len(out_v), dtype=bool)
    new[n:] = True
    return Subdivision(out_v, quads.astype(np.int64), new)


# -- triangles paired into quads ------------------------------------------------------------

def pair_triangles(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn the triangles of a quad-dominant mesh into quads without adding polygons.

    A triangle is joined to the nearest other triangle (fewest polygons between them) along
    a path through quads: each quad on the path is cut by the diagonal that separates the
    edge the path enters by from the edge it leaves by, and the triangles along the path are
    paired anew, ``(t, q1a), (q1b, q2a), ..., (qkb, u)``: every polygon stays, the two
    triangles become quads. On an open surface an open border may be nearer than any
    triangle (and an odd count of triangles needs one): the path then ends at the border, and
    the last half, a triangle on the border, goes: its border edge collapses to its midpoint.
    (A new vertex on that edge would make it a quad, but one with a flat 180-degree corner on
    the border, a vertex with a single quad that no move opens.) Vertices do not move except
    those merged border ends, so the surface is the same one but for those triangles.

    Parameters
    ----------
    vertices : (n, 3) float
    polygons : (k, 4) int64
        Oriented, every edge in at most two polygons.

    Returns
    -------
    vertices : (n', 3) float64
    polygons : (k', 4) int64
        Quads, plus any triangle that found no partner and no border.
    left : int
        Triangles left.
    """
    polygons = np.asarray(polygons, dtype=np.int64)
    if not (polygons[:, 3] == NO_CORNER).any():
        return np.asarray(vertices, dtype=np.float64), polygons, 0
    rows = [[a for a in r if a != NO_CORNER] for r in polygons.tolist()]
    src, dst, face, _ = halfedges(polygons)
    owner: dict[tuple[int, int], int] = dict(zip(zip(src.tolist(), dst.tolist()), face.tolist()))
    alive = [True] * len(rows)

    def neighbours(f: int):
        p = rows[f]
        for i, a in enumerate(p):
            b = p[(i + 1) % len(p)]
            yield (a, b), owner.get((b, a))

    def replace(f: int, new: list[int] | None) -> None:
        p = rows[f]
        for i, a in enumerate(p):
            if owner.get((a, p[(i + 1) % len(p)])) == f:
                del owner[(a, p[(i + 1) % len(p)])]
        if new is None:
            alive[f] = False
            rows[f] = []
            return
        rows[f] = new
        for i, a in enumerate(new):
            owner[(a, new[(i + 1) % len(new)])] = f

    ends: list[tuple[int, int]] = []                        # border edges to collapse at the end
    spent: set[int] = set()                                 # their triangles: paired already

    for t in range(len(rows)):
        if not alive[t] or len(rows[t]) != 3 or t in spent:
            continue
        path = _path_to_partner(t, rows, neighbours, spent)
        if path is None:
            continue
        faces, edges = path                                 # faces[0] = t; edges[i]: between faces[i], faces[i+1]
        halves = [list(rows[t])]                            # the triangle each face hands back
        pieces: list[tuple[list[int], list[int]]] = []      # per quad on the path: (entry half, exit half)
        for i in range(1, len(faces) - (0 if edges[-1][1] is None else 1)):
            pieces.append(_cut_between(rows[faces[i]], edges[i - 1], edges[i]))
        if edges[-1][1] is None:
            # Border: the last quad's exit half is a triangle on the border, whose open edge
            # collapses once every path is found.
            tail = pieces[-1][1] if pieces else halves[0]
        new_rows = []
        left = halves[0]
        for entry, exit_half in pieces:
            new_rows.append(_join(left, entry))
            left = exit_half
        if edges[-1][1] is None:
            new_rows.append(tail)
        else:
            new_rows.append(_join(left, list(rows[faces[-1]])))
        if any(r is None for r in new_rows):
            continue
        for f in faces:
            replace(f, None)
        for r in new_rows:
            rows.append(r)
            alive.append(True)
            replace(len(rows) - 1, r)
        if edges[-1][1] is None:
            spent.add(len(rows) - 1)
            ends.append(edges[-1][0])
    out = [r for r, keep in zip(rows, alive) if keep]
    v = np.asarray(vertices, dtype=np.float64)
    polys = pad(out) if out else np.zeros((0, 4), dtype=np.int64)
    if ends:
        v, polys = _border_edges_collapsed(v, polys, ends)
    return v, polys, int((polys[:, 3] == NO_CORNER).sum()) if len(polys) else 0


def _border_edges_collapsed(vertices: np.ndarray, polygons: np.ndarray, ends: list[tuple[int, int]]
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the ends of each edge in ``ends`` at their mean (:func:`backend.mesh.polygons.merged_positions`:
    chains merge whole); polygons ``(k, 4)`` keep their distinct corners in order (the triangles on
    those edges lose theirs and go), in their order. Unused vertices stay."""
    a, b = np.array(ends, dtype=np.int64).T
    merged, label = merged_positions(vertices, a, b)
    out = np.where(polygons >= 0, label[np.maximum(polygons, 0)], NO_CORNER)
    keep = np.ones(len(out), dtype=bool)
    # Only polygons on a merged vertex can lose a corner (a group holds edge ends only).
    for row in np.flatnonzero(np.isin(polygons, np.concatenate([a, b])).any(axis=1)).tolist():
        corners = [x for x in out[row].tolist() if x != NO_CORNER]
        corners = [x for i, x in enumerate(corners) if x != corners[i - 1]]    # merged neighbours: one corner
        if len(set(corners)) >= 3:
            out[row] = corners + [NO_CORNER] * (4 - len(corners))
        else:
            keep[row] = False
    return merged, out[keep]


def _path_to_partner(t, rows, neighbours, spent=frozenset()):
    """Breadth-first from triangle ``t`` through quads to the nearest other triangle or open
    edge (``spent`` triangles are neither partners nor passed through). Returns ``(faces, edges)``:
    ``edges[i] = ((a, b), next)`` is the directed edge of ``faces[i]`` the path leaves by; for an
    open edge, ``next`` is None."""
    from collections import deque

    parent = {t: None}
    queue = deque([t])
    while queue:
        f = queue.popleft()
        for edge, g in neighbours(f):
            if g is None:
                return _unwind(parent, f, (edge, None))
            if g in parent or g in spent:
                continue
            parent[g] = (f, edge)
            if len(rows[g]) == 3:
                return _unwind(parent, g, None)
            queue.append(g)
    return None


def _unwind(parent, last, final):
    faces, edges = [last], []
    f = last
    while parent[f] is not None:
        prev, edge = parent[f]
        faces.append(prev)
        edges.append((edge, f))
        f = prev
    faces.reverse()
    edges.reverse()
    if final is not None:
        edges.append(final)
    return faces, edges


def _cut_between(quad: list[int], e_in, e_out) -> tuple[list[int], list[int]]:
    """Split a quad by the diagonal that puts edge ``e_in`` (as the previous face runs it) and
    edge ``e_out`` (as this quad runs it) into different triangles: (entry half, exit half)."""
    (a_in, b_in), _ = e_in
    (a_out, b_out), _ = e_out
    # The quad runs the entry edge backwards: b_in -> a_in.
    i = next(k for k in range(4) if quad[k] == b_in and quad[(k + 1) % 4] == a_in)
    j = next(k for k in range(4) if quad[k] == a_out and quad[(k + 1) % 4] == b_out)
    v = quad
    if {i, j} in ({0, 1}, {2, 3}) or i == j:
        d = ([v[1], v[2], v[3]], [v[1], v[3], v[0]])       # diagonal v1-v3: halves hold edges {1,2} and {3,0}
        side = {1: 0, 2: 0, 3: 1, 0: 1}
    else:
        d = ([v[0], v[1], v[2]], [v[0], v[2], v[3]])       # diagonal v0-v2: halves hold edges {0,1} and {2,3}
        side = {0: 0, 1: 0, 2: 1, 3: 1}
    return d[side[i]], d[side[j]]


def _join(p: list[int], q: list[int]) -> list[int] | None:
    """The quad of two triangles that share an edge (``p`` runs it ``x -> y``, ``q`` runs ``y -> x``)."""
    for i in range(3):
        x, y = p[i], p[(i + 1) % 3]
        for j in range(3):
            if q[j] == y and q[(j + 1) % 3] == x:
                # p = (x, y, z) rotated; q = (y, x, w): the quad runs x -> w -> y -> z.
                z = p[(i + 2) % 3]
                w = q[(j + 2) % 3]
                return [x, w, y, z]
    return None
