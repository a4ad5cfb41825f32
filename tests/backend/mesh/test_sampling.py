"""Training samples: salient-edge points, surface points and exact signed distances."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.mesh import sampling
from backend.mesh.metrics import is_oriented, is_watertight
from backend.mesh.remesh.watertight import watertight
from backend.mesh.triangles import point_triangle_distance
from tests import meshes


def _cube_edges(half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The 12 edges of the cube ``[-half, half]^3`` as segment ends (12, 3) each."""
    corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8) if np.count_nonzero(corners[i] != corners[j]) == 1]
    return corners[[i for i, _ in pairs]], corners[[j for _, j in pairs]]


def _distance_to_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point (k, 3) to the nearest of the segments a -> b (e, 3)."""
    ab = b - a
    t = np.clip(np.einsum("kej,ej->ke", points[:, None] - a[None], ab) / np.einsum("ej,ej->e", ab, ab), 0.0, 1.0)
    return np.linalg.norm(points[:, None] - (a[None] + t[..., None] * ab[None]), axis=2).min(axis=1)


def _min_pairwise(points: np.ndarray) -> float:
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    return float(d[np.triu_indices(len(points), 1)].min())


def _brute_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unsigned distance by evaluating every (point, triangle) pair."""
    tri = vertices[faces]
    out = np.empty(len(points))
    for start in range(0, len(points), 50):
        p = points[start:start + 50, None]
        d = point_triangle_distance(p, tri[None, :, 0], tri[None, :, 1], tri[None, :, 2])
        out[start:start + 50] = d.min(axis=1)
    return out


def _icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit icosphere and its inradius: the mesh lies between that radius and 1."""
    ico = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces, dtype=np.int64)
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    inradius = float(np.einsum("ij,ij->i", normals, v[f[:, 0]]).min())
    return v, f, inradius


def _box_sdf(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    center, half = (lo + hi) / 2, (hi - lo) / 2
    q = np.abs(points - center) - half
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


# ---------------------------------------------------------------------------------------------
# Salient edges


def test_salient_edges_of_a_cube_are_its_twelve_edges_not_the_face_diagonals():
    v, f = meshes.cube()
    edges = sampling.salient_edges(v, f, angle_deg=30)
    a, b = _cube_edges()
    assert edges.shape == (12, 2) and (edges[:, 0] < edges[:, 1]).all()
    # Both ends of every salient edge are cube corners joined by a cube edge (length 1, axis-aligned).
    lengths = np.linalg.norm(v[edges[:, 1]] - v[edges[:, 0]], axis=1)
    assert np.allclose(lengths, 1.0)
    assert len(np.unique(np.sort(edges, axis=1), axis=0)) == 12
    # Above 90 degrees nothing on a cube is salient.
    assert len(sampling.salient_edges(v, f, angle_deg=95)) == 0


def test_boundary_and_nonmanifold_edges_are_salient():
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1.0]], dtype=np.float64)
    flat = np.array([[0, 1, 2], [0, 2, 3]])
    edges = {tuple(e) for e in sampling.salient_edges(square, flat).tolist()}
    assert edges == {(0, 1), (1, 2), (2, 3), (0, 3)}                  # the border; the flat diagonal is not
    fin = np.vstack([flat, [[0, 2, 4]]])                               # a third face on the diagonal
    edges = {tuple(e) for e in sampling.salient_edges(square, fin).tolist()}
    assert (0, 2) in edges and (0, 4) in edges and (2, 4) in edges


@pytest.mark.parametrize("n", [5, 8, 100, 1000])
def test_salient_samples_are_exactly_n_points_on_the_cube_edges(n):
    v, f = meshes.cube()
    samples = sampling.sample_salient(v, f, n, seed=3)
    assert samples.points.shape == (n, 3) and samples.on_edge.all() and samples.edges == 12
    a, b = _cube_edges()
    assert _distance_to_segments(samples.points, a, b).max() < 1e-9
    assert len(np.unique(samples.points, axis=0)) == n
    # FPS starts at a corner (an endpoint); the farthest point from it is the opposite corner.
    assert np.allclose(np.abs(samples.points[:2]), 0.5)
    assert np.isclose(np.linalg.norm(samples.points[1] - samples.points[0]), np.sqrt(3))
    if n >= 100:
        # Every edge gets points, in proportion to length (all equal here).
        nearest_edge = np.argmin([_distance_to_segments(samples.points, a[i:i + 1], b[i:i + 1]) for i in range(12)],
                                 axis=0)
        assert np.bincount(nearest_edge, minlength=12).min() >= n // 24


def test_salient_samples_are_reproducible_by_seed():
    v, f = meshes.cube()
    one = sampling.sample_salient(v, f, 50, seed=7).points
    assert np.array_equal(one, sampling.sample_salient(v, f, 50, seed=7).points)


def test_a_smooth_sphere_has_no_salient_edges_and_is_filled_with_surface_points():
    v, f, inradius = _icosphere(3)
    samples = sampling.sample_salient(v, f, 64, angle_deg=30)
    assert samples.edges == 0 and samples.points.shape == (64, 3) and not samples.on_edge.any()
    r = np.linalg.norm(samples.points, axis=1)
    assert (r >= inradius - 1e-12).all() and (r <= 1 + 1e-12).all()


def test_farthest_point_sampling_spreads_more_than_random_choice():
    points = np.random.default_rng(0).random((3000, 3))
    chosen = sampling.farthest_point_sampling(points, 100, start=17)
    assert chosen[0] == 17 and len(np.unique(chosen)) == 100
    fps = _min_pairwise(points[chosen])
    rng = np.random.default_rng(1)
    best_random = max(_min_pairwise(points[rng.choice(len(points), 100, replace=False)]) for _ in range(20))
    assert fps > 2 * best_random


def test_farthest_point_sampling_rejects_more_points_than_given():
    with pytest.raises(ValueError, match="n must be at most"):
        sampling.farthest_point_sampling(np.zeros((3, 3)), 4)


# ---------------------------------------------------------------------------------------------
# Surface


def test_surface_samples_lie_on_the_sphere_with_outward_unit_normals():
    v, f, inradius = _icosphere(3)
    points, normals, face = sampling.sample_surface(v, f, 5000, seed=1)
    assert points.shape == normals.shape == (5000, 3) and face.shape == (5000,)
    r = np.linalg.norm(points, axis=1)
    assert (r >= inradius - 1e-12).all() and (r <= 1 + 1e-12).all()
    # On their own face: zero distance to it.
    tri = v[f[face]]
    assert point_triangle_distance(points, tri[:, 0], tri[:, 1], tri[:, 2]).max() < 1e-12
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert (np.einsum("ij,ij->i", normals, points / r[:, None]) > 0.9).all()
    again, _, _ = sampling.sample_surface(v, f, 5000, seed=1)
    other, _, _ = sampling.sample_surface(v, f, 5000, seed=2)
    assert np.array_equal(points, again) and not np.array_equal(points, other)


# ---------------------------------------------------------------------------------------------
# Signed distance


def test_sdf_of_a_box_matches_the_analytic_box_sdf():
    lo, hi = np.array([-0.6, -0.3, -0.2]), np.array([0.5, 0.4, 0.3])
    v, f = meshes.box(lo, hi)
    samples = sampling.sample_sdf(v, f, 3000, 3000, sigmas=(0.002, 0.05), bounds="mesh", margin=0.3, seed=0)
    assert samples.points.dtype == np.float32 and samples.sdf.dtype == np.float32
    assert samples.points.shape == (6000, 3) and samples.sdf.shape == (6000,)
    assert np.array_equal(np.bincount(samples.group), [3000, 1500, 1500])
    expected = _box_sdf(samples.points.astype(np.float64), lo, hi)
    assert np.abs(samples.sdf - expected).max() < 1e-6
    assert (samples.sdf < 0).sum() > 1000 and (samples.sdf > 0).sum() > 1000
    # In float64 the distances are exact to rounding, including near edges and corners.
    rng = np.random.default_rng(2)
    corners_and_edges = v[rng.integers(0, 8, 2000)] + rng.normal(size=(2000, 3)) * 0.01
    points = np.concatenate([samples.points.astype(np.float64), corners_and_edges])
    assert np.abs(sampling.signed_distance(v, f, points) - _box_sdf(points, lo, hi)).max() < 1e-12


def test_sdf_of_an_icosphere_is_the_sphere_sdf_within_the_chord_error_and_exact_to_the_mesh():
    v, f, inradius = _icosphere(3)
    chord = 1.0 - inradius
    samples = sampling.sample_sdf(v, f, 2000, 2000, sigmas=(0.01, 0.1), seed=4)
    p = samples.points.astype(np.float64)
    analytic = np.linalg.norm(p, axis=1) - 1.0
    assert np.abs(samples.sdf - analytic).max() <= chord + 1e-6
    clear = np.abs(analytic) > chord + 1e-6
    assert clear.sum() > 3000 and np.array_equal(samples.sdf[clear] < 0, analytic[clear] < 0)
    # The tree search finds the nearest triangle: equal to trying them all.
    subset = p[::8]
    exact = sampling.signed_distance(v, f, subset)
    assert np.abs(np.abs(exact) - _brute_distance(v, f, subset)).max() < 1e-12


def test_sdf_signs_of_a_watertight_remesh_agree_with_the_winding_number():
    v, f = meshes.broken_mesh()
    result = watertight(v, f, resolution=32)
    wv, wf = result.vertices, result.faces
    rng = np.random.default_rng(5)
    surface, _, _ = sampling.sample_surface(wv, wf, 300, seed=6)
    points = np.concatenate([rng.uniform(wv.min(axis=0) - 0.2, wv.max(axis=0) + 0.2, (300, 3)),
                             surface + rng.normal(size=surface.shape) * result.voxel_size * 0.3])
    sdf = sampling.signed_distance(wv, wf, points)
    inside = np.abs(sampling.winding_number(wv, wf, points)) > 0.5
    assert 50 < inside.sum() < 550
    assert np.array_equal(sdf < 0, inside)
    assert np.abs(np.abs(sdf[::6]) - _brute_distance(wv, wf, points[::6])).max() < 1e-12


def _sharp_shapes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Closed meshes whose nearest features are often edges and vertices with wide normal cones."""
    # A flat tetrahedron: its long edge is a knife edge (the faces' normals turn by ~160 degrees).
    knife = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.15], [0.0, 1.0, -0.15]])
    knife_faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    # A cube whose top is dented to a pit: concave edges and a concave vertex.
    v, f = meshes.cube()
    top = np.flatnonzero((v[f][:, :, 2] > 0.49).all(axis=1))
    corners = [i for i in range(8) if v[i, 2] > 0]                    # (+-.5, +-.5, .5)
    ring = sorted(corners, key=lambda i: np.arctan2(v[i, 1], v[i, 0]))  # counter-clockwise seen from above
    pit = np.vstack([v, [[0.0, 0.0, -0.3]]])
    pit_faces = np.vstack([np.delete(f, top, axis=0), [[ring[i], ring[(i + 1) % 4], 8] for i in range(4)]])
    return {"knife": (knife, knife_faces), "pit": (pit, pit_faces)}


@pytest.mark.parametrize("shape", ["knife", "pit"])
def test_sdf_signs_at_sharp_and_concave_features_agree_with_the_winding_number(shape):
    v, f = _sharp_shapes()[shape]
    assert is_watertight(f) and is_oriented(f)
    rng = np.random.default_rng(8)
    e = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    along = v[e[:, 0]] + rng.random((len(e), 1)) * (v[e[:, 1]] - v[e[:, 0]])
    centers = np.concatenate([v, along, rng.uniform(v.min(axis=0), v.max(axis=0), (20, 3))])
    points = np.repeat(centers, 60, axis=0) + rng.normal(size=(len(centers) * 60, 3)) * 0.05
    sdf = sampling.signed_distance(v, f, points)
    inside = np.abs(sampling.winding_number(v, f, points)) > 0.5
    assert inside.sum() > 100 and (~inside).sum() > 100
    assert np.array_equal(sdf < 0, inside)
    assert np.abs(np.abs(sdf) - _brute_distance(v, f, points)).max() < 1e-12


def test_two_cubes_touching_at_one_vertex_are_signed_by_the_winding_number_there():
    va, fa = meshes.box((0, 0, 0), (1, 1, 1))
    vb, fb = meshes.box((-1, -1, -1), (0, 0, 0))
    # One shared vertex (the origin): every edge still has two faces, but the vertex has two fans.
    v = np.vstack([va, np.delete(vb, 7, axis=0)])
    f = np.vstack([fa, np.where(fb == 7, -8, fb) + 8])                 # b's corner 7 is a's corner 0
    assert np.array_equal(v[0], [0, 0, 0]) and is_watertight(f) and is_oriented(f)
    assert np.flatnonzero(sampling._pinched_vertices(f, len(v))).tolist() == [0]
    points = np.random.default_rng(9).normal(size=(3000, 3)) * 0.05
    sdf = sampling.signed_distance(v, f, points)
    inside = np.abs(sampling.winding_number(v, f, points)) > 0.5
    assert inside.sum() > 200 and np.array_equal(sdf < 0, inside)
    assert np.abs(np.abs(sdf) - _brute_distance(v, f, points)).max() < 1e-12


def test_a_cavity_wound_inward_counts_as_outside():
    v, f = meshes.nested_spheres()                                     # radius 1 around a hollow of radius 0.5
    points = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.75, 0.0, 0.0], [0.0, -0.7, 0.2], [1.5, 0.0, 0.0]])
    sdf = sampling.signed_distance(v, f, points)
    assert (np.sign(sdf) == [1, 1, -1, -1, 1]).all()


def test_signed_distance_refuses_open_or_inconsistent_meshes():
    with pytest.raises(ValueError, match="closed"):
        sampling.signed_distance(*meshes.open_box(), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="oriented"):
        sampling.signed_distance(*meshes.flipped_faces(*meshes.uv_sphere(), fraction=0.3), np.zeros((1, 3)))


def test_sample_sdf_rejects_bad_arguments():
    v, f = meshes.cube()
    with pytest.raises(ValueError, match="n_near"):
        sampling.sample_sdf(v, f, 10, -1)
    with pytest.raises(ValueError, match="sigmas"):
        sampling.sample_sdf(v, f, 10, 10, sigmas=(0.01, 0.0))
    with pytest.raises(ValueError, match="bounds"):
        sampling.sample_sdf(v, f, 10, 10, bounds="sphere")


def test_surface_area_is_the_sum_of_triangle_areas_and_zero_when_all_are_degenerate():
    from backend.mesh.metrics import surface_area

    v, f = meshes.cube()
    assert surface_area(v * 2.0, f) == pytest.approx(6 * np.ptp(v * 2.0, axis=0)[0] ** 2)
    collinear = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    assert surface_area(collinear, np.array([[0, 1, 2], [1, 2, 3], [0, 0, 3]])) == 0.0


# ---------------------------------------------------------------------------------------------
# Unsigned distance and the surface Chamfer


@pytest.mark.parametrize("shape", ["open_box", "broken", "flipped"])
def test_unsigned_distance_is_exact_on_open_broken_and_unoriented_meshes(shape):
    v, f = {"open_box": meshes.open_box, "broken": meshes.broken_mesh,
            "flipped": lambda: meshes.flipped_faces(*meshes.uv_sphere(), fraction=0.3)}[shape]()
    rng = np.random.default_rng(3)
    lo, hi = v.min(axis=0), v.max(axis=0)
    points = np.vstack([rng.uniform(lo - 0.5, hi + 0.5, (300, 3)),
                        sampling.sample_surface(v, f, 200, seed=1)[0] + rng.normal(0, 1e-3, (200, 3))])
    d = sampling.unsigned_distance(v, f, points)
    assert (d >= 0).all()
    assert np.abs(d - _brute_distance(v, f, points)).max() < 1e-12


def test_unsigned_distance_rejects_bad_points():
    v, f = meshes.open_box()
    with pytest.raises(ValueError, match="points"):
        sampling.unsigned_distance(v, f, np.array([[0.0, np.nan, 0.0]]))


def test_the_surface_chamfer_has_no_sampling_floor():
    """Identical meshes: the sampled Chamfer measures its own sample spacing, the surface Chamfer
    0; a sphere grown by 1e-3 (far below that spacing): the surface Chamfer finds the 1e-3."""
    from backend.mesh.metrics import chamfer_l1

    surface_chamfer_l1 = sampling.surface_chamfer_l1

    v, f, _ = _icosphere(4)
    assert chamfer_l1(v, f, v, f, samples=5000) > 5e-3
    assert surface_chamfer_l1(v, f, v, f, samples=5000) < 1e-12
    grown = surface_chamfer_l1(v, f, v * 1.001, f, samples=5000)
    assert grown == pytest.approx(1e-3, rel=0.02)
