"""Edge-collapse decimation (backend.mesh.remesh.decimate): collapses of one round never touch each other."""

from __future__ import annotations

import numpy as np

from backend.mesh.remesh import decimate
from tests import meshes


def _neighbours(faces: np.ndarray, x: int) -> set[int]:
    return set(np.unique(faces[(faces == x).any(axis=1)]).tolist()) - {x}


def test_a_refused_edge_still_keeps_the_collapses_at_its_ends_apart():
    # Regression (field test, issue 14): with the edge a-b refused by an earlier round, a
    # collapse at a and one at b ran in the same round, and CesiumMilkTruck's decimated
    # remesh got an edge of four faces (not closed, not manifold).
    v, f = meshes.torus(rings=24, segments=12)
    a, b = int(f[0, 0]), int(f[0, 1])
    na, nb = _neighbours(f, a), _neighbours(f, b)
    x = min(na - nb - {b})                                # a neighbour of a only
    y = min(n for n in nb - na - {a} if n not in _neighbours(f, x) and n != x)
    v = v.copy()
    v[x] = 0.97 * v[a] + 0.03 * v[x]                      # a-x and b-y: the shortest edges around
    v[y] = 0.97 * v[b] + 0.03 * v[y]
    n = len(v)
    refused = np.array([min(a, b) * n + max(a, b)])
    out, _ = decimate._collapse_round(v.copy(), f.copy(), 10**6, np.cos(np.radians(60.0)), refused)
    gone = set(np.unique(f).tolist()) - set(np.unique(out).tolist())
    assert len(gone & {a, b, x, y}) == 1                  # one of the two collapses, not both
    edges = np.sort(np.concatenate([out[:, [0, 1]], out[:, [1, 2]], out[:, [2, 0]]]), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()
