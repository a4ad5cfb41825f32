"""Polygon arrays (backend.mesh.polygons): conversion to and from result meshes, and their report."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import polygons as P
from backend.mesh.gltf import polygon_triangles
from backend.mesh.metrics import polygon_report
from tests import meshes


def test_round_trip_through_mesh_arrays_matches_polygon_triangles():
    polys = P.pad([[0, 1, 3, 2], [4, 6, 7], [1, 5, 7, 3]])
    tris, sizes = P.to_mesh(meshes.CUBE_VERTICES, polys)
    ref_tris, ref_sizes = polygon_triangles([[0, 1, 3, 2], [4, 6, 7], [1, 5, 7, 3]])
    assert np.array_equal(tris, ref_tris) and np.array_equal(sizes, ref_sizes)
    assert np.array_equal(P.from_mesh(tris, sizes), polys)
    with pytest.raises(ValueError, match="describe 6 triangles but faces has 5"):
        P.from_mesh(tris, np.array([4, 4, 4], dtype=np.uint8))


def test_polygon_report_counts_quads_and_valence():
    tris, sizes = P.to_mesh(meshes.CUBE_VERTICES, P.pad(meshes.CUBE_QUADS))
    report = polygon_report(tris, sizes)
    assert report == {"faces": 6, "quads": 6, "triangles": 0, "quad_ratio": 1.0, "valence4_share": 0.0,
                      "manifold": True, "closed": True}
    v, p = meshes.quad_cube(2)
    report = polygon_report(*P.to_mesh(v, p))
    assert report["faces"] == 96 and report["quad_ratio"] == 1.0
    assert report["valence4_share"] == pytest.approx((len(v) - 8) / len(v))   # all but the 8 corners
    open_report = polygon_report(*P.to_mesh(v, p[1:]))
    assert open_report["manifold"] and not open_report["closed"]
    flipped = p.copy()
    flipped[0] = flipped[0][[0, 3, 2, 1]]
    assert not polygon_report(*P.to_mesh(v, flipped))["manifold"]
