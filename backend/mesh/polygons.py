"""Triangle-and-quad meshes as arrays: the representation, its half-edges, and how clean a mesh is.

A polygon mesh is ``vertices (n, 3) float64`` and ``polygons (k, 4) int64``: one row per
polygon, its corners in winding order; a triangle has ``-1`` (:data:`NO_CORNER`) in its last
column. Results leave the backend as :class:`backend.mesh.types.Mesh` (triangles +
``face_sizes``, see :mod:`backend.mesh.gltf`); :func:`to_mesh` and :func:`from_mesh` convert.

Half-edges (:func:`halfedges`) run polygon by polygon in winding order. Their undirected
edges and twins (:func:`halfedge_links`, a compiled bucket sort with a numpy twin) are held
together by :class:`HalfedgeLinks`, which the repair's steps share
(:mod:`backend.mesh.retopo.repair`). :func:`topology` reports borders, non-manifold edges,
winding, pinched vertices and degenerate polygons: what :mod:`backend.mesh.metrics` and the
retopology's checks read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Marks the missing fourth corner of a triangle in a ``(k, 4)`` polygon array.
NO_CORNER = -1


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
    """Triangles ``(m, 3)`` and face sizes ``(k,)`` uint8 of a polygon array, as results carry them:
    a quad ``(a, b, c, d)`` is the triangles ``(a, b, c), (a, c, d)``, as
    :func:`backend.mesh.gltf.polygon_triangles` makes them."""
    polygons = np.asarray(polygons, dtype=np.int64)
    if len(polygons) == 0:
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.uint8)
    sizes = polygon_sizes(polygons)
    if not np.isin(sizes, (3, 4)).all():
        raise ValueError(f"polygons must have 3 or 4 corners, found sizes {sorted(set(sizes.tolist()) - {3, 4})}")
    # Each polygon's (a, b, c), then a quad's (a, c, d), in polygon order.
    both = np.stack([polygons[:, [0, 1, 2]], polygons[:, [0, 2, 3]]], axis=1)      # (k, 2, 3)
    return both[np.arange(2)[None, :] < (sizes[:, None] - 2)], sizes.astype(np.uint8)


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
    links = HalfedgeLinks.of(polygons)
    edges = np.empty((len(links.counts), 2), dtype=np.int64)
    edges[links.edge_of, 0] = np.minimum(links.src, links.dst)
    edges[links.edge_of, 1] = np.maximum(links.src, links.dst)
    return edges, links.counts, links.edge_of


def interior_valences(polygons: np.ndarray, n_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which vertices are interior (used, on no border edge) and the valence (edges) of each, ``(n,)`` bool
    and ``(n,)`` int64; ``n`` defaults to one past the largest index used."""
    n = int(polygons.max()) + 1 if n_vertices is None else int(n_vertices)
    src, _, _, _ = halfedges(polygons)
    edges, counts, edge_of = edge_counts(polygons)
    interior = np.zeros(n, dtype=bool)
    interior[src] = True
    interior[src[counts[edge_of] == 1]] = False
    return interior, np.bincount(edges.ravel(), minlength=n)


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
class HalfedgeLinks:
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
    def of(cls, polygons: np.ndarray, known: "HalfedgeLinks | None" = None) -> "HalfedgeLinks":
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


def quad_corner_angles(vertices: np.ndarray, polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the quads of ``polygons`` (``(k, 4)``, -1 in the last column for triangles): their rows
    and the ``(q, 4)`` corner angles in degrees (:func:`corner_angles`: a concave corner above 180)."""
    rows = np.flatnonzero(polygons[:, 3] != NO_CORNER)
    return rows, corner_angles(vertices[polygons[rows]])


def corner_angles(quads: np.ndarray) -> np.ndarray:
    """Corner angles in degrees of quads ``(..., 4, 3)``, measured inside the quad: a corner that
    turns against the quad's normal (from its diagonals) is concave, ``360 - angle`` (a dart's
    reflex corner would otherwise read as an ordinary one). Compiled when it is built
    (:func:`backend.mesh.native.corner_angles`, the same figures): the clean-up measures its
    layout's quads dozens of times."""
    from backend.mesh import native

    if native.available():
        return native.corner_angles(quads).reshape(quads.shape[:-1])
    to_prev = quads[..., [3, 0, 1, 2], :] - quads
    to_next = quads[..., [1, 2, 3, 0], :] - quads
    # einsum: sums over the 3-long last axis without reduce's per-row overhead (about 2x here).
    cos = np.einsum("...i,...i->...", to_prev, to_next) / np.maximum(np.sqrt(
        np.einsum("...i,...i->...", to_prev, to_prev) * np.einsum("...i,...i->...", to_next, to_next)), 1e-300)
    angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    normal = cross(quads[..., 2, :] - quads[..., 0, :], quads[..., 3, :] - quads[..., 1, :])
    turn = np.einsum("...i,...i->...", cross(to_next, to_prev), normal[..., None, :])
    return np.where(turn < 0.0, 360.0 - angles, angles)


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.cross`` over the last axis without its per-call overhead (the callers pass small arrays often)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def guarded_moves(vertices: np.ndarray, target: np.ndarray, moved: np.ndarray, polygons: np.ndarray, *,
                  min_area_ratio: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Move the ``moved`` vertices to ``target``, undoing the moves of any polygon they would flip
    (normal against its old one) or flatten (area below ``min_area_ratio`` of its old one).

    Returns the new vertices ``(n, 3)`` and the mask of the moves kept ``(n,)`` bool.
    """
    moved = np.asarray(moved, dtype=bool).copy()
    before = polygon_normals(vertices, polygons)
    before_area = np.linalg.norm(before, axis=1)
    out = np.where(moved[:, None], target, vertices)
    for _ in range(8):
        after = polygon_normals(out, polygons)
        bad = (np.einsum("ij,ij->i", before, after) <= 0) | (np.linalg.norm(after, axis=1) < min_area_ratio * before_area)
        if not bad.any():
            break
        undo = np.unique(polygons[bad][polygons[bad] != NO_CORNER])
        undo = undo[moved[undo]]
        if len(undo) == 0:
            break
        out[undo] = vertices[undo]
        moved[undo] = False
    return out, moved


def merged_positions(vertices: np.ndarray, a: np.ndarray, b: np.ndarray, fixed: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the vertices joined by edges ``a[i] - b[i]`` (chains merge whole): each group at the
    mean of its ``fixed`` vertices where it has any (they keep their place), else at the mean of all.

    Returns the groups' positions ``(g, 3)`` and each vertex's group ``(n,)`` (a vertex no edge
    names is a group of its own).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vertices)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    count, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    weight = np.ones(n)
    if fixed is not None:
        anchored = np.bincount(label, weights=fixed, minlength=count) > 0
        weight = np.where(anchored[label], fixed, True).astype(np.float64)
    merged = np.zeros((count, 3))
    np.add.at(merged, label, vertices * weight[:, None])
    merged /= np.bincount(label, weights=weight, minlength=count)[:, None]
    return merged, label


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
    links = HalfedgeLinks.of(polygons)
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
    degenerate = int(repeats_a_corner(polygons).sum())
    pinched = 0
    if oriented and (counts <= 2).all() and degenerate == 0:
        pinched = int(len(pinched_vertices(polygons, sizes, links)))
    return Topology(boundary_edges=int((counts == 1).sum()), nonmanifold_edges=int((counts > 2).sum()),
                    oriented=bool(oriented), pinched_vertices=pinched, degenerate=degenerate)


def corner_fans(polygons: np.ndarray, links: HalfedgeLinks | None = None) -> tuple[np.ndarray, np.ndarray, int]:
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

    links = HalfedgeLinks.of(polygons, links)
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


def pinched_vertices(polygons: np.ndarray, sizes: np.ndarray, links: HalfedgeLinks | None = None) -> np.ndarray:
    """Vertices with more than one fan."""
    vertex, fan, count = corner_fans(polygons, links)
    pairs = np.unique(vertex * count + fan)
    fans_per_vertex = np.bincount(pairs // count)
    return np.flatnonzero(fans_per_vertex > 1)


# -- repair ---------------------------------------------------------------------------------


def repeats_a_corner(polygons: np.ndarray) -> np.ndarray:
    """(k,) bool: polygons with a corner listed twice."""
    span = int(polygons.max(initial=0)) + 1
    srt = np.sort(np.where(polygons == NO_CORNER, -np.arange(1, 5)[None, :] - span, polygons), axis=1)
    return (srt[:, 1:] == srt[:, :-1]).any(axis=1)

