"""The artist pipeline: quad retopology at a face budget, on meshes the tests make."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from backend.errors import BadParams
from backend.mesh.gltf import POLYGONS_EXTENSION
from backend.mesh.io import load_mesh, mesh_to_bytes, save_mesh
from backend.mesh.metrics import canonical_chamfer_l1, connected_components, genus, polygon_report, signed_volume
from backend.mesh.retopo import artist as retopo_module
from backend.mesh.retopo.artist import retopo
from backend.mesh.triangles import point_triangle_distance
from backend.mesh.types import Mesh
from backend.pipelines import get_pipeline, registry
from backend.progress import Cancelled
from tests import meshes
from tests.backend.server_process import REPO

BOX = (np.array([-0.5, -0.4, -0.3]), np.array([0.5, 0.4, 0.3]))


def _report(result):
    return polygon_report(*result.mesh_arrays())


def _within(faces: int, target: int) -> bool:
    return abs(faces - target) <= 0.10 * target


@pytest.mark.parametrize("target", [300, 800])
def test_sphere_quad_dominant_hits_the_budget_closed_and_outward(target):
    v, f = meshes.uv_sphere(16, 32)
    result = retopo(v, f, target_faces=target)
    report = _report(result)
    assert _within(report["faces"], target), report
    # Measured 0.95 on this sphere: Instant Meshes leaves a few triangles at singularities.
    assert report["quad_ratio"] >= 0.85 and report["triangles"] > 0
    assert report["manifold"] and report["closed"], report
    tris, _ = result.mesh_arrays()
    assert signed_volume(result.vertices, tris) > 0 and genus(tris) == 0
    # Vertices on the (faceted) sphere, or just off it by the best fit (at most FIT_MAX_MOVE of an
    # edge, about 0.2 at 300 faces): radius between the facets' inradius and 1.01.
    radius = np.linalg.norm(result.vertices, axis=1)
    assert radius.max() < 1.01 and radius.min() > 0.97
    assert result.source == "input" and result.resolution is None


def test_quads_mode_gives_only_quads_on_the_same_surface():
    v, f = meshes.torus(1.0, 0.4, 48, 24)
    dominant = retopo(v, f, target_faces=600)
    quads = retopo(v, f, target_faces=600, mode="quads")
    report = _report(quads)
    assert report["quads"] == report["faces"] and report["triangles"] == 0
    assert _within(report["faces"], 600) and report["manifold"] and report["closed"]
    tris, _ = quads.mesh_arrays()
    assert genus(tris) == 1
    # Pairing triangles moves no vertex: as close to the input as the quad-dominant result.
    c_quads = canonical_chamfer_l1(v, f, quads.vertices, tris, samples=20_000)
    c_dominant = canonical_chamfer_l1(v, f, dominant.vertices, dominant.mesh_arrays()[0], samples=20_000)
    assert c_quads < 1.1 * c_dominant


@pytest.mark.parametrize("mode", ["quads", "quad_dominant"])
def test_a_spheres_layout_is_regular_with_open_corners(mode):
    # Issue 19: at 2,000 faces, >= 95% of the vertices valence 4 and no quad corner above 160
    # degrees. (Instant Meshes alone, triangles paired: 0.80-0.89 valence 4, corners up to 167.)
    import trimesh

    from backend.mesh.metrics import layout_report

    sphere = trimesh.creation.icosphere(subdivisions=5)
    result = retopo(sphere.vertices, sphere.faces, target_faces=2000, mode=mode)
    tris, sizes = result.mesh_arrays()
    report, layout = polygon_report(tris, sizes), layout_report(result.vertices, tris, sizes)
    assert report["valence4_share"] >= 0.95 and layout["max_quad_angle"] <= 160.0, (report, layout)
    assert _within(report["faces"], 2000) and report["manifold"] and report["closed"] and layout["components"] == 1
    rewired = result.repair.get("rotated_edges", 0) + result.repair.get("collapsed_diagonals", 0)
    assert rewired > 0   # the clean-up did the work


@pytest.mark.parametrize("name, target", [("holes", 1000), ("holes", 2000), ("dumbbell", 1000)])
def test_no_quad_is_left_flat_on_a_border_or_in_a_neck(name, target):
    # Issue 19: no quad corner above 160 degrees. Before the border and last-resort steps: a sphere
    # with three holes had a quad at 326 and 170 degrees (a pairing path that ended at a border
    # put a midpoint there, a border vertex with one quad at 180), the dumbbell one at 197.
    from backend.mesh.metrics import layout_report

    v, f = meshes.sphere_with_holes() if name == "holes" else meshes.dumbbell(0.3)
    result = retopo(v, f, target_faces=target, mode="quads")
    tris, sizes = result.mesh_arrays()
    report, layout = polygon_report(tris, sizes), layout_report(result.vertices, tris, sizes)
    assert layout["max_quad_angle"] <= 160.0 and layout["valence2"] == 0, layout
    assert report["quads"] == report["faces"] and _within(report["faces"], target) and report["manifold"]


def _made(name: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    if name == "box":
        return meshes.box(*BOX)
    if name == "cylinder":
        c = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=96)
    else:
        c = trimesh.creation.annulus(r_min=0.3, r_max=0.6, height=0.3, sections=64)
    return np.asarray(c.vertices, dtype=float), np.asarray(c.faces)


@pytest.mark.parametrize("name, target", [("box", 2000), ("annulus", 2000), ("cylinder", 600)])
@pytest.mark.parametrize("mode", ["quads", "quad_dominant"])
def test_no_quad_is_left_flat_on_a_straight_crease(name, target, mode):
    # Issue 19. The tidying's rewirings left one quad each on these, at 180 / 173 / 164 degrees:
    # a vertex on a straight crease with a single quad on one side (measured before the last
    # step). Pure quads: the vertex merges along the crease and the two triangles that makes are
    # paired anew; quad-dominant: such a quad is cut into its two triangles.
    from backend.mesh.metrics import layout_report

    v, f = _made(name)
    result = retopo(v, f, target_faces=target, mode=mode)
    tris, sizes = result.mesh_arrays()
    report, layout = polygon_report(tris, sizes), layout_report(result.vertices, tris, sizes)
    assert layout["max_quad_angle"] <= 160.0 and layout["valence2"] == 0, layout
    assert _within(report["faces"], target) and report["manifold"] and report["closed"]
    assert mode != "quads" or report["quads"] == report["faces"]


def test_a_flat_quad_of_a_quad_dominant_layout_is_cut_through_its_flat_corner():
    from backend.mesh.polygons import polygon_areas, quad_corner_angles

    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [1, 1, 0], [0, -1, 0], [2, -1, 0]], dtype=float)
    p = np.array([[0, 1, 2, 3], [4, 5, 2, 1], [4, 1, 0, -1]])                    # corner 1 of the first: 180
    out = retopo_module._flat_quads_cut(v, p)
    assert len(out) == 4 and (out[:, 3] < 0).sum() == 3
    assert polygon_areas(v, out).sum() == pytest.approx(polygon_areas(v, p).sum())
    assert sorted(map(sorted, out[[0, 3], :3].tolist())) == [[0, 1, 3], [1, 2, 3]]   # the cut ends at vertex 1
    assert quad_corner_angles(v, out)[1].max() < 160.0
    assert np.array_equal(retopo_module._flat_quads_cut(v, p[1:]), p[1:])


def test_the_best_fit_lifts_a_spheres_quads_so_they_straddle_it():
    # A quad cube pushed onto the unit sphere: every vertex on it, every quad a chord under it.
    # Fitted, the vertices sit about half a sagitta out and the quads' surface lies nearer the
    # sphere on average; a vertex on a crease stays, and none moves more than FIT_MAX_MOVE edges.
    from backend.mesh.metrics import sample_surface
    from backend.mesh.polygons import edge_counts, to_mesh
    from backend.mesh.retopo.relax import CreaseLines

    v, p = meshes.quad_cube(4)
    v = (v - 0.5) / np.linalg.norm(v - 0.5, axis=1, keepdims=True)
    ref = retopo_module._Faces(*meshes.uv_sphere(96, 192))
    surface = retopo_module._Surface(ref, spacing=0.01)
    kept = int(np.argmax(v[:, 2]))                                          # a vertex on a "crease" at the pole
    lines = CreaseLines(v[kept][None] - (0.1, 0, 0), v[kept][None] + (0.1, 0, 0), tolerance=1e-6)
    fitted = retopo_module._fitted(v, p, surface, lines)

    def mean_distance(vertices):
        tris, sizes = to_mesh(vertices, p)
        points, _ = sample_surface(vertices, tris, 20_000, seed=1)
        return np.abs(np.linalg.norm(points, axis=1) - 1.0).mean()

    assert mean_distance(fitted) < 0.6 * mean_distance(v), (mean_distance(fitted), mean_distance(v))
    radius = np.linalg.norm(fitted, axis=1)
    assert radius[kept] == 1.0 and np.median(radius) > 1.0
    edges, _, _ = edge_counts(p)
    edge = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1).max()
    assert np.linalg.norm(fitted - v, axis=1).max() <= retopo_module.FIT_MAX_MOVE * edge


def test_pure_quads_split_a_quarter_budget_layout_and_are_more_regular_for_it(monkeypatch):
    # Pure quads at 1,000 faces or more: Instant Meshes at a quarter of the budget, each polygon
    # split into quads; pairing the triangles of a full-budget run instead cuts zig-zag seams of
    # valence-3/5 pairs. Both from the same sphere, with the same pole pass after.
    v, f = meshes.uv_sphere(48, 96)
    split = retopo(v, f, target_faces=2000, mode="quads")
    monkeypatch.setattr(retopo_module, "SUBDIVIDE_MIN_FACES", 10**9)
    paired = retopo(v, f, target_faces=2000, mode="quads")
    assert len(split.remesher_targets) == 1 and split.remesher_targets[0] < 600
    assert paired.remesher_targets[0] > 1800
    a, b = _report(split), _report(paired)
    assert a["quads"] == a["faces"] and _within(a["faces"], 2000) and a["closed"] and a["manifold"]
    assert a["valence4_share"] > b["valence4_share"] + 0.005, (a, b)
    # As close to the sphere: every vertex on it.
    assert np.abs(np.linalg.norm(split.vertices, axis=1) - 1.0).max() < 5e-3


@pytest.mark.parametrize("neck, runs", [(0.05, 2), (0.3, 1)])
def test_a_neck_thinner_than_two_edges_sends_pure_quads_back_to_the_full_budget(neck, runs):
    # At 2,000 faces an edge is about 0.11 here; a quarter-budget lattice (edges about 0.22) cannot
    # follow a neck 0.1 across, and the subdivided result leaves it out; a neck 0.6 across it keeps.
    from backend.mesh.metrics import surface_area

    v, f = meshes.dumbbell(neck)
    result = retopo(v, f, target_faces=2000, mode="quads")
    assert len(result.remesher_targets) == runs, result.remesher_targets
    assert result.remesher_targets[0] < 600 and (runs == 1 or result.remesher_targets[1] > 1800)
    edge = np.sqrt(surface_area(v, f) / 2000)
    assert retopo_module._lost_detail(v, f, result.vertices, result.polygons, edge) <= retopo_module.MAX_LOST_DETAIL
    report = _report(result)
    assert report["quads"] == report["faces"] and _within(report["faces"], 2000) and report["closed"]


def test_a_mesh_mostly_thinner_than_an_edge_skips_the_quarter_budget_run():
    # A 2 x 2 plate 0.04 thick at 2,000 quads (an edge about 0.066): nearly all of it is thinner
    # than an edge, which a quarter-budget lattice would lose; Instant Meshes runs once, at the
    # full budget, instead of a quarter run that the check after the split would throw away. A
    # sphere is thick everywhere.
    import trimesh

    plate = trimesh.creation.box((2.0, 2.0, 0.04)).subdivide().subdivide().subdivide()
    v, f = np.asarray(plate.vertices, dtype=float), np.asarray(plate.faces)
    ref = retopo_module._Faces(v, f)
    edge = np.sqrt(ref.area.sum() / 2000)
    assert retopo_module._thin_share(ref, retopo_module._Surface(ref, edge / 4), edge) > 0.9
    result = retopo(v, f, target_faces=2000, mode="quads")
    assert result.remesher_targets[0] > 1800, result.remesher_targets
    report = _report(result)
    assert report["quads"] == report["faces"] and _within(report["faces"], 2000) and report["closed"]
    sphere = retopo_module._Faces(*meshes.uv_sphere(32, 64))
    assert retopo_module._thin_share(sphere, retopo_module._Surface(sphere, edge / 4), edge) == 0.0


@pytest.mark.parametrize("with_borders", [True, False])
def test_split_quads_put_their_new_border_vertices_on_the_border(with_borders):
    # A disc: the midpoint of a coarse border edge (a chord) goes onto the disc's rim, not to the
    # surface point nearest it, which is the chord's middle itself (0.966 from the centre here).
    t = np.linspace(0.0, 2 * np.pi, 256, endpoint=False)
    ref_v = np.vstack([[0.0, 0.0, 0.0], np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], axis=1)])
    ref_f = np.stack([np.zeros(256, dtype=np.int64), 1 + np.arange(256), 1 + (np.arange(256) + 1) % 256], axis=1)
    a = np.linspace(0.0, 2 * np.pi, 12, endpoint=False)
    v = np.vstack([[0.0, 0.0, 0.0], np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=1)])
    p = np.stack([np.zeros(12, dtype=np.int64), 1 + np.arange(12), 1 + (np.arange(12) + 1) % 12,
                  np.full(12, -1)], axis=1)
    surface = retopo_module._Surface(retopo_module._Faces(ref_v, ref_f), spacing=0.05)
    borders = retopo_module._Borders(ref_v, ref_f, reach=0.5) if with_borders else None
    out_v, out_p = retopo_module._subdivided(v, p, surface, borders, None, reach=0.5)
    assert len(out_p) == 36 and (out_p >= 0).all()
    from backend.mesh.polygons import edge_counts

    edges, counts, _ = edge_counts(out_p)
    rim = np.unique(edges[counts == 1])
    radius = np.linalg.norm(out_v[rim], axis=1)
    assert len(rim) == 24 and np.allclose(out_v[:, 2], 0.0)
    if with_borders:
        assert np.abs(radius - 1.0).max() < 1e-3, radius
    else:
        assert radius.min() < 0.97


def _chair(rod_voxels: float, target: int) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """A seat (1 x 1 x 0.08) on four round legs through it, each a closed part ``rod_voxels``
    voxels of the artist's working grid thick (:func:`auto_resolution` for ``target``)."""
    import trimesh

    legs = [(-0.4, -0.4), (-0.4, 0.4), (0.4, -0.4), (0.4, 0.4)]
    scale = 1.9 / 1.1                                        # canonical box: the height 1.1 spans 1.9
    h = 2.0 / retopo_module.auto_resolution((2.0 + 0.32 + 0.25) * scale ** 2, target) / scale
    parts = [trimesh.creation.box(extents=(1.0, 1.0, 0.08))]
    for x, y in legs:
        leg = trimesh.creation.cylinder(radius=rod_voxels * h / 2.0, height=1.0, sections=16)
        leg.apply_translation((x, y, -0.46))
        parts.append(leg)
    chair = trimesh.util.concatenate(parts)
    return np.asarray(chair.vertices), np.asarray(chair.faces), legs


@pytest.mark.parametrize("mode", ["quads", "quad_dominant"])
def test_legs_thinner_than_the_kept_thickness_neither_blow_the_budget_nor_scatter(mode):
    # Legs one voxel across ask for four quads round them at a quarter of the target edge, 13
    # times their share of the budget: the result came back 19% over after three runs. Beyond
    # their share, thin parts remeshed alone now get at most half the budget, and each comes
    # back as one piece (at a coarser edge Instant Meshes broke one into scraps: 12 pieces).
    from backend.mesh.metrics import connected_components

    v, f, _ = _chair(rod_voxels=1.0, target=2000)
    result = retopo(v, f, target_faces=2000, mode=mode)
    tris, _ = result.mesh_arrays()
    assert _within(len(result.polygons), 2000), (len(result.polygons), result.remesher_targets)
    assert connected_components(tris)[0] == connected_components(f)[0] == 5
    assert result.repair["thin_parts"] == 4


@pytest.mark.parametrize("mode", ["quads", "quad_dominant"])
def test_a_chairs_legs_two_voxels_thick_are_kept_and_nothing_is_added(mode):
    # Issue 19: the legs came out of Instant Meshes as strips one quad round, which the
    # clean-up took apart: no legs, and scraps of them as extra pieces with valence-2 vertices.
    from backend.mesh.metrics import connected_components, layout_report

    v, f, legs = _chair(rod_voxels=2.0, target=2000)
    result = retopo(v, f, target_faces=2000, mode=mode)
    tris, sizes = result.mesh_arrays()
    report, layout = polygon_report(tris, sizes), layout_report(result.vertices, tris, sizes)
    assert report["manifold"] and report["closed"] and layout["valence2"] == 0
    assert layout["components"] == connected_components(f)[0] == 5                  # seat and four legs
    assert result.repair["thin_parts"] == 4 and _within(report["faces"], 2000)
    for x, y in legs:                                                                # each leg, top to bottom
        on_leg = result.vertices[(np.hypot(result.vertices[:, 0] - x, result.vertices[:, 1] - y) < 0.05)
                                 & (result.vertices[:, 2] < -0.05)]
        assert len(on_leg) >= 40 and on_leg[:, 2].min() < -0.9 and on_leg[:, 2].max() > -0.15
        assert np.hypot(on_leg[:, 0] - x, on_leg[:, 1] - y).max() < 0.03              # on the rod, not a blob


def _box_edge_points(n: int = 20) -> np.ndarray:
    lo, hi = BOX
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    t = np.linspace(0.0, 1.0, n)[:, None]
    points = []
    for i in range(8):
        for j in range(i + 1, 8):
            if (corners[i] != corners[j]).sum() == 1:          # the 12 edges differ in one coordinate
                points.append(corners[i] + t * (corners[j] - corners[i]))
    return np.concatenate(points)


def _distance_to(result, points: np.ndarray) -> np.ndarray:
    """Exact distance from each point to the result's surface (every point against every triangle)."""
    tris, _ = result.mesh_arrays()
    corners = result.vertices[tris]                                        # (m, 3, 3)
    p = np.repeat(points, len(tris), axis=0)
    c = np.tile(corners, (len(points), 1, 1))
    return point_triangle_distance(p, c[:, 0], c[:, 1], c[:, 2]).reshape(len(points), len(tris)).min(axis=1)


@pytest.mark.parametrize("mode, target", [("quad_dominant", 600), ("quads", 600), ("quads", 2000)])
def test_box_keeps_its_sharp_edges_and_corners(mode, target):
    # quads at 2,000: a quarter-budget layout split into quads, its crease edges' midpoints on the creases.
    v, f = meshes.box(*BOX)
    sharp = retopo(v, f, target_faces=target, mode=mode)
    soft = retopo(v, f, target_faces=target, mode=mode, sharp_angle=None)
    lo, hi = BOX
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    nearest = np.linalg.norm(sharp.vertices[None, :, :] - corners[:, None, :], axis=2).min(axis=1)
    assert nearest.max() < 1e-9, "every corner of the box is a vertex"
    # Points along the box's 12 edges that lie on the result: measured 96-98% (a few quads
    # near corners fold across an edge); without sharp edges the edges are bevelled.
    on_edge = (_distance_to(sharp, _box_edge_points()) < 1e-6).mean()
    assert on_edge >= 0.9, f"only {on_edge:.0%} of the box's edges lie on the result"
    assert (_distance_to(soft, _box_edge_points()) < 1e-6).mean() < 0.3, "the check can tell bevelled edges"
    report = _report(sharp)
    assert report["manifold"] and report["closed"] and _within(report["faces"], target)
    tris, _ = sharp.mesh_arrays()
    assert signed_volume(sharp.vertices, tris) == pytest.approx(0.48, rel=2e-3)
    assert sharp.creases_snapped >= 90


def _crumpled_ball(amplitude: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """An icosphere of 320 faces with its vertices pushed in and out by up to ``amplitude`` of the
    radius: a faceted low-poly blob whose edges are sharp (above 30 degrees) nearly everywhere."""
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    return ico.vertices * (1.0 + amplitude * rng.uniform(-1.0, 1.0, (len(ico.vertices), 1))), ico.faces


def test_the_crease_angle_rises_only_when_creases_would_outweigh_the_layout():
    from backend.mesh.metrics import surface_area

    # A box's twelve edges at 90 degrees: within any sensible share, the angle stays; with a budget
    # shorter than them, they still count together (all at 90 degrees), never a few of them.
    bv, bf = meshes.box()
    ref = retopo_module._Faces(np.asarray(bv, dtype=np.float64), np.asarray(bf, dtype=np.int64))
    assert retopo_module.crease_angle_within(ref, 30.0, 100.0) == 30.0
    assert 89.0 < retopo_module.crease_angle_within(ref, 30.0, 1.0) < 90.0

    v, f = _crumpled_ball()
    ref = retopo_module._Faces(v, f.astype(np.int64))
    edge = np.sqrt(surface_area(v, f) / 2000)
    budget = retopo_module.CREASE_SHARE * 2 * 2000 * edge
    raised = retopo_module.crease_angle_within(ref, 30.0, budget)
    n = ref.normal
    pairs = {}
    for face, tri in enumerate(f):
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            pairs.setdefault((min(a, b), max(a, b)), []).append(face)
    bend = {e: np.degrees(np.arccos(np.clip(n[x] @ n[y], -1, 1))) for e, (x, y) in pairs.items()}
    length = {e: np.linalg.norm(v[e[0]] - v[e[1]]) for e in pairs}
    sharp = sum(length[e] for e in pairs if bend[e] > 30.0)
    kept = sum(length[e] for e in pairs if bend[e] > raised)
    assert sharp > 1.5 * budget                         # the ball's creases would outweigh the layout
    assert raised > 30.0 and 0.8 * budget < kept <= budget, (raised, kept, budget)


def test_a_faceted_blob_is_remeshed_smoothly_and_keeps_its_sharpest_creases(monkeypatch):
    # Issue 19 (suzanne at 2,000 quads: 0.83 of its vertices at valence 4 against QuadriFlow's
    # 0.95, creased at 30 degrees almost everywhere). Measured on this blob at 2,000 quads: every
    # crease followed, 0.89 valence 4; creases within CREASE_SHARE (those above 43 degrees), 0.95,
    # and two to three times as fast.
    from backend.mesh.metrics import crease_coverage, layout_report, surface_area

    v, f = _crumpled_ball()
    share = retopo_module.CREASE_SHARE
    edge = np.sqrt(surface_area(v, f) / 2000)
    raised = retopo_module.crease_angle_within(retopo_module._Faces(v, f.astype(np.int64)), 30.0,
                                               share * 2 * 2000 * edge)
    valence4, covered = {}, {}
    for name, every_crease, sharp in (("all", np.inf, 30.0), ("share", share, 30.0), ("none", share, None)):
        monkeypatch.setattr(retopo_module, "CREASE_SHARE", every_crease)
        result = retopo(v, f, target_faces=2000, mode="quads", sharp_angle=sharp)
        tris, sizes = result.mesh_arrays()
        report, layout = polygon_report(tris, sizes), layout_report(result.vertices, tris, sizes)
        assert _within(report["faces"], 2000) and report["manifold"] and layout["components"] == 1
        valence4[name] = report["valence4_share"]
        covered[name] = crease_coverage(v, f, result.vertices, tris, sizes, angle_degrees=raised)
        if name == "share":
            assert layout["max_quad_angle"] <= 160.0, layout
    assert valence4["share"] >= 0.94 and valence4["all"] < valence4["share"] - 0.03, valence4
    # The creases kept still pull the layout onto them (measured 0.40 of their length on result
    # edges, against 0.28 without creases and 0.83 with all of them followed).
    assert covered["share"] > covered["none"] + 0.05, covered


def test_a_flat_triangle_of_the_coarse_layout_is_collapsed_before_splitting():
    # Split, a triangle with a 178-degree corner would give three quads folded flat. Its shortest
    # edge goes, toward the border vertex; the square keeps its area and corners.
    v = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.02, 0.0], [1.0, 1.0, 0.0]])
    p = np.array([[0, 1, 4, -1], [0, 4, 5, 3], [4, 1, 2, 5], [5, 2, 3, -1]])
    out_v, out_p, collapsed = retopo_module._flat_triangles_collapsed(v, p, None, {"max_hole": 0})
    assert collapsed == 1 and len(out_p) == 3
    from backend.mesh.polygons import polygon_areas

    assert polygon_areas(out_v, out_p).sum() == pytest.approx(4.0)
    assert {tuple(x) for x in out_v.tolist()} >= {(0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (2.0, 2.0, 0.0), (0.0, 2.0, 0.0)}
    tris = out_p[out_p[:, 3] < 0, :3]
    a, b, c = (out_v[tris[:, i]] for i in range(3))
    for x, y, z in ((a, b, c), (b, c, a), (c, a, b)):
        u, w = y - x, z - x
        cos = (u * w).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(w, axis=1)
        assert np.degrees(np.arccos(cos)).max() < retopo_module.FLAT_TRIANGLE_DEGREES
    unchanged = retopo_module._flat_triangles_collapsed(v, p[1:3], None, {"max_hole": 0})
    assert unchanged[2] == 0


@pytest.mark.parametrize("on", ["crease", "border"])
def test_a_vertex_with_one_quad_on_a_straight_crease_or_border_merges_along_it(on):
    # A(0,0) - M(1,0) - C(2,0) along a crease, two quads below it and one above: M's corner in the
    # one above is 180 degrees, and a split would keep it. M merges into A along the crease; the
    # quads on the merged edge become triangles, which split well. The quad above alone has
    # A - M - C on its border, straight: M merges as well.
    from backend.mesh.polygons import quad_corner_angles
    from backend.mesh.retopo.relax import CreaseLines

    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [1, 1, 0], [0, -1, 0], [1, -1, 0], [2, -1, 0]], dtype=float)
    a, m, c, b, d0, d1, d2 = range(7)
    p = np.array([[d0, d1, m, a], [d1, d2, c, m], [a, m, c, b]])
    lines = CreaseLines(np.array([[-1.0, 0, 0]]), np.array([[3.0, 0, 0]]), 0.05) if on == "crease" else None
    if on == "border":
        p = p[2:]
    out_v, out_p, merged = retopo_module._flat_crease_corners_collapsed(v, p, lines, {"max_hole": 0})
    assert merged == 1
    assert not any((out_v == v[m]).all(axis=1))                   # M went ...
    assert any((out_v == v[a]).all(axis=1))                       # ... into A, which stayed
    rows, angles = quad_corner_angles(out_v, out_p)
    assert len(rows) == 0 or angles.max() < 155.0
    if on == "crease":
        assert sorted((out_p >= 0).sum(axis=1).tolist()) == [3, 3, 4]
    # Without the crease (or the border) nothing is merged.
    untouched = retopo_module._flat_crease_corners_collapsed(v, np.array([[d0, d1, m, a], [d1, d2, c, m], [a, m, c, b]]),
                                                             None, {"max_hole": 0})
    assert untouched[2] == 0


def test_a_quad_folded_flat_along_a_crease_goes_and_its_neighbours_meet():
    # A 4 x 4 grid whose middle quad lies on a line, as the crease snap leaves a quad with all four
    # corners on one straight crease: a -> c across it, b and d in between (corners 0, 180, 0,
    # 180). No move opens it; its shorter diagonal (b - d) collapses to b and d's midpoint and
    # the quads across its sides meet: 15 quads, all of them, manifold.
    from backend.mesh import polygons as poly

    xs = np.arange(5, dtype=float)
    v = np.array([(x, y, 0.0) for y in xs for x in xs])
    p = np.array([(j * 5 + i, j * 5 + i + 1, (j + 1) * 5 + i + 1, (j + 1) * 5 + i) for j in range(4) for i in range(4)])
    a, b, c, d = p[5]                                          # the quad over [1, 2] x [1, 2]
    v[b], v[d] = v[a] + 0.3 * (v[c] - v[a]), v[a] + 0.6 * (v[c] - v[a])
    assert np.allclose(poly.quad_corner_angles(v, p)[1][5], [0.0, 180.0, 0.0, 180.0])
    collapse = retopo_module._flat_quad_collapsed
    out_v, out_p, merged = collapse(v, p, None, {"max_hole": 0}, near=v[a], how="diagonal")
    assert merged == 1 and len(out_p) == 15 and (out_p[:, 3] >= 0).all()
    assert poly.topology(out_p).manifold
    assert any(np.allclose(x, 0.5 * (v[b] + v[d])) for x in out_v)
    # An edge at its flat corner (b's, the first of two at 180 degrees) instead: b goes onto c,
    # which stays; the quad and the one across b - c become triangles.
    out_v, out_p, merged = collapse(v, p, None, {"max_hole": 0}, near=v[a], how="after")
    assert merged == 1 and len(out_p) == 16 and sorted((out_p >= 0).sum(axis=1).tolist())[:3] == [3, 3, 4]
    assert not any(np.allclose(x, v[b]) for x in out_v) and any(np.allclose(x, v[c]) for x in out_v)
    flat_free = np.array([(x, y, 0.0) for y in xs for x in xs])
    assert collapse(flat_free, p, None, {"max_hole": 0}, near=v[a], how="diagonal")[2] == 0
    with pytest.raises(ValueError, match="how"):
        collapse(v, p, None, {"max_hole": 0}, near=v[a], how="sideways")


def test_a_fold_measures_flatter_than_the_quads_it_passes_on_to():
    # The clean-up follows a fold from quad to quad while each collapse leaves as many flat quads
    # but less flat ones (the teapot at 2,000: a quad with corners of 266 and 321 degrees, then
    # one of 169): the measure is the flat quads' count, then their corners' excess over 160.
    from backend.mesh import polygons as poly

    xs = np.arange(4, dtype=float)
    grid = np.array([(x, y, 0.0) for y in xs for x in xs])
    p = np.array([(j * 4 + i, j * 4 + i + 1, (j + 1) * 4 + i + 1, (j + 1) * 4 + i) for j in range(3) for i in range(3)])
    flatness = retopo_module._flatness
    assert flatness(grid, p) == (0, 0.0)
    measures = []
    for inner in (2.6, 1.8, 1.5):                  # vertex (1, 1) pushed across its quad, less and less
        v = grid.copy()
        v[5] = (inner, inner, 0.0)
        largest = poly.quad_corner_angles(v, p)[1].max(axis=1)
        measures.append(flatness(v, p))
        assert measures[-1][0] == int((largest > 160.0).sum())
        assert np.isclose(measures[-1][1], (largest[largest > 160.0] - 160.0).sum())
    assert measures[0][0] == measures[1][0] == 3 and measures[2][0] == 1
    assert measures[0] > measures[1] > measures[2]     # as many, less flat; then fewer


def test_a_scrap_beside_a_result_of_one_part_goes():
    # Instant Meshes left a piece of eight triangles beside beast's quad-dominant remesh at
    # 2,000 faces: a second component the input does not have. On a quad cube (one part) with
    # a detached quad lying on one face (0.2% of the area), the scrap goes and nothing is
    # remeshed.
    from backend.mesh import polygons as poly
    from backend.mesh.metrics import connected_components

    v, p = meshes.quad_cube(levels=3)
    t, _ = poly.to_mesh(v, p)
    ref = retopo_module._Faces(v, t)
    surface = retopo_module._Surface(ref, spacing=0.05)
    parts = retopo_module._Parts(ref)
    scrap = np.array([[0.1, 0.1, 0.5], [0.2, 0.1, 0.5], [0.2, 0.2, 0.5], [0.1, 0.2, 0.5]])   # on the top face
    with_scrap_v = np.vstack([v, scrap])
    with_scrap_p = np.vstack([p, [[len(v), len(v) + 1, len(v) + 2, len(v) + 3]]])

    def remesh_part(*args):
        raise AssertionError("nothing is remeshed")

    out_v, out_p, restored, alone = parts.restore_thin(with_scrap_v, with_scrap_p, surface, edge=0.125, target_faces=len(p),
                                                       budget=len(p), remesh_part=remesh_part)
    assert (restored, alone) == (0, 0)
    assert len(out_p) == len(p) and connected_components(poly.to_mesh(out_v, out_p)[0])[0] == 1
    np.testing.assert_array_equal(out_v, v)
    # A piece of 2% of the area (a hand off at the wrist) stays.
    piece_v = np.vstack([v, 3.5 * scrap * [1, 1, 0] + [0, 0, 0.5]])
    kept_v, kept_p, _, _ = parts.restore_thin(piece_v, with_scrap_p, surface, edge=0.125, target_faces=len(p),
                                              budget=len(p), remesh_part=remesh_part)
    assert len(kept_p) == len(p) + 1
    # Without the scrap: the layout as it came.
    same_v, same_p, _, _ = parts.restore_thin(v, p, surface, edge=0.125, target_faces=len(p), budget=len(p),
                                              remesh_part=remesh_part)
    assert same_v is v and same_p is p


def test_a_thin_part_remeshed_alone_asks_for_no_more_than_keeps_the_result_within_its_count():
    # The truck at 5,000 quads: its layout 4,880 polygons without three rods, 5,523 with them at
    # four quads round, and Instant Meshes ran a second time for 0.5% over the promise. Here a
    # 384-quad cube and a rod the layout lost, which asks for 100 faces alone.
    import trimesh

    from backend.mesh import polygons as poly

    cube_v, cube_p = meshes.quad_cube(levels=3)
    rod = trimesh.creation.box(extents=(0.03, 0.03, 0.8))
    rod.apply_translation((2.0, 0.0, 0.0))
    cube_t, _ = poly.to_mesh(cube_v, cube_p)
    ref = retopo_module._Faces(np.vstack([cube_v, rod.vertices]), np.vstack([cube_t, rod.faces + len(cube_v)]))
    surface = retopo_module._Surface(ref, spacing=0.05)
    parts = retopo_module._Parts(ref)
    asked = []

    def remesh_part(vertices, faces, target, part_edge):
        asked.append(target)
        return vertices, poly.pad(faces)               # the rod's own triangles stand in for its remesh

    def faces_asked(budget: int) -> int:
        asked.clear()
        _, _, restored, _ = parts.restore_thin(cube_v, cube_p, surface, edge=0.125, target_faces=len(cube_p),
                                               budget=budget, remesh_part=remesh_part)
        assert restored == 1 and len(asked) == 1
        return asked[0]

    free = faces_asked(4000)                           # the rest far from the budget: all it asks
    tight = faces_asked(430)
    assert tight < free and len(cube_p) + tight <= (1 + retopo_module.THIN_FIT) * 430 + 1
    # Fitting 384 would leave the rod under THIN_MIN_SCALE of what it asks: it gets it all (and
    # the caller runs Instant Meshes again with a smaller aim).
    assert faces_asked(384) == free


def test_split_quads_keep_a_curved_crease():
    # A cylinder's rims are curved creases: the midpoint of a coarse edge along a rim (a chord) goes
    # back onto the rim, not to the surface point nearest it (which lies on the cap or the side,
    # 0.016 off the rim here).
    import trimesh

    c = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=96)
    result = retopo(np.asarray(c.vertices), np.asarray(c.faces), target_faces=2000, mode="quads")
    assert result.remesher_targets[0] < 600
    off_plane = np.abs(np.abs(result.vertices[:, 2]) - 0.5)
    off_circle = np.abs(np.linalg.norm(result.vertices[:, :2], axis=1) - 0.5)
    near = (off_plane < 0.02) & (off_circle < 0.02)
    assert near.sum() >= 100
    assert np.maximum(off_plane, off_circle)[near].max() < 1e-3       # the 96-gon's own sag is 2.7e-4


def _box_with_a_lip(width: float = 0.015, height: float = 0.02):
    """A 1.2-long box whose two side walls end below its floor in a lip ``width`` thick (CesiumMilkTruck's body)."""
    zy = np.array([(-0.5, 0.5), (-0.5, -0.5), (-0.5 + width, -0.5), (-0.5 + width, -0.5 + height),
                   (0.5 - width, -0.5 + height), (0.5 - width, -0.5), (0.5, -0.5), (0.5, 0.5)])
    k = len(zy)
    v = np.vstack([np.c_[np.full(k, -0.6), zy[:, 1], zy[:, 0]], np.c_[np.full(k, 0.6), zy[:, 1], zy[:, 0]]])
    cap = [(1, 2, 3), (1, 3, 0), (0, 3, 4), (0, 4, 7), (4, 5, 6), (4, 6, 7)]
    f = [list(t) for t in cap] + [[k + a, k + c, k + b] for a, b, c in cap]
    for i in range(k):
        j = (i + 1) % k
        f += [[i, k + j, j], [i, k + i, k + j]]
    f = np.array(f)
    if signed_volume(v, f) < 0:
        f = f[:, ::-1]
    return v, f


def test_a_lip_narrower_than_a_quad_keeps_the_outline():
    # The lip is a fifth of a quad wide at 800 faces: no row of vertices fits on it. Its
    # outer bottom edges are the box's outline; the remesh should put vertices on its convex
    # creases, not on the concave one where the floor meets the lip (which pulls the outline
    # in by the lip's width). Instant Meshes' lattice falls differently at each budget, so
    # the mean over ten results is what is checked.
    v, f = _box_with_a_lip()
    outline = np.array([(x, -0.5, s * 0.5) for x in np.linspace(-0.45, 0.45, 40) for s in (-1, 1)])
    gaps = []
    for target in (400, 600, 800, 1000, 1200):
        for mode in ("quads", "quad_dominant"):
            result = retopo(v, f, target_faces=target, mode=mode)
            assert result.source == "input" and _report(result)["manifold"]
            tf, _ = result.mesh_arrays()
            t = result.vertices[tf]
            gap = point_triangle_distance(outline[:, None, :], t[None, :, 0], t[None, :, 1], t[None, :, 2])
            gaps.append(float(np.median(gap.min(axis=1))))
    # Measured: mean 0.0069 (0 to 0.016); with vertices left on the concave crease, 0.0158.
    assert np.mean(gaps) < 0.011, gaps


@pytest.mark.parametrize("target", [400, 2000])
def test_a_part_smaller_than_a_quad_comes_back(target):
    # A sphere with a small one beside it (0.16% of the area, 0.4 quads across at 400
    # faces): Instant Meshes returns nothing for the small one, which is remeshed alone (at
    # 2,000 with the quarter-budget layout, and split with it).
    v, f = meshes.uv_sphere(24, 48)
    sv, sf = meshes.uv_sphere(8, 16, radius=0.04, center=(1.3, 0.0, 0.0))
    result = retopo(np.vstack([v, sv]), np.vstack([f, sf + len(v)]), target_faces=target, mode="quads")
    report = _report(result)
    assert report["manifold"] and report["closed"] and _within(report["faces"], target)
    small = np.linalg.norm(result.vertices - [1.3, 0.0, 0.0], axis=1) < 0.06
    assert small.sum() >= 8
    tf, _ = result.mesh_arrays()
    pieces = tf[small[tf].all(axis=1)]
    assert signed_volume(result.vertices, pieces) > 0.5 * (4 / 3) * np.pi * 0.04 ** 3   # a closed, outward blob
    # A speck below MIN_PART_AREA still vanishes.
    tv, tf2 = meshes.uv_sphere(8, 16, radius=0.005, center=(1.3, 0.0, 0.0))
    result = retopo(np.vstack([v, tv]), np.vstack([f, tf2 + len(v)]), target_faces=400, mode="quads")
    assert not (np.linalg.norm(result.vertices - [1.3, 0.0, 0.0], axis=1) < 0.06).any()


def test_unique_rows_matches_numpy_packed_or_not():
    rng = np.random.default_rng(0)
    for high in (50, 2 ** 40):                                          # packs into one key; does not
        rows = rng.integers(-high, high, size=(2000, 3))
        rows[1000:] = rows[rng.integers(0, 1000, 1000)]
        first, inverse = retopo_module._unique_rows(rows)
        _, want_first, want_inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, want_first)
        np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))


def test_broken_mesh_goes_through_the_watertight_engine():
    v, f = meshes.sphere_with_holes(holes=4, radius=0.01)
    v, f = meshes.flipped_faces(v, f, 0.3)
    v, f = meshes.with_duplicate_faces(v, f, 0.1)
    result = retopo(v, f, target_faces=400)
    assert result.source == "watertight" and 16 <= result.resolution <= 320
    report = _report(result)
    assert report["manifold"] and report["closed"] and _within(report["faces"], 400), report
    tris, _ = result.mesh_arrays()
    assert genus(tris) == 0 and signed_volume(result.vertices, tris) > 0
    assert canonical_chamfer_l1(*meshes.uv_sphere(16, 32), result.vertices, tris, samples=20_000) < 0.02


def test_a_mesh_with_a_few_bad_edges_is_mended_not_voxelized():
    # A fin and a face wound backwards in a sphere: mended in place, the sphere's own
    # surface is remeshed (no watertight grid), closed and outward.
    v, f = meshes.uv_sphere(16, 32)
    v = np.vstack([v, 1.02 * (v[f[100, 0]] + v[f[100, 1]]) / 2])
    f = np.vstack([f, [[f[100, 0], f[100, 1], len(v) - 1]]])
    f[7] = f[7, ::-1]
    result = retopo(v, f, target_faces=400, mode="quads")
    assert result.source == "input" and result.resolution is None
    assert result.mended == {"nonmanifold_faces": 1, "flipped": 1}
    report = _report(result)
    assert report["manifold"] and report["closed"] and _within(report["faces"], 400), report
    tris, _ = result.mesh_arrays()
    assert signed_volume(result.vertices, tris) > 0
    assert canonical_chamfer_l1(*meshes.uv_sphere(16, 32), result.vertices, tris, samples=20_000) < 0.02
    # The same defects at 50 faces: more vertices than the watertight reference would have
    # (8 per target face), so the voxel remesh is the cheaper reference.
    result = retopo(v, f, target_faces=50, mode="quads")
    assert result.source == "watertight" and _report(result)["closed"]


def test_a_very_broken_torus_still_comes_out_clean():
    v, f = meshes.broken_mesh()
    result = retopo(v, f, target_faces=500, mode="quads")
    report = _report(result)
    assert report["manifold"] and report["closed"] and report["quad_ratio"] == 1.0
    assert _within(report["faces"], 500)


def test_open_surface_is_remeshed_as_it_is_and_stays_open():
    v, f = meshes.open_box()
    result = retopo(v, f, target_faces=300, sharp_angle=None)
    assert result.source == "input"
    report = _report(result)
    assert report["manifold"] and not report["closed"] and _within(report["faces"], 300)
    # The open top is not capped: no vertex inside its square, away from its border.
    top = result.vertices[np.abs(result.vertices[:, 2] - 0.5) < 1e-3]
    assert not ((np.abs(top[:, 0]) < 0.4) & (np.abs(top[:, 1]) < 0.4)).any()


def test_tears_of_the_remesher_are_closed_but_borders_stay(monkeypatch):
    v, f = meshes.open_box()
    ring = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    borders = retopo_module._Borders(v, f, reach=0.05)
    along_top = np.stack([0.5 * np.cos(ring) / np.maximum(np.abs(np.cos(ring)), np.abs(np.sin(ring))),
                          0.5 * np.sin(ring) / np.maximum(np.abs(np.cos(ring)), np.abs(np.sin(ring))),
                          np.full(24, 0.49)], axis=1)                     # the open top's square, 1% below it
    across_side = np.stack([np.full(24, 0.5), 0.2 * np.cos(ring), 0.2 * np.sin(ring)], axis=1)
    assert borders.follows(along_top) and not borders.follows(across_side)
    # A remesher that tears a strip out of one side: the repair closes the tear, not the top.
    real = retopo_module.instant_meshes

    def tearing(*args, **kwargs):
        rv, polys = real(*args, **kwargs)
        centre = np.array([rv[p].mean(axis=0) for p in polys])
        keep = ~((centre[:, 0] > 0.49) & (np.abs(centre[:, 2]) < 0.1))
        return rv, [p for p, k in zip(polys, keep) if k]

    monkeypatch.setattr(retopo_module, "instant_meshes", tearing)
    result = retopo(v, f, target_faces=600, sharp_angle=None)
    assert result.repair.get("holes", 0) >= 1
    report = _report(result)
    assert report["manifold"] and not report["closed"]
    top = result.vertices[np.abs(result.vertices[:, 2] - 0.5) < 1e-3]
    assert not ((np.abs(top[:, 0]) < 0.4) & (np.abs(top[:, 1]) < 0.4)).any()
    side = result.vertices[result.vertices[:, 0] > 0.49]
    assert ((np.abs(side[:, 1]) < 0.3) & (np.abs(side[:, 2]) < 0.05)).any()   # the tear's middle is covered


def test_triangles_mode_decimates_to_the_budget():
    v, f = meshes.torus(1.0, 0.4, 64, 32)
    result = retopo(v, f, target_faces=500, mode="triangles")
    report = _report(result)
    assert report["quads"] == 0 and report["manifold"] and report["closed"]
    assert _within(report["faces"], 500)
    assert genus(result.mesh_arrays()[0]) == 1


def test_given_resolution_forces_the_watertight_step():
    v, f = meshes.uv_sphere(16, 32)
    result = retopo(v, f, target_faces=300, resolution=40)
    assert result.source == "watertight" and result.resolution == 40
    assert _report(result)["closed"]


@pytest.mark.parametrize("kwargs, words", [
    ({"target_faces": 10}, "target_faces must be in"),
    ({"target_faces": 2.5}, "target_faces must be an integer"),
    ({"mode": "hexes"}, "mode must be one of"),
    ({"sharp_angle": 200}, "sharp_angle must be None or"),
    ({"resolution": 8}, "resolution must be None or an integer in"),
])
def test_bad_arguments_name_themselves(kwargs, words):
    v, f = meshes.cube()
    with pytest.raises(ValueError, match=words):
        retopo(v, f, **kwargs)


def test_bad_arrays_are_refused_with_a_reason():
    v, f = meshes.cube()
    bad = v.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retopo(bad, f)
    with pytest.raises(ValueError, match="indices from 0 to 8"):
        retopo(v[:8], np.vstack([f, [[0, 1, 8]]]))
    with pytest.raises(ValueError, match="degenerate"):
        retopo(v, np.array([[0, 0, 1], [2, 2, 2]]))


def test_cancel_from_progress_propagates():
    v, f = meshes.uv_sphere(16, 32)
    stages = []

    def progress(fraction: float, stage: str) -> None:
        stages.append(stage)
        if stage == "remeshing":
            raise Cancelled()

    with pytest.raises(Cancelled):
        retopo(v, f, target_faces=300, progress=progress)
    assert stages[0] == "welding"


def test_face_budget_is_aimed_again_when_missed(monkeypatch):
    # Make the first run's aim far too low: the second run must correct it.
    monkeypatch.setitem(retopo_module.EXPECTED_RATIO, "quad_dominant", 2.0)
    v, f = meshes.uv_sphere(16, 32)
    result = retopo(v, f, target_faces=600)
    assert len(result.remesher_targets) >= 2 and result.remesher_targets[1] > result.remesher_targets[0]
    assert _within(len(result.polygons), 600)


def test_a_far_miss_corrects_the_aim_at_most_twofold(monkeypatch):
    # A run that comes back with a twentieth of the faces (Instant Meshes losing most of a thin
    # slab does) must not send the next one to twenty times the target.
    monkeypatch.setitem(retopo_module.EXPECTED_RATIO, "quad_dominant", 20.0)
    v, f = meshes.uv_sphere(16, 32)
    result = retopo(v, f, target_faces=600)
    aims = result.remesher_targets
    assert len(aims) >= 2 and all(b <= 2 * a for a, b in zip(aims, aims[1:])), aims


def test_a_pairing_that_leaves_a_triangle_once_costs_one_run_not_the_face_count(monkeypatch):
    # A full-budget layout whose pairing leaves a triangle is split into quads, four to one: the
    # next run splits a quarter budget on purpose. Before, it aimed at half (the aim's twofold
    # limit), its pairing succeeded and gave half the target, and a third run was needed
    # (suzanne at 2,000 with creases from 40 degrees ended at 486 quads).
    from backend.mesh.retopo import quads

    real = quads.pair_triangles
    calls = []

    def leaving_one_the_first_time(vertices, polygons):
        v, p, left = real(vertices, polygons)
        calls.append(len(p))
        return v, p, max(left, 1) if len(calls) == 1 else left

    monkeypatch.setattr(quads, "pair_triangles", leaving_one_the_first_time)
    v, f = meshes.uv_sphere(16, 32)
    result = retopo(v, f, target_faces=600, mode="quads")
    aims = result.remesher_targets
    assert "split_unpaired" not in result.repair             # the run kept is the quarter-budget split
    assert len(aims) == 2 and 0.2 < aims[1] / aims[0] < 0.3, aims
    assert _within(len(result.polygons), 600)
    assert (result.polygons[:, 3] >= 0).all()


@pytest.mark.parametrize("mode", ["quad_dominant", "quads"])
def test_parts_remeshed_alone_do_not_throw_the_face_budget_off(mode):
    # Twelve small spheres around a big one: Instant Meshes loses them at 600 faces and each is
    # remeshed alone. At 24 faces each they took half the budget whatever the aim, and scaling
    # the whole count by the miss took three runs; now a crowd of small parts shares at most a
    # quarter of the budget, and the aim scales only the rest of the count.
    v, f = meshes.uv_sphere(24, 48)
    parts_v, parts_f = [v], [f]
    for k in range(12):
        angle = 2.0 * np.pi * k / 12
        sv, sf = meshes.uv_sphere(8, 16, radius=0.08, center=(1.6 * np.cos(angle), 1.6 * np.sin(angle), 0.0))
        parts_f.append(sf + sum(map(len, parts_v)))
        parts_v.append(sv)
    v, f = np.vstack(parts_v), np.vstack(parts_f)
    result = retopo(v, f, target_faces=600, mode=mode)
    tris, _ = result.mesh_arrays()
    assert _within(len(result.polygons), 600), (len(result.polygons), result.remesher_targets)
    assert len(result.remesher_targets) <= 2, result.remesher_targets
    assert connected_components(tris)[0] == 13                                  # every part kept


def test_instant_meshes_failing_on_the_input_sends_it_to_the_watertight_remesh(monkeypatch):
    # Instant Meshes runs out of memory on some inputs as they are (a plate 0.001 thick): the
    # watertight remesh of the input is remeshed instead; a failure after a run keeps that run.
    v, f = meshes.uv_sphere(16, 32)
    real = retopo_module.instant_meshes
    calls = []

    def failing_on_the_input(vertices, faces, **kwargs):
        # the first call gets the input (or Instant Meshes' isotropic copy of it)
        calls.append(len(faces))
        if len(calls) in (1, 3):
            raise RuntimeError(f"Instant Meshes failed on a {len(faces)}-face mesh: std::bad_alloc")
        return real(vertices, faces, **kwargs)

    monkeypatch.setattr(retopo_module, "instant_meshes", failing_on_the_input)
    monkeypatch.setitem(retopo_module.EXPECTED_RATIO, "quad_dominant", 1.5)     # so that a second run is due
    result = retopo(v, f, target_faces=600)
    assert result.source == "watertight" and len(calls) == 3
    report = _report(result)
    assert report["faces"] > 0 and report["manifold"] and report["closed"]


def test_instant_meshes_result_read_from_its_ply_is_what_its_obj_gives(tmp_path):
    # Instant Meshes writes its quads to a binary PLY (faster to write and read than OBJ text);
    # the same run written as OBJ gives the same polygons and, rounded as the OBJ prints them,
    # exactly the same vertices (the clean-up's layouts depend on every digit).
    import pyinstantmeshes

    v, f = meshes.uv_sphere(16, 32)
    retopo_module._write_ply(tmp_path / "in.ply", v, f)
    for out in ("out.ply", "out.obj"):
        try:
            with retopo_module._stdout_to_log():
                pyinstantmeshes.remesh_file(str(tmp_path / "in.ply"), str(tmp_path / out), target_face_count=200,
                                            deterministic=True, extrinsic=True)
        except RuntimeError:                          # its own reader takes triangles only
            pass
    ply_v, ply_p = retopo_module._read_ply_polygons(tmp_path / "out.ply")
    obj_v, obj_p = _read_obj(tmp_path / "out.obj")
    assert ply_p == obj_p and any(len(p) == 4 for p in ply_p)
    assert np.array_equal(ply_v, obj_v)
    # A NaN vertex (Instant Meshes writes one now and then) takes its polygons with it.
    data = bytearray((tmp_path / "out.ply").read_bytes())
    end = data.index(b"end_header\n") + len(b"end_header\n")
    data[end:end + 4] = struct.pack("<f", float("nan"))
    (tmp_path / "nan.ply").write_bytes(bytes(data))
    nan_v, nan_p = retopo_module._read_ply_polygons(tmp_path / "nan.ply")
    assert np.isfinite(nan_v).all() and nan_p == [p for p in ply_p if 0 not in p] and len(nan_p) < len(ply_p)
    for bad in (b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n",
                b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty double x\nend_header\n",
                b"not a ply"):
        (tmp_path / "bad.ply").write_bytes(bad)
        with pytest.raises(RuntimeError, match="unexpected PLY"):
            retopo_module._read_ply_polygons(tmp_path / "bad.ply")


def _read_obj(path) -> tuple[np.ndarray, list[list[int]]]:
    verts, polys = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append(line.split()[1:4])
        elif line.startswith("f "):
            polys.append([int(t.split("/", 1)[0]) - 1 for t in line.split()[1:]])
    return np.asarray(verts, dtype=np.float64), polys


def test_instant_meshes_chatter_stays_out_of_stdout(capfd):
    v, f = meshes.uv_sphere(16, 32)
    retopo(v, f, target_faces=200)
    out, _ = capfd.readouterr()
    assert "Instant" not in out and "batch mode" not in out and out == ""


# -- pipeline -------------------------------------------------------------------------------


def test_pipeline_is_registered_with_a_strict_schema():
    pipeline = registry()["artist"]
    assert pipeline.inputs == ("mesh",)
    params = pipeline.parse_params({})
    assert (params.faces, params.mode, params.sharp_edges, params.sharp_angle, params.resolution) == \
        (2000, "quad_dominant", True, 30.0, None)
    for raw, words in (({"faces": 50}, "faces"), ({"mode": "ngons"}, "mode"), ({"sharp_angle": 0}, "sharp_angle"),
                       ({"target": 5}, "target"), ({"resolution": 4}, "resolution")):
        with pytest.raises(BadParams, match=words):
            pipeline.parse_params(raw)


def test_pipeline_result_carries_quads_into_the_glb():
    pipeline = get_pipeline("artist")
    v, f = meshes.uv_sphere(16, 32)
    seen = []
    result = pipeline.run({"mesh": Mesh(v, f)}, pipeline.parse_params({"faces": 400}),
                          lambda fraction, stage: seen.append(fraction))
    s = result.summary
    assert s["manifold"] and s["closed"] and _within(s["faces"], 400) and s["quads"] + s["triangles"] == s["faces"]
    assert 0.85 <= s["quad_ratio"] < 1 and 0 < s["valence4_share"] <= 1 and s["seconds"] > 0
    assert seen and all(0.0 <= x <= 1.0 for x in seen) and seen == sorted(seen)
    mesh = result.mesh
    assert mesh.face_sizes is not None and len(mesh.face_sizes) == s["faces"]
    assert int((mesh.face_sizes - 2).sum()) == len(mesh.faces)
    glb = mesh_to_bytes(mesh, "glb")
    length, _ = struct.unpack_from("<II", glb, 12)
    doc = json.loads(glb[20:20 + length])
    ext = doc["meshes"][0]["primitives"][0]["extensions"][POLYGONS_EXTENSION]
    assert doc["accessors"][ext["faceSizes"]]["count"] == s["faces"]


def test_pipeline_quads_mode_and_no_sharp():
    pipeline = get_pipeline("artist")
    v, f = meshes.box(*BOX)
    result = pipeline.run({"mesh": Mesh(v, f)},
                          pipeline.parse_params({"faces": 300, "mode": "quads", "sharp_edges": False}),
                          lambda *_: None)
    assert result.summary["quad_ratio"] == 1.0 and result.summary["triangles"] == 0
    assert set(result.mesh.face_sizes.tolist()) == {4}
    assert "chamfer_l1" not in result.summary                             # measured only on request


def test_pipeline_reports_chamfer_to_the_input_on_request(monkeypatch):
    import backend.pipelines.artist as artist_pipeline

    monkeypatch.setattr(artist_pipeline, "CHAMFER_SAMPLES", 50_000)       # the real 10^6 takes seconds
    pipeline = get_pipeline("artist")
    v, f = meshes.uv_sphere(24, 48)
    summary = pipeline.run({"mesh": Mesh(v, f)}, pipeline.parse_params({"faces": 300, "measure_chamfer": True}),
                           lambda *_: None).summary
    assert summary["chamfer_samples"] == 50_000
    expected = canonical_chamfer_l1(v, f, v, f, samples=50_000)           # the sampling floor at that density
    assert expected < summary["chamfer_l1"] < 3 * expected


# -- command line ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_writes_an_obj_with_quads(tmp_path):
    src = save_mesh(Mesh(*meshes.uv_sphere(16, 32)), tmp_path / "in.stl")
    out = tmp_path / "out.obj"
    run = _cli("artist", str(src), "-o", str(out), "--faces", "400", "--mode", "quads")
    assert run.returncode == 0, run.stderr
    face_lines = [line.split()[1:] for line in out.read_text().splitlines() if line.startswith("f ")]
    assert face_lines and all(len(corners) == 4 for corners in face_lines)
    assert _within(len(face_lines), 400)
    line = run.stdout.strip().splitlines()[-1]
    assert f"faces {len(face_lines)}" in line and "quad_ratio 1.0" in line and "manifold True" in line
    assert "batch mode" not in run.stdout
    back = load_mesh(out)                                       # readable, triangulated by the loader
    assert len(back.faces) == 2 * len(face_lines)


def test_cli_explains_bad_options(tmp_path):
    src = save_mesh(Mesh(*meshes.cube()), tmp_path / "in.ply")
    run = _cli("artist", str(src), "-o", str(tmp_path / "out.obj"), "--faces", "20")
    assert run.returncode == 2 and "faces" in run.stderr and "Traceback" not in run.stderr
    run = _cli("artist", str(src), "-o", str(tmp_path / "out.obj"), "--sharp-angle", "-5")
    assert run.returncode == 2 and "sharp_angle" in run.stderr
    assert not (tmp_path / "out.obj").exists()


def test_instant_meshes_crease_mode_failing_is_retried_without_it(monkeypatch):
    real = retopo_module.instant_meshes
    calls = []

    def flaky(vertices, faces, *, target_faces, crease_angle=None, **kwargs):
        calls.append(crease_angle)
        if crease_angle is not None:                  # as on CesiumMilkTruck's body: nothing comes back
            return np.zeros((0, 3)), []
        return real(vertices, faces, target_faces=target_faces, crease_angle=crease_angle, **kwargs)

    monkeypatch.setattr(retopo_module, "instant_meshes", flaky)
    v, f = meshes.box(*BOX)
    result = retopo(v, f, target_faces=400)
    assert calls[:2] == [30.0, None] and result.source == "input"
    report = _report(result)
    assert report["manifold"] and report["closed"] and _within(report["faces"], 400)
    assert result.creases_snapped > 0                 # the creases are still snapped afterwards
