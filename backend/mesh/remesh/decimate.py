"""Decimation of closed manifold meshes by edge collapse, keeping them closed, manifold and oriented.

Method
------
Rounds of parallel edge collapses, all in numpy:

1. Every undirected edge ``(u, v)`` gets a priority, its length (shortest first).
2. An *independent set* is picked: an edge is taken when it has the lowest priority among
   all edges with an endpoint in ``N[u] | N[v]`` (closed one-rings). Two taken edges then
   have endpoints at graph distance >= 2, so no face holds endpoints of two of them and the
   neighbourhoods a collapse reads are never changed by another: the collapses of a round
   are as safe together as one by one.
3. A taken edge is collapsed only if
   - the *link condition* holds: ``u`` and ``v`` share exactly the two neighbours opposite
     the edge (Dey et al., 1999), which on a closed 2-manifold is what keeps it a closed
     2-manifold (no pinched vertex, no duplicate or folded faces);
   - no vertex drops below valence 3 (a tetrahedron is never collapsed flat);
   - no surviving face around it flips or collapses when ``u`` and ``v`` move to their
     midpoint (its normal turns by less than ``MAX_NORMAL_TURN_DEGREES``).
4. ``v`` is replaced by ``u`` (at the midpoint) in every face, the two faces on the edge
   are dropped; windings are untouched, so the mesh stays consistently oriented.

An edge refused in step 3 is left out of later rounds (it would otherwise win its
neighbourhood again every round and block it); when a round collapses nothing, the refused
edges get one more chance, their neighbourhoods having changed. Rounds stop at
``target_faces`` (each collapse removes two faces, so the result has ``target_faces`` or one
more) or when no edge can be collapsed. Each round is a few sorts over the edges; 437k ->
50k faces takes ~50 rounds, ~7 s.
"""

from __future__ import annotations

import logging

import numpy as np

from backend.progress import ProgressFn, null_progress

log = logging.getLogger(__name__)

#: A collapse is refused when it turns a neighbouring face's normal by more than this: it
#: keeps the surface from folding over and sharp features from being flattened.
MAX_NORMAL_TURN_DEGREES = 60.0

#: Faces whose area would fall below this fraction of their old area refuse the collapse.
MIN_AREA_RATIO = 1e-3


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int, *,
             progress: ProgressFn = null_progress) -> tuple[np.ndarray, np.ndarray]:
    """Collapse edges of a closed, edge-manifold, oriented mesh until about ``target_faces`` remain.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
        Closed and edge-manifold (every edge in exactly two faces), consistently wound.
    target_faces : int
        Faces wanted (>= 4 per component); the result has this many or one more, or more
        when no further collapse is safe.
    progress : ProgressFn
        Called between rounds; may raise :class:`backend.progress.Cancelled`.

    Returns
    -------
    vertices : (n', 3) float64
    faces : (m', 3) int64
        Closed, edge-manifold and wound as the input; unused vertices removed.
    """
    if isinstance(target_faces, (bool, np.bool_)) or not isinstance(target_faces, (int, np.integer)):
        raise ValueError(f"target_faces must be an integer, got {target_faces!r}")
    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    v = np.asarray(vertices, dtype=np.float64).copy()
    f = np.asarray(faces, dtype=np.int64).copy()
    start = len(f)
    cos_limit = np.cos(np.radians(MAX_NORMAL_TURN_DEGREES))
    rounds = 0
    refused = np.zeros(0, dtype=np.int64)
    while len(f) > target_faces + 1:
        progress(min(1.0, (start - len(f)) / max(start - target_faces, 1)), "decimating")
        collapsed, failed = _collapse_round(v, f, (len(f) - target_faces) // 2, cos_limit, refused)
        rounds += 1
        if collapsed is None:
            if len(refused) == 0:
                break
            refused = np.zeros(0, dtype=np.int64)  # their neighbourhoods changed: try them again
            continue
        f = collapsed
        refused = np.union1d(refused, failed)
    used, f = np.unique(f, return_inverse=True)
    log.info("decimate: %d -> %d faces in %d rounds", start, len(f) // 3, rounds)
    progress(1.0, "decimating")
    return v[used], f.reshape(-1, 3).astype(np.int64)


def _collapse_round(v: np.ndarray, f: np.ndarray, budget: int, cos_limit: float, refused: np.ndarray
                    ) -> tuple[np.ndarray | None, np.ndarray]:
    """One round of independent collapses (module doc); moves ``v`` in place.

    Edges whose key ``u * n + v`` is in ``refused`` (sorted) are not candidates: a refused
    shortest edge would otherwise win its neighbourhood every round and block it.

    Returns
    -------
    faces : (m', 3) int64 or None
        None when nothing was collapsed.
    failed : (r,) int64
        Keys of the edges refused in this round.
    """
    if budget < 1:
        return None, np.zeros(0, dtype=np.int64)
    n = len(v)
    # Half-edges i -> j of each face with the opposite corner k.
    hi = f.reshape(-1)
    hj = np.roll(f, -1, axis=1).reshape(-1)
    hk = np.roll(f, -2, axis=1).reshape(-1)
    one = np.flatnonzero(hi < hj)                                   # each undirected edge once
    back = np.flatnonzero(hi > hj)                                  # and its twins
    back_key = hj[back] * n + hi[back]                              # as (low, high)
    order = np.argsort(back_key)
    u, w, opp1 = hi[one], hj[one], hk[one]
    twin = back[order[np.searchsorted(back_key[order], u * n + w)]]
    opp2 = hk[twin]

    edge_key = u * n + w
    # Refused edges compete for nothing, but they still join their ends: the one-rings of
    # step 2 run over every edge. (Leaving them out let two collapses at both ends of a
    # refused edge run in one round, which made an edge of four faces on CesiumMilkTruck.)
    all_u, all_w = u, w
    candidate = ~np.isin(edge_key, refused, assume_unique=False)
    u, w, opp1, opp2, edge_key = u[candidate], w[candidate], opp1[candidate], opp2[candidate], edge_key[candidate]
    if len(u) == 0:
        return None, np.zeros(0, dtype=np.int64)
    length = np.linalg.norm(v[u] - v[w], axis=1)
    priority = np.empty(len(length), dtype=np.int64)               # distinct ranks, shortest first
    priority[np.argsort(length, kind="stable")] = np.arange(len(length))
    m1 = np.full(n, np.iinfo(np.int64).max)                        # best candidate at each vertex
    np.minimum.at(m1, u, priority)
    np.minimum.at(m1, w, priority)
    m2 = m1.copy()                                                  # ... in its closed one-ring
    np.minimum.at(m2, all_u, m1[all_w])
    np.minimum.at(m2, all_w, m1[all_u])
    chosen = np.flatnonzero(priority == np.minimum(m2[u], m2[w]))

    # Valence and link condition.
    degree = np.bincount(hi, minlength=n)
    cu, cw, o1, o2 = u[chosen], w[chosen], opp1[chosen], opp2[chosen]
    ok = (degree[cu] + degree[cw] - 4 >= 3) & (degree[o1] >= 4) & (degree[o2] >= 4) & (o1 != o2)
    from scipy.sparse import csr_matrix

    adjacency = csr_matrix((np.ones(len(hi), dtype=np.int32), (hi, hj)), shape=(n, n))
    common = np.asarray(adjacency[cu].multiply(adjacency[cw]).sum(axis=1)).ravel()
    ok &= common == 2

    # Geometry: faces around u or v must not flip or collapse when both move to the midpoint.
    edge_of = np.full(n, -1, dtype=np.int64)
    edge_of[cu] = np.arange(len(chosen))
    edge_of[cw] = np.arange(len(chosen))
    mid = 0.5 * (v[cu] + v[cw])
    touched = edge_of[f]                                            # (m, 3)
    around = np.flatnonzero((touched >= 0).any(axis=1))
    t = touched[around]
    e = t.max(axis=1)                                               # the one edge a face can touch
    tri = f[around]
    removed = (tri == cu[e][:, None]).any(axis=1) & (tri == cw[e][:, None]).any(axis=1)
    old = v[tri]
    new = old.copy()
    moved = t >= 0
    new[moved] = mid[t[moved]]
    n_old = np.cross(old[:, 1] - old[:, 0], old[:, 2] - old[:, 0])
    n_new = np.cross(new[:, 1] - new[:, 0], new[:, 2] - new[:, 0])
    a_old, a_new = np.linalg.norm(n_old, axis=1), np.linalg.norm(n_new, axis=1)
    good = (np.einsum("ij,ij->i", n_old, n_new) > cos_limit * a_old * a_new) & (a_new > MIN_AREA_RATIO * a_old)
    bad = np.zeros(len(chosen), dtype=bool)
    np.logical_or.at(bad, e[~removed], ~good[~removed])
    ok &= ~bad

    take = np.flatnonzero(ok)
    failed = edge_key[chosen[~ok]]
    if len(take) == 0:
        return None, failed
    if len(take) > budget:
        take = take[np.argsort(priority[chosen[take]])[:budget]]
    cu, cw = cu[take], cw[take]
    v[cu] = mid[take]
    target = np.arange(n)
    target[cw] = cu
    f = target[f]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return f[keep], failed
