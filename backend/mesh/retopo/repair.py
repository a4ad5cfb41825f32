"""Repair of a remesher's raw polygons into a clean, consistently wound 2-manifold of triangles and quads.

Works on the polygon arrays of :mod:`backend.mesh.polygons`. :func:`repair` takes any list
of polygons; :func:`mend` fixes the few bad edges of an otherwise clean input in place;
:func:`split_pinched` gives each fan of a pinched vertex its own copy.

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
(:func:`backend.mesh.polygons.halfedge_links`, a compiled bucket sort with a numpy twin),
found again only after a step changed the mesh; steps 4-5 run only where an edge is not two opposite half-edges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.mesh.polygons import (
    NO_CORNER,
    HalfedgeLinks,
    corner_fans,
    flip,
    halfedges,
    pad,
    polygon_areas,
    repeats_a_corner,
    unused_removed,
)

log = logging.getLogger(__name__)

#: Repair passes over steps 3-8 before giving up on reaching a clean mesh.
MAX_REPAIR_PASSES = 8
#: Rounds of valence-2 dissolving within one pass: a round dissolves every other vertex of a
#: chain (their polygons overlap), and beast's quads at 2,000 faces had a chain of ten.
MAX_DISSOLVE_ROUNDS = 64


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
    rotated_edges, collapsed_diagonals : int
        Pole-removing rewirings of the quad layout (set by the artist pipeline after repair:
        :mod:`backend.mesh.retopo.poles`).
    open_corners, widened_corners, split_corners : int
        Vertices at quad corners near 180 degrees moved to open them, by relaxing and then by
        a search around them (:mod:`backend.mesh.retopo.relax`), and such corners split by an
        edge rotation (:func:`backend.mesh.retopo.poles.split_flat_corners`); set by the artist
        pipeline after repair.
    merged_corners : int
        Vertices merged away along a crease or border where a quad had a flat corner between two
        such edges, and short edges of flat triangles collapsed (set by the artist pipeline).
    thin_parts : int
        Parts thinner than an edge that the clean-up lost, remeshed alone at an edge fitted to
        their thickness (set by the artist pipeline).
    split_unpaired : int
        Full-budget layouts whose pairing left triangles, split into quads instead (set by the
        artist pipeline; its later runs then split a quarter-budget layout).
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
    rotated_edges: int = 0
    collapsed_diagonals: int = 0
    open_corners: int = 0
    widened_corners: int = 0
    split_corners: int = 0
    merged_corners: int = 0
    thin_parts: int = 0
    split_unpaired: int = 0
    passes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The nonzero counts (``passes`` always), JSON-able."""
        out = {k: int(v) for k, v in self.__dict__.items() if v or k == "passes"}
        return out



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
        links = HalfedgeLinks.of(polys)
        if not links.edges_ok:
            # Winding needs only fixing where an edge is not two opposite half-edges.
            polys = _drop_nonmanifold_edges(vertices, polys, links, report)
            polys = _orient(polys, HalfedgeLinks.of(polys, links), report)
            links = HalfedgeLinks.of(polys, links)
        vertices, polys = _split_pinched(vertices, polys, report, links)
        links = HalfedgeLinks.of(polys, links)
        vertices, polys = _fill_holes(vertices, polys, report, max_hole, is_border, links)
        vertices, polys = _dissolve_valence2(vertices, polys, report, HalfedgeLinks.of(polys, links))
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
    repeated = np.flatnonzero(repeats_a_corner(polys))
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
            start = np.arange(n)
            scores = _quad_angle_errors(self.vertices[np.asarray(ring)[(start[:, None] + np.arange(4)) % n]])
            for i in range(n):
                a, b = ring[i], ring[(i + 3) % n]
                if (min(a, b), max(a, b)) in self.edges:
                    scores[i] = np.inf
            best = int(scores.argmin())
            if not np.isfinite(scores[best]):
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


def _quad_angle_errors(quads: np.ndarray) -> np.ndarray:
    """Per quad of ``quads`` (k, 4, 3), the sum over its corners of |angle - 90 degrees| in degrees;
    inf for a quad with a zero-length edge."""
    u = np.roll(quads, 1, axis=1) - quads
    w = np.roll(quads, -1, axis=1) - quads
    nu, nw = np.linalg.norm(u, axis=2), np.linalg.norm(w, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.clip(np.einsum("kij,kij->ki", u, w) / (nu * nw), -1.0, 1.0)
    err = np.abs(np.degrees(np.arccos(cosine)) - 90.0).sum(axis=1)
    err[((nu == 0) | (nw == 0)).any(axis=1)] = np.inf
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


def _drop_nonmanifold_edges(vertices: np.ndarray, polys: np.ndarray, links: HalfedgeLinks, report: RepairReport
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


def _orient(polys: np.ndarray, links: HalfedgeLinks, report: RepairReport) -> np.ndarray:
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


def _split_pinched(vertices: np.ndarray, polys: np.ndarray, report: RepairReport, links: HalfedgeLinks | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    if len(polys) == 0:
        return vertices, polys
    links = HalfedgeLinks.of(polys, links)
    if not links.edges_ok:
        return vertices, polys
    vertex, fan, count = corner_fans(polys, links)
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
    links = HalfedgeLinks.of(polygons)
    bad = links.twin == -2
    if bad.any():
        if len(np.unique(links.face[bad])) > max_faces:
            return None
        polygons = _drop_nonmanifold_edges(vertices, polygons, links, report)
        links = HalfedgeLinks.of(polygons, links)
        if not links.edges_ok:
            polygons = _orient(polygons, links, report)
            links = HalfedgeLinks.of(polygons, links)
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


def _boundary_loops(links: HalfedgeLinks) -> list[list[int]]:
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
                is_border: Callable[[np.ndarray], bool] | None, links: HalfedgeLinks | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    if len(polys) == 0:
        return vertices, polys
    links = HalfedgeLinks.of(polys, links)
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


def _dissolve_valence2(vertices: np.ndarray, polys: np.ndarray, report: RepairReport, links: HalfedgeLinks | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the two polygons around each interior vertex that has only those two, again while
    merging leaves new ones (a chain of them shares polygons, so one round takes every other)."""
    for _ in range(MAX_DISSOLVE_ROUNDS):
        before = report.valence2
        vertices, polys = _dissolve_valence2_once(vertices, polys, report, links)
        if report.valence2 == before:
            break
        links = None
    return vertices, polys


def _dissolve_valence2_once(vertices: np.ndarray, polys: np.ndarray, report: RepairReport,
                            links: HalfedgeLinks | None = None) -> tuple[np.ndarray, np.ndarray]:
    if len(polys) == 0:
        return vertices, polys
    links = HalfedgeLinks.of(polys, links)
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
