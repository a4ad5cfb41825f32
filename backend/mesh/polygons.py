"""Triangle-and-quad meshes as arrays: conversion, repair into a clean 2-manifold, subdivision into quads.

Representation
--------------
A polygon mesh is ``vertices (n, 3) float64`` and ``polygons (k, 4) int64``: one row per
polygon, its corners in winding order; a triangle has ``-1`` (:data:`NO_CORNER`) in its last
column. Results leave the backend as :class:`backend.mesh.io.Mesh` (triangles + ``face_sizes``,
see :mod:`backend.mesh.gltf`); :func:`to_mesh` and :func:`from_mesh` convert.

Repair (:func:`repair`)
-----------------------
A remesher's raw output may have faces of five or more corners, edges shorter than rounding,
faces listed twice, edges in three or more faces, vertices where two fans of faces touch,
inconsistent winding, holes, and vertices with only two faces. :func:`repair` removes each
in turn, on any list of polygons:

1. *Short edges* (shorter than ``min_edge``) are collapsed: their ends become one vertex at
   their mean; corners repeated inside a polygon are dropped, polygons left with fewer than
   three distinct corners go.
2. *N-gons* (five or more corners) are cut into quads and at most one triangle, each cut
   taking the quad whose corner angles are closest to 90 degrees (the rule Instant Meshes
   uses to fill its own faces) among those whose new edge the mesh does not have yet.
3. *Duplicates*: polygons with the same set of corners are kept once.
4. *Non-manifold edges*: of the polygons on an edge used three or more times, the two largest
   stay.
5. *Winding*: polygons are flipped so that neighbours cross their shared edge in opposite
   directions (a breadth-first walk per connected piece); each piece keeps the winding most
   of its polygons came with. A piece that cannot be wound consistently (a Moebius-like
   tangle, from a fold in the remesher's output) keeps its winding and loses the polygons
   on the edges that disagree with it.
6. *Pinched vertices*: a vertex whose polygons form several fans gets one copy per fan.
7. *Holes*: each boundary loop is closed with quads (and one triangle for an odd loop), cut
   as in step 2; a loop longer than :data:`MAX_CUT_RING` (or with no allowed cut) by a fan
   around a new vertex at its centroid, which the caller may move onto its surface.
8. *Valence-2 vertices* (a vertex inside two polygons only, which then share two edges): the
   vertex is dissolved and the two polygons become one (two quads make a quad, a quad and a
   triangle a triangle).

Steps 3-8 repeat until a pass changes nothing (at most :data:`MAX_REPAIR_PASSES`); unused
vertices are dropped at the end. The counts of what was done come back in a
:class:`RepairReport`. The steps share the mesh's edges and half-edge twins
(:func:`halfedge_links`, a compiled bucket sort with a numpy twin), found again only after a
step changed the mesh; steps 4-5 run only where an edge is not two opposite half-edges.

Subdivision (:func:`subdivide`)
-------------------------------
Every polygon of ``n`` corners becomes ``n`` quads, through its centroid and its edges'
midpoints (the topology of one Catmull-Clark step, without its smoothing): a pure-quad mesh
with the same winding, whose new vertices the caller may move onto a surface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

#: Marks the missing fourth corner of a triangle in a ``(k, 4)`` polygon array.
NO_CORNER = -1

#: Repair passes over steps 3-8 before giving up on reaching a clean mesh.
MAX_REPAIR_PASSES = 4


@dataclass
class RepairReport:
    """What :func:`repair` changed, by step (counts).

    Attributes
    ----------
    short_edges : int
        Edges collapsed for being shorter than ``min_edge``.
    degenerate : int
        Polygons dropped for having fewer than three distinct corners or a repeated corner.
    ngons : int
        Polygons of five or more corners cut into quads and triangles.
    duplicates : int
        Polygons dropped as copies of another.
    nonmanifold_faces : int
        Polygons dropped from edges used three or more times.
    flipped : int
        Polygons whose winding was reversed.
    unorientable_faces : int
        Polygons dropped because their piece could not be wound consistently.
    pinched_vertices : int
        Vertices split because several fans of polygons met there.
    holes : int
        Boundary loops closed.
    hole_faces : int
        Polygons added to close them.
    valence2 : int
        Valence-2 vertices dissolved.
    passes : int
        Passes over steps 3-8.
    """

    short_edges: int = 0
    degenerate: int = 0
    ngons: int = 0
    duplicates: int = 0
    nonmanifold_faces: int = 0
    flipped: int = 0
    unorientable_faces: int = 0
    pinched_vertices: int = 0
    holes: int = 0
    hole_faces: int = 0
    valence2: int = 0
    passes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The nonzero counts (``passes`` always), JSON-able."""
        out = {k: int(v) for k, v in self.__dict__.items() if v or k == "passes"}
        return out


# -- representation -------------------------------------------------------------------------


def polygon_sizes(polygons: np.ndarray) -> np.ndarray:
    """Corners per polygon, (k,) int64: 3 or 4."""
    return np.where(polygons[:, 3] == NO_CORNER, 3, 4).astype(np.int64)


def pad(polygons: list[list[int]] | np.ndarray) -> np.ndarray:
    """A ``(k, 4)`` polygon array from lists (or an array) of 3 or 4 corners each."""
    if isinstance(polygons, np.ndarray):
        if polygons.ndim != 2 or polygons.shape[1] not in (3, 4):
            raise ValueError(f"polygons must have shape (k, 3) or (k, 4), got {polygons.shape}")
        if polygons.shape[1] == 4:
            return polygons.astype(np.int64)
        return np.hstack([polygons.astype(np.int64), np.full((len(polygons), 1), NO_CORNER, np.int64)])
    out = np.full((len(polygons), 4), NO_CORNER, dtype=np.int64)
    for i, p in enumerate(polygons):
        if len(p) not in (3, 4):
            raise ValueError(f"polygons must have 3 or 4 corners, polygon {i} has {len(p)}")
        out[i, :len(p)] = p
    return out


def to_mesh(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles ``(m, 3)`` and face sizes ``(k,)`` uint8 of a polygon array, as results carry them.

    Built by :func:`backend.mesh.gltf.polygon_triangles`, so a quad ``(a, b, c, d)`` is the
    triangles ``(a, b, c), (a, c, d)``.
    """
    from backend.mesh.gltf import polygon_triangles

    sizes = polygon_sizes(polygons)
    rows = [row[:s] for row, s in zip(polygons.tolist(), sizes.tolist())]
    if not rows:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.uint8)
    return polygon_triangles(rows)


def from_mesh(faces: np.ndarray, face_sizes: np.ndarray | None) -> np.ndarray:
    """The ``(k, 4)`` polygon array of triangles ``faces`` grouped by ``face_sizes`` (None: all triangles).

    Raises
    ------
    ValueError
        ``face_sizes`` holds other sizes than 3 and 4, or does not add up to ``faces``.
    """
    faces = np.asarray(faces, dtype=np.int64)
    if face_sizes is None:
        return pad(faces)
    sizes = np.asarray(face_sizes, dtype=np.int64)
    if len(sizes) and not np.isin(sizes, (3, 4)).all():
        raise ValueError("face_sizes must hold only 3 and 4")
    if int((sizes - 2).sum()) != len(faces):
        raise ValueError(f"face_sizes describe {int((sizes - 2).sum())} triangles but faces has {len(faces)}")
    first = np.concatenate([[0], np.cumsum(sizes - 2)[:-1]]).astype(np.int64)
    out = np.full((len(sizes), 4), NO_CORNER, dtype=np.int64)
    out[:, :3] = faces[first]
    quad = sizes == 4
    out[quad, 3] = faces[first[quad] + 1, 2]
    return out


def halfedges(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every polygon's edges in winding order.

    Returns
    -------
    src, dst : (h,) int64
        Each half-edge ``src -> dst``.
    face : (h,) int64
        The polygon it belongs to.
    corner : (h,) int64
        The column of ``src`` in that polygon's row.
    """
    k = len(polygons)
    quad = polygons[:, 3] != NO_CORNER
    quads = int(quad.sum())
    if quads in (0, k):                                     # all one kind: plain reshapes
        c = 4 if quads else 3
        order = [1, 2, 3, 0] if quads else [1, 2, 0]
        return (polygons[:, :c].reshape(-1), polygons[:, order].reshape(-1),
                np.repeat(np.arange(k, dtype=np.int64), c), np.tile(np.arange(c, dtype=np.int64), k))
    following = np.roll(polygons, -1, axis=1)              # the next corner, column by column ...
    following[~quad, 2] = polygons[~quad, 0]               # ... a triangle closes at its third
    valid = np.ones((k, 4), dtype=bool)
    valid[:, 3] = quad
    return (polygons[valid], following[valid], np.repeat(np.arange(k, dtype=np.int64), 3 + quad),
            np.broadcast_to(np.arange(4, dtype=np.int64), (k, 4))[valid])


def edge_counts(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges with the number of polygons on each.

    Returns
    -------
    edges : (e, 2) int64
        ``(lo, hi)``, sorted.
    counts : (e,) int64
    edge_of : (h,) int64
        For every half-edge of :func:`halfedges`, the row of its edge in ``edges``.
    """
    links = _Links.of(polygons)
    edges = np.empty((len(links.counts), 2), dtype=np.int64)
    edges[links.edge_of, 0] = np.minimum(links.src, links.dst)
    edges[links.edge_of, 1] = np.maximum(links.src, links.dst)
    return edges, links.counts, links.edge_of


def halfedge_links(src: np.ndarray, dst: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Edge numbers and twins of half-edges ``src -> dst`` (int64, indices below ``n_vertices``).

    Returns
    -------
    edge_of : (h,) int64
        The undirected edge of each half-edge, numbered in ``(min, max)`` order.
    twin : (h,) int64
        The other half-edge of an edge run once each way; -1 on an edge with one
        half-edge (a border); -2 on an edge with three or more, or with two the same way.
    edges : int
    """
    from backend.mesh import native

    if native.available():
        return native.halfedge_links(src, dst, n_vertices)
    return _halfedge_links_numpy(src, dst, n_vertices)


def _halfedge_links_numpy(src: np.ndarray, dst: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray, int]:
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    keys, edge_of, counts = np.unique(lo * max(n_vertices, 1) + hi, return_inverse=True, return_counts=True)
    edge_of = edge_of.reshape(-1).astype(np.int64)
    twin = np.where(counts[edge_of] == 1, -1, -2).astype(np.int64)
    two = np.flatnonzero(counts[edge_of] == 2)
    two = two[np.argsort(edge_of[two], kind="stable")]
    a, b = two[0::2], two[1::2]
    opposite = src[a] == dst[b]
    twin[a[opposite]] = b[opposite]
    twin[b[opposite]] = a[opposite]
    return edge_of, twin, len(keys)


@dataclass(frozen=True)
class _Links:
    """The half-edges of one polygon array with their edges and twins (:func:`halfedge_links`).

    The repair's steps share one per mesh state instead of each sorting the edges again.
    """

    polygons: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    face: np.ndarray
    corner: np.ndarray
    edge_of: np.ndarray
    counts: np.ndarray
    twin: np.ndarray

    @classmethod
    def of(cls, polygons: np.ndarray, known: "_Links | None" = None) -> "_Links":
        """The links of ``polygons``: ``known`` when it was made from this very array."""
        if known is not None and known.polygons is polygons:
            return known
        src, dst, face, corner = halfedges(polygons)
        n = int(polygons.max()) + 1 if len(polygons) else 0
        edge_of, twin, e = halfedge_links(src, dst, n)
        return cls(polygons, src, dst, face, corner, edge_of, np.bincount(edge_of, minlength=e), twin)

    @property
    def edges_ok(self) -> bool:
        """Every edge in at most two polygons, wound consistently (what fans and loops need)."""
        return not (self.twin == -2).any()

    def edge_set(self) -> set[tuple[int, int]]:
        """Every edge as ``(lo, hi)``."""
        lo, hi = np.minimum(self.src, self.dst), np.maximum(self.src, self.dst)
        return set(zip(lo.tolist(), hi.tolist()))


def flip(polygons: np.ndarray, which: np.ndarray) -> np.ndarray:
    """A copy with the winding of ``polygons[which]`` reversed (the first corner stays first)."""
    out = polygons.copy()
    rows = out[which]
    tri = rows[:, 3] == NO_CORNER
    rows[tri, 1], rows[tri, 2] = rows[tri, 2].copy(), rows[tri, 1].copy()
    rows[~tri, 1], rows[~tri, 3] = rows[~tri, 3].copy(), rows[~tri, 1].copy()
    out[which] = rows
    return out


def polygon_areas(vertices: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Area of each polygon (a quad as its two triangles ``abc + acd``), (k,) float64."""
    a, b, c = (vertices[polygons[:, i]] for i in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    quad = polygons[:, 3] != NO_CORNER
    d = vertices[polygons[quad, 3]]
    area[quad] += 0.5 * np.linalg.norm(np.cross(c[quad] - a[quad], d - a[quad]), axis=1)
    return area


def polygon_normals(vertices: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Area-weighted normal of each polygon (not unit), (k, 3): the cross product of its diagonals."""
    a, b, c = (vertices[polygons[:, i]] for i in range(3))
    quad = polygons[:, 3] != NO_CORNER
    d = a.copy()
    d[quad] = vertices[polygons[quad, 3]]
    # For a triangle d = a, and (c - a) x (a - b) = (b - a) x (c - a): its usual normal.
    return 0.5 * np.cross(c - a, d - b)


def unused_removed(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the vertices no polygon uses; returns the compacted ``vertices, polygons``."""
    used = np.unique(polygons[polygons != NO_CORNER])
    remap = np.full(len(vertices), NO_CORNER, dtype=np.int64)
    remap[used] = np.arange(len(used))
    out = np.where(polygons == NO_CORNER, NO_CORNER, remap[np.maximum(polygons, 0)])
    return vertices[used], out


# -- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """How clean a polygon mesh is (see :func:`topology`).

    Attributes
    ----------
    boundary_edges, nonmanifold_edges : int
        Edges in one polygon; edges in three or more.
    oriented : bool
        No directed edge occurs twice (neighbours wind consistently).
    pinched_vertices : int
        Vertices whose polygons form more than one fan.
    degenerate : int
        Polygons with a repeated corner.
    """

    boundary_edges: int
    nonmanifold_edges: int
    oriented: bool
    pinched_vertices: int
    degenerate: int

    @property
    def manifold(self) -> bool:
        """Every edge in at most two polygons, consistent winding, one fan per vertex, no degenerate polygon."""
        return (self.nonmanifold_edges == 0 and self.oriented and self.pinched_vertices == 0
                and self.degenerate == 0)

    @property
    def closed(self) -> bool:
        return self.boundary_edges == 0


def topology(polygons: np.ndarray) -> Topology:
    """Edge use, winding, fans and degenerate polygons of a ``(k, 4)`` polygon array."""
    if len(polygons) == 0:
        return Topology(0, 0, False, 0, 0)
    links = _Links.of(polygons)
    counts, src, dst = links.counts, links.src, links.dst
    if (src == dst).any():
        # Self-loops pair with each other in the links; count repeated half-edges directly.
        directed = src * (int(polygons.max()) + 1) + dst
        oriented = len(np.unique(directed)) == len(directed)
    else:
        # Three half-edges on an edge include two the same way, so no half-edge repeats
        # exactly when every edge is one half-edge or two opposite ones.
        oriented = links.edges_ok
    sizes = polygon_sizes(polygons)
    degenerate = int(_repeats_a_corner(polygons).sum())
    pinched = 0
    if oriented and (counts <= 2).all() and degenerate == 0:
        pinched = int(len(_pinched(polygons, sizes, links)))
    return Topology(boundary_edges=int((counts == 1).sum()), nonmanifold_edges=int((counts > 2).sum()),
                    oriented=bool(oriented), pinched_vertices=pinched, degenerate=degenerate)


def _corner_fans(polygons: np.ndarray, links: _Links | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Fans of corners around each vertex, for an oriented mesh whose edges have at most two polygons.

    Corner ``c`` (half-edge ``c`` of :func:`halfedges`, at its ``src``) is joined to the corner
    at the same vertex in the polygon across its outgoing edge; the connected components of
    those links are the fans.

    Returns
    -------
    vertex : (h,) int64
        The vertex of each corner.
    fan : (h,) int64
        Its fan label.
    count : int
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    links = _Links.of(polygons, links)
    h = len(links.src)
    # The twin of src -> dst runs dst -> src; in its polygon, the corner at ``src`` (our
    # vertex) is the half-edge after the twin. Half-edges are stored polygon by polygon.
    sizes = polygon_sizes(polygons)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nxt = start[links.face] + (links.corner + 1) % sizes[links.face]
    a = np.flatnonzero(links.twin >= 0)
    b = nxt[links.twin[a]]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(h, h))
    count, labels = connected_components(graph, directed=False)
    return links.src, labels.astype(np.int64), int(count)


def _pinched(polygons: np.ndarray, sizes: np.ndarray, links: _Links | None = None) -> np.ndarray:
    """Vertices with more than one fan."""
    vertex, fan, count = _corner_fans(polygons, links)
    pairs = np.unique(vertex * count + fan)
    fans_per_vertex = np.bincount(pairs // count)
    return np.flatnonzero(fans_per_vertex > 1)


# -- repair ---------------------------------------------------------------------------------


def repair(vertices: np.ndarray, polygons: list[list[int]] | np.ndarray, *, min_edge: float = 0.0,
           max_hole: int | None = None, is_border: Callable[[np.ndarray], bool] | None = None
           ) -> tuple[np.ndarray, np.ndarray, RepairReport]:
    """Turn any list of polygons into a clean, consistently wound 2-manifold of triangles and quads.

    Parameters
    ----------
    vertices : (n, 3) float
    polygons : list of index lists (3 or more corners each), or (k, 3) / (k, 4) int array
    min_edge : float
        Edges shorter than this are collapsed (0: only exactly coincident corners).
    max_hole : int or None
        Boundary loops of more edges than this stay open (the borders of an open surface);
        None closes every loop.
    is_border : callable or None
        Given the positions ``(k, 3)`` of such a longer loop, whether it is a border to keep;
        one it refuses is closed like a small hole (a remesher's tear, far from any border
        of the surface it remeshed). None keeps them all.

    Returns
    -------
    vertices : (n', 3) float64
        Only the vertices in use.
    polygons : (k', 4) int64
        Triangles and quads (see the module doc); every edge in at most two of them,
        consistently wound, one fan per vertex, holes closed (up to ``max_hole`` edges), no
        interior valence-2 vertex.
    report : RepairReport
    """
    vertices = np.asarray(vertices, dtype=np.float64).copy()
    report = RepairReport()
    if isinstance(polygons, np.ndarray):
        vertices, polys = _prepare_array(vertices, pad(np.asarray(polygons, dtype=np.int64)), min_edge, report)
    else:
        rows = [list(map(int, p)) for p in polygons]
        vertices, rows = _collapse_short_edges(vertices, rows, min_edge, report)
        vertices, rows = _split_ngons(vertices, _drop_degenerate(rows, report), report)
        polys = pad(rows) if rows else np.zeros((0, 4), dtype=np.int64)
    for _ in range(MAX_REPAIR_PASSES):
        report.passes += 1
        before = polys
        polys = _drop_duplicates(polys, report)
        links = _Links.of(polys)
        if not links.edges_ok:
            # Winding needs only fixing where an edge is not two opposite half-edges.
            polys = _drop_nonmanifold_edges(vertices, polys, links, report)
            polys = _orient(polys, _Links.of(polys, links), report)
            links = _Links.of(polys, links)
        vertices, polys = _split_pinched(vertices, polys, report, links)
        links = _Links.of(polys, links)
        vertices, polys = _fill_holes(vertices, polys, report, max_hole, is_border, links)
        vertices, polys = _dissolve_valence2(vertices, polys, report, _Links.of(polys, links))
        if polys is before or (polys.shape == before.shape and np.array_equal(polys, before)):
            break
    vertices, polys = unused_removed(vertices, polys)
    return vertices, polys, report


def _prepare_array(vertices: np.ndarray, polys: np.ndarray, min_edge: float, report: RepairReport
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 (short edges, repeated corners) on a ``(k, 4)`` array, vectorized; only the
    few polygons with a repeated corner go through the list code."""
    if min_edge > 0 and len(polys):
        src, dst, _, _ = halfedges(polys)
        merged = _merge_short_edges(vertices, src, dst, min_edge, report)
        if merged is not None:
            vertices, label = merged
            polys = np.where(polys == NO_CORNER, NO_CORNER, label[np.maximum(polys, 0)])
    if not len(polys):
        return vertices, polys
    repeated = np.flatnonzero(_repeats_a_corner(polys))
    if len(repeated) == 0:
        return vertices, polys
    out, keep = polys.copy(), np.ones(len(polys), dtype=bool)
    for i in repeated.tolist():
        q = _without_repeats([a for a in polys[i].tolist() if a != NO_CORNER])
        if q is None:
            keep[i] = False
            report.degenerate += 1
        else:
            out[i] = q + [NO_CORNER] * (4 - len(q))
    return vertices, out[keep]


def _collapse_short_edges(vertices: np.ndarray, rows: list[list[int]], min_edge: float, report: RepairReport
                          ) -> tuple[np.ndarray, list[list[int]]]:
    if min_edge <= 0 or not rows:
        return vertices, rows
    src = np.fromiter((a for p in rows for a in p), dtype=np.int64)
    dst = np.fromiter((p[(i + 1) % len(p)] for p in rows for i in range(len(p))), dtype=np.int64)
    merged = _merge_short_edges(vertices, src, dst, min_edge, report)
    if merged is None:
        return vertices, rows
    vertices, label = merged
    return vertices, [[int(label[a]) for a in p] for p in rows]


def _merge_short_edges(vertices: np.ndarray, src: np.ndarray, dst: np.ndarray, min_edge: float,
                       report: RepairReport) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices joined by edges ``src -> dst`` shorter than ``min_edge`` become one at their
    mean: the new vertices and each old vertex's new index, or None when no edge is short."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    short = np.linalg.norm(vertices[src] - vertices[dst], axis=1) < min_edge
    if not short.any():
        return None
    n = len(vertices)
    graph = coo_matrix((np.ones(int(short.sum())), (src[short], dst[short])), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    report.short_edges += n - count
    merged = np.zeros((count, 3))
    np.add.at(merged, label, vertices)
    return merged / np.bincount(label, minlength=count)[:, None], label


def _repeats_a_corner(polygons: np.ndarray) -> np.ndarray:
    """(k,) bool: polygons with a corner listed twice."""
    span = int(polygons.max(initial=0)) + 1
    srt = np.sort(np.where(polygons == NO_CORNER, -np.arange(1, 5)[None, :] - span, polygons), axis=1)
    return (srt[:, 1:] == srt[:, :-1]).any(axis=1)


def _drop_degenerate(rows: list[list[int]], report: RepairReport) -> list[list[int]]:
    out = []
    for p in rows:
        q = _without_repeats(p)
        if q is None:
            report.degenerate += 1
        else:
            out.append(q)
    return out


def _without_repeats(p: list[int]) -> list[int] | None:
    """``p`` less its cyclically consecutive repeats; None if fewer than three distinct corners,
    or a corner repeated apart, are left."""
    q = [a for i, a in enumerate(p) if a != p[i - 1]] if len(p) > 1 else p
    return q if len(q) >= 3 and len(set(q)) == len(q) else None


def _split_ngons(vertices: np.ndarray, rows: list[list[int]], report: RepairReport
                 ) -> tuple[np.ndarray, list[list[int]]]:
    if all(len(p) <= 4 for p in rows):
        return vertices, rows
    cutter = _RingCutter(vertices, rows)
    out = []
    for p in rows:
        if len(p) <= 4:
            out.append(p)
        else:
            report.ngons += 1
            out.extend(cutter.cut(p))
    return cutter.all_vertices(), out


#: Rings longer than this are closed by a fan around their centroid instead of by cuts.
MAX_CUT_RING = 8


class _RingCutter:
    """Cuts rings (n-gons, hole loops) into quads and at most one triangle without adding an
    edge the mesh already has (that would make it non-manifold).

    Each cut takes four consecutive corners as a quad, choosing among the quads whose new
    edge is not in the mesh the one whose corner angles are closest to 90 degrees (the rule
    Instant Meshes fills its own faces with), and removes its two middle corners from the
    ring. A ring longer than :data:`MAX_CUT_RING`, or one with no allowed cut, becomes a fan
    of quads (and a triangle when odd) around a new vertex at its centroid.
    """

    def __init__(self, vertices: np.ndarray, mesh: list[list[int]] | Callable[[], set[tuple[int, int]]]):
        """``mesh``: the polygons whose edges a cut must not repeat, as lists of corners, or a
        function returning those edges as ``(lo, hi)`` pairs."""
        self.vertices = vertices
        self.added: list[np.ndarray] = []
        self._mesh = mesh
        self._edges: set | None = None

    @property
    def edges(self) -> set:
        """The mesh's edges (built on the first cut: most repairs never need one)."""
        if self._edges is None:
            if callable(self._mesh):
                self._edges = self._mesh()
            else:
                self._edges = set()
                for p in self._mesh:
                    for i, a in enumerate(p):
                        b = p[i - 1]
                        self._edges.add((a, b) if a < b else (b, a))
        return self._edges

    def all_vertices(self) -> np.ndarray:
        return np.vstack([self.vertices, *self.added]) if self.added else self.vertices

    def cut(self, ring: list[int]) -> list[list[int]]:
        ring = list(ring)
        out = []
        if len(ring) > MAX_CUT_RING:
            return self._fan(ring)
        while len(ring) > 4:
            n = len(ring)
            pts = self.vertices[ring]
            best, best_score = -1, np.inf
            for i in range(n):
                a, b = ring[i], ring[(i + 3) % n]
                if (min(a, b), max(a, b)) in self.edges:
                    continue
                score = _quad_angle_error(pts[[i, (i + 1) % n, (i + 2) % n, (i + 3) % n]])
                if score < best_score:
                    best, best_score = i, score
            if best < 0:
                return out + self._fan(ring)
            out.append([ring[(best + j) % n] for j in range(4)])
            a, b = ring[best], ring[(best + 3) % n]
            self.edges.add((min(a, b), max(a, b)))
            drop = {(best + 1) % n, (best + 2) % n}
            ring = [r for j, r in enumerate(ring) if j not in drop]
        out.append(ring)
        return out

    def _fan(self, ring: list[int]) -> list[list[int]]:
        centre = len(self.vertices) + len(self.added)
        self.added.append(self.vertices[ring].mean(axis=0, keepdims=True))
        n = len(ring)
        out = [[centre, ring[j], ring[j + 1], ring[(j + 2) % n]] for j in range(0, n - 1, 2)]
        if n % 2:
            out.append([centre, ring[n - 1], ring[0]])
        for r in ring:
            self.edges.add((min(r, centre), max(r, centre)))
        return out


def _quad_angle_error(q: np.ndarray) -> float:
    """Sum over the corners of a quad (4, 3) of |angle - 90 degrees|, in degrees."""
    err = 0.0
    for j in range(4):
        u, w = q[j - 1] - q[j], q[(j + 1) % 4] - q[j]
        nu, nw = np.linalg.norm(u), np.linalg.norm(w)
        if nu == 0 or nw == 0:
            return np.inf
        err += abs(np.degrees(np.arccos(np.clip(np.dot(u, w) / (nu * nw), -1.0, 1.0))) - 90.0)
    return err


def _drop_duplicates(polys: np.ndarray, report: RepairReport) -> np.ndarray:
    if len(polys) == 0:
        return polys
    key = np.sort(polys, axis=1)
    order = np.lexsort(key.T[::-1])
    srt = key[order]
    first = order[np.concatenate([[True], (srt[1:] != srt[:-1]).any(axis=1)])]
    if len(first) == len(polys):
        return polys
    report.duplicates += len(polys) - len(first)
    return polys[np.sort(first)]


def _drop_nonmanifold_edges(vertices: np.ndarray, polys: np.ndarray, links: _Links, report: RepairReport
                            ) -> np.ndarray:
    if len(polys) == 0:
        return polys
    counts, edge_of, face = links.counts, links.edge_of, links.face
    if not (counts > 2).any():
        return polys
    on_bad = (counts > 2)[edge_of]
    e, f = edge_of[on_bad], face[on_bad]
    # Per bad edge, polygons by area, largest first: all but two go.
    order = np.lexsort((-polygon_areas(vertices, polys[f]), e))
    e, f = e[order], f[order]
    first = np.concatenate([[True], e[1:] != e[:-1]])
    rank = np.arange(len(e)) - np.maximum.accumulate(np.where(first, np.arange(len(e)), 0))
    drop = np.unique(f[rank >= 2])
    report.nonmanifold_faces += len(drop)
    keep = np.ones(len(polys), dtype=bool)
    keep[drop] = False
    return polys[keep]


def _orient(polys: np.ndarray, links: _Links, report: RepairReport) -> np.ndarray:
    """Consistent winding per piece (module doc, step 5).

    Each polygon gets two states, as is and flipped; a manifold edge ties the states of its
    two polygons that wind it oppositely. In this double cover a piece that can be wound
    consistently splits into two mirror components, and one that cannot (a Moebius-like
    tangle) is one component holding both states of some polygon.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    k = len(polys)
    if k == 0:
        return polys
    src, face, counts, edge_of = links.src, links.face, links.counts, links.edge_of
    shared = np.flatnonzero(counts[edge_of] == 2)
    order = shared[np.argsort(edge_of[shared], kind="stable")]
    f0, f1 = face[order[0::2]], face[order[1::2]]
    same = (src[order[0::2]] == src[order[1::2]]).astype(np.int64)     # same direction: one must flip
    pieces, piece = connected_components(coo_matrix((np.ones(len(f0)), (f0, f1)), shape=(k, k)), directed=False)
    a = np.concatenate([f0, f0 + k])
    b = np.concatenate([f1 + k * same, f1 + k * (1 - same)])
    _, state = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(2 * k, 2 * k)), directed=False)
    root = np.full(pieces, k, dtype=np.int64)
    np.minimum.at(root, piece, np.arange(k))
    root_state = state[root[piece]]                                       # (root, as is) per polygon
    flip_flag = state[np.arange(k) + k] == root_state
    tangled = np.zeros(pieces, dtype=bool)
    tangled[piece[state[:k] == state[k:]]] = True
    # Keep the winding most of each piece came with.
    flipped_per_piece = np.bincount(piece, weights=flip_flag, minlength=pieces)
    invert = flipped_per_piece > np.bincount(piece, minlength=pieces) / 2
    flip_flag ^= invert[piece]
    if tangled.any():
        flip_flag, drop = _orient_tangled(k, f0, f1, same.astype(bool), piece, tangled, flip_flag)
    else:
        drop = np.zeros(0, dtype=np.int64)
    if not flip_flag.any() and len(drop) == 0:
        return polys
    out = flip(polys, flip_flag)
    report.flipped += int(flip_flag.sum())
    if len(drop):
        report.unorientable_faces += len(drop)
        keep = np.ones(k, dtype=bool)
        keep[drop] = False
        out = out[keep]
    return out


def _orient_tangled(k: int, f0: np.ndarray, f1: np.ndarray, same: np.ndarray, piece: np.ndarray,
                    tangled: np.ndarray, flip_flag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pieces that cannot be wound consistently keep the winding they came with, less the
    polygons on the edges both neighbours run the same way: that breaks every
    winding-reversing loop, and a remesher's winding is right nearly everywhere, so few go."""
    flip_flag = flip_flag.copy()
    flip_flag[tangled[piece]] = False
    bad = tangled[piece[f0]] & same
    return flip_flag, np.unique(np.concatenate([f0[bad], f1[bad]]))


def _split_pinched(vertices: np.ndarray, polys: np.ndarray, report: RepairReport, links: _Links | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    if len(polys) == 0:
        return vertices, polys
    links = _Links.of(polys, links)
    if not links.edges_ok:
        return vertices, polys
    vertex, fan, count = _corner_fans(polys, links)
    keys, first = np.unique(vertex * count + fan, return_index=True)   # one per (vertex, fan), by vertex
    owner = keys // count
    is_first = np.concatenate([[True], owner[1:] != owner[:-1]])
    if is_first.all():
        return vertices, polys
    # Every fan but the first of a pinched vertex gets a new vertex at the same place.
    extra = np.flatnonzero(~is_first)
    report.pinched_vertices += len(np.unique(owner[extra]))
    new_id = np.full(len(keys), -1, dtype=np.int64)
    new_id[extra] = len(vertices) + np.arange(len(extra))
    vertices = np.vstack([vertices, vertices[owner[extra]]])
    target = new_id[np.searchsorted(keys, vertex * count + fan)]
    face, corner = links.face, links.corner
    out = polys.copy()
    move = target >= 0
    out[face[move], corner[move]] = target[move]
    return vertices, out


def mend(vertices: np.ndarray, polygons: np.ndarray, *, max_faces: int
         ) -> tuple[np.ndarray, RepairReport, bool] | None:
    """Steps 4-5 of :func:`repair` alone, for a mesh whose edges are clean but for a few.

    Of the polygons on an edge used three or more times, the two largest stay; then windings
    are made consistent. Nothing else changes: no vertex moves, no hole closes.

    Parameters
    ----------
    vertices : (n, 3) float
    polygons : (k, 4) int64
    max_faces : int
        Give up (None) when more polygons than this touch a bad edge (an edge in three or
        more polygons, or in two that run it the same way).

    Returns
    -------
    (polygons, report, closed) or None
        None also when bad edges remain. ``closed``: no edge in one polygon only.
    """
    report = RepairReport()
    links = _Links.of(polygons)
    bad = links.twin == -2
    if bad.any():
        if len(np.unique(links.face[bad])) > max_faces:
            return None
        polygons = _drop_nonmanifold_edges(vertices, polygons, links, report)
        links = _Links.of(polygons, links)
        if not links.edges_ok:
            polygons = _orient(polygons, links, report)
            links = _Links.of(polygons, links)
        if not links.edges_ok:
            return None
    return polygons, report, not (links.twin == -1).any()


def split_pinched(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Give every extra fan of polygons at a vertex its own copy of the vertex.

    Returns ``vertices, polygons, count`` (pinched vertices split); a mesh whose edges are not
    all in at most two consistently wound polygons comes back unchanged.
    """
    report = RepairReport()
    vertices, polygons = _split_pinched(np.asarray(vertices, dtype=np.float64), polygons, report)
    return vertices, polygons, report.pinched_vertices


def _boundary_loops(links: _Links) -> list[list[int]]:
    """Boundary loops of a mesh whose edges are fine (``links.edges_ok``), each in the winding
    of the polygons along it."""
    border = links.twin == -1
    bsrc, bdst = links.src[border], links.dst[border]
    if len(bsrc) == 0:
        return []
    nxt = dict(zip(bsrc.tolist(), bdst.tolist()))
    loops, seen = [], set()
    for start in bsrc.tolist():
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(loop)
    return loops


def _fill_holes(vertices: np.ndarray, polys: np.ndarray, report: RepairReport, max_hole: int | None,
                is_border: Callable[[np.ndarray], bool] | None, links: _Links | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    if len(polys) == 0:
        return vertices, polys
    links = _Links.of(polys, links)
    if not links.edges_ok:
        return vertices, polys
    loops = [loop for loop in _boundary_loops(links)
             if max_hole is None or len(loop) <= max_hole or (is_border is not None and not is_border(vertices[loop]))]
    if not loops:
        return vertices, polys
    cutter = _RingCutter(vertices, links.edge_set)
    added = []
    for loop in loops:
        # The hole is wound against the loop, so that its edges twin the boundary's.
        faces = cutter.cut(loop[::-1])
        added.extend(faces)
        report.holes += 1
        report.hole_faces += len(faces)
        if len(loop) > MAX_CUT_RING:
            log.debug("repair: closed a hole of %d edges with a fan", len(loop))
    return cutter.all_vertices(), np.vstack([polys, pad(added)])


def _dissolve_valence2(vertices: np.ndarray, polys: np.ndarray, report: RepairReport, links: _Links | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the two polygons around each interior vertex that has only those two."""
    if len(polys) == 0:
        return vertices, polys
    links = _Links.of(polys, links)
    if not links.edges_ok:
        return vertices, polys
    src, face = links.src, links.face
    degree = np.bincount(src, minlength=len(vertices))
    on_boundary = np.zeros(len(vertices), dtype=bool)
    on_boundary[src[links.twin == -1]] = True
    candidates = np.flatnonzero((degree == 2) & ~on_boundary)
    if len(candidates) == 0:
        return vertices, polys
    alive = np.ones(len(polys), dtype=bool)
    is_candidate = np.zeros(len(vertices), dtype=bool)
    is_candidate[candidates] = True
    at = np.flatnonzero(is_candidate[src])
    faces_of: dict[int, list[int]] = {}
    for v, f in zip(src[at].tolist(), face[at].tolist()):
        faces_of.setdefault(v, []).append(f)
    involved = np.unique(face[at])
    rows = dict(zip(involved.tolist(), ([a for a in r if a != NO_CORNER] for r in polys[involved].tolist())))
    new_rows = []
    cutter = _RingCutter(vertices, links.edge_set)
    for v in candidates.tolist():
        f, g = faces_of[v]
        if not (alive[f] and alive[g]) or v not in rows[f] or v not in rows[g]:
            continue
        merged = _merge_at(rows[f], rows[g], v)
        alive[f] = alive[g] = False
        report.valence2 += 1
        if merged is not None and len(merged) >= 3 and len(set(merged)) == len(merged):
            new_rows.extend(cutter.cut(merged) if len(merged) > 4 else [merged])
    out = polys[alive]
    if new_rows:
        out = np.vstack([out, pad(new_rows)])
    return cutter.all_vertices(), out


def _merge_at(p: list[int], q: list[int], v: int) -> list[int] | None:
    """The polygon left when ``p`` and ``q``, which share the edges ``a - v - b``, lose ``v``.

    ``p`` runs ``a -> v -> b``, so ``q`` runs ``b -> v -> a``; the result is ``p`` from ``b``
    round to ``a`` followed by ``q`` from ``a`` round to ``b``, without repeating ``a``, ``b``.
    """
    i = p.index(v)
    p_rot = p[i + 1:] + p[:i]                # b ... a
    j = q.index(v)
    q_rot = q[j + 1:] + q[:j]                # a ... b
    if not p_rot or not q_rot or p_rot[0] != q_rot[-1] or p_rot[-1] != q_rot[0]:
        return None
    return p_rot + q_rot[1:-1]


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
    triangle (and an odd count of triangles needs one): the path then ends at the border,
    whose edge gets a new midpoint vertex, which makes the last half a quad.
    Vertices do not move (except those midpoints), so the surface is the same one.

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
    rows = [[a for a in r if a != NO_CORNER] for r in np.asarray(polygons, dtype=np.int64).tolist()]
    verts = [np.asarray(vertices, dtype=np.float64)]
    extra: list[np.ndarray] = []
    owner: dict[tuple[int, int], int] = {}
    for f, p in enumerate(rows):
        for i, a in enumerate(p):
            owner[(a, p[(i + 1) % len(p)])] = f
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

    for t in range(len(rows)):
        if not alive[t] or len(rows[t]) != 3:
            continue
        path = _path_to_partner(t, rows, neighbours)
        if path is None:
            continue
        faces, edges = path                                 # faces[0] = t; edges[i]: between faces[i], faces[i+1]
        halves = [list(rows[t])]                            # the triangle each face hands back
        pieces: list[tuple[list[int], list[int]]] = []      # per quad on the path: (entry half, exit half)
        for i in range(1, len(faces) - (0 if edges[-1][1] is None else 1)):
            pieces.append(_cut_between(rows[faces[i]], edges[i - 1], edges[i]))
        if edges[-1][1] is None:
            # Border: the last quad's exit half gets a midpoint on its open edge.
            a, b = edges[-1][0]
            mid = len(verts[0]) + len(extra)
            extra.append(0.5 * (_vertex(a, verts[0], extra) + _vertex(b, verts[0], extra)))
            last_half = pieces[-1][1] if pieces else halves[0]
            tail = _insert_after(last_half, a, b, mid)
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
    out = [r for r, keep in zip(rows, alive) if keep]
    all_v = np.vstack([verts[0], *[e[None, :] for e in extra]]) if extra else verts[0]
    polys = pad(out) if out else np.zeros((0, 4), dtype=np.int64)
    return all_v, polys, int((polys[:, 3] == NO_CORNER).sum()) if len(polys) else 0


def _vertex(i: int, base: np.ndarray, extra: list[np.ndarray]) -> np.ndarray:
    return base[i] if i < len(base) else extra[i - len(base)]


def _path_to_partner(t, rows, neighbours):
    """Breadth-first from triangle ``t`` through quads to the nearest other triangle or open
    edge. Returns ``(faces, edges)``: ``edges[i] = ((a, b), next)`` is the directed edge of
    ``faces[i]`` the path leaves by; for an open edge, ``next`` is None."""
    from collections import deque

    parent = {t: None}
    queue = deque([t])
    while queue:
        f = queue.popleft()
        for edge, g in neighbours(f):
            if g is None:
                return _unwind(parent, f, (edge, None))
            if g in parent:
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


def _insert_after(tri: list[int], a: int, b: int, mid: int) -> list[int]:
    """``tri`` with ``mid`` between its consecutive corners ``a -> b``."""
    i = tri.index(a)
    return tri[:i + 1] + [mid] + tri[i + 1:]
