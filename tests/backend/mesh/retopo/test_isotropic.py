"""The isotropic remesh of Instant Meshes' input (``native.isotropic_remesh``, compiled only)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import native
from backend.mesh.metrics import euler_characteristic, is_oriented, is_watertight
from backend.mesh.nearest import SurfaceIndex
from backend.mesh.retopo import artist
from tests import meshes

needs_native = pytest.mark.skipif(not native.available(), reason=native.why_unavailable() or "native off")


def _edges(faces: np.ndarray) -> np.ndarray:
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(e, axis=0)


def _lengths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    e = _edges(faces)
    return np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)


def _border_edges(faces: np.ndarray) -> np.ndarray:
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, count = np.unique(e, axis=0, return_counts=True)
    return unique[count == 1]


def _distance_to_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each point's distance to the nearest of the segments a-b."""
    ab = b - a
    t = np.clip(np.einsum("pkj,kj->pk", points[:, None] - a[None], ab) / np.einsum("kj,kj->k", ab, ab), 0.0, 1.0)
    near = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - near, axis=2).min(axis=1)


@needs_native
def test_a_coarse_sphere_is_remeshed_to_even_edges_on_its_surface():
    v, f = meshes.uv_sphere(rings=6, segments=8)
    length = 0.1
    out = native.isotropic_remesh(v, f, length=length, crease_angle=None, iterations=4, max_length=0.14)
    assert out is not None
    rv, rf = out
    lengths = _lengths(rv, rf)
    assert lengths.max() <= 0.14
    assert 0.8 * length < np.median(lengths) < 4 / 3 * length
    # Closed, oriented, still a sphere; every vertex on the input polyhedron.
    assert is_watertight(rf) and is_oriented(rf) and euler_characteristic(rf) == 2
    assert SurfaceIndex(v, f).closest(rv).distance.max() < 1e-9
    # Near-regular: most vertices of valence 6, about as many as an even mesh at that length has.
    valence = np.bincount(_edges(rf).ravel(), minlength=len(rv))
    assert np.mean(valence == 6) > 0.6
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    assert 0.7 < len(rv) / (area / (np.sqrt(3) / 2 * length ** 2)) < 1.4


@needs_native
def test_creases_and_corners_stay_rows_of_edges():
    v, f = meshes.cube()
    out = native.isotropic_remesh(v, f, length=0.1, crease_angle=30.0, iterations=4, max_length=0.14)
    rv, rf = out
    # The eight corners are vertices, and every cube edge is covered by remeshed edges.
    corner_gap = np.linalg.norm(v[:, None] - rv[None], axis=2).min(axis=1)
    assert corner_gap.max() < 1e-12
    e = _edges(rf)
    t = np.linspace(0.0, 1.0, 41)[:, None]
    cube_edges = [(i, j) for i in range(8) for j in range(i + 1, 8) if np.sum(v[i] != v[j]) == 1]
    assert len(cube_edges) == 12
    along = np.vstack([v[i] + t * (v[j] - v[i]) for i, j in cube_edges])
    assert _distance_to_segments(along, rv[e[:, 0]], rv[e[:, 1]]).max() < 1e-9
    # ...and the faces stay flat: no vertex off the cube.
    assert np.abs(np.abs(rv).max(axis=1) - 0.5).max() < 1e-9
    # Without creases the corners may go (the cube's flat sides then fold into them).
    free = native.isotropic_remesh(v, f, length=0.1, crease_angle=None, iterations=4, max_length=0.14)
    assert free is not None and is_watertight(free[1])


@needs_native
def test_an_open_sheet_keeps_its_border_on_the_input_border():
    v, f = meshes.plane(n=3)
    rv, rf = native.isotropic_remesh(v, f, length=0.05, crease_angle=30.0, iterations=4, max_length=0.07)
    border = _border_edges(rf)
    assert len(border) > 4 * 0.8 / 0.07
    ends = rv[np.unique(border)]
    # Every border vertex on the square's outline, and the outline covered.
    assert np.abs(np.abs(ends[:, :2]).max(axis=1) - 0.5).max() < 1e-12
    outline = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]])
    t = np.linspace(0.0, 1.0, 21)[:, None]
    along = np.vstack([outline[k] + t * (outline[(k + 1) % 4] - outline[k]) for k in range(4)])
    assert _distance_to_segments(along, rv[border[:, 0]], rv[border[:, 1]]).max() < 1e-12
    assert np.abs(rv[:, 2]).max() == 0.0 and is_oriented(rf)


@needs_native
def test_long_slivers_end_as_many_vertices_as_an_even_mesh_has():
    # A long thin box of 12 triangles: bisection keeps a sliver's angles, so the first splits
    # leave many times the vertices needed (26,000 here); the collapses and flips bring them
    # back (splits in any order but longest first took a 3,600-face truck past 3 million).
    v, f = meshes.box(lo=(0.0, 0.0, 0.0), hi=(10.0, 0.05, 0.05))
    rv, rf = native.isotropic_remesh(v, f, length=0.05, crease_angle=30.0, iterations=3, max_length=0.07)
    assert _lengths(rv, rf).max() <= 0.07
    assert is_watertight(rf) and is_oriented(rf)
    area = 4 * 10 * 0.05 + 2 * 0.05 ** 2
    even = area / (np.sqrt(3) / 2 * 0.05 ** 2)
    assert 0.8 * even < len(rv) < 1.5 * even


@needs_native
def test_meshes_a_half_edge_structure_cannot_hold_are_declined():
    # Three triangles on one edge; then two triangles that disagree about the edge's direction.
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=np.float64)
    fin = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    assert native.isotropic_remesh(v, fin, length=0.1, crease_angle=None, iterations=2, max_length=0.14) is None
    turned = np.array([[0, 1, 2], [0, 1, 3]])
    assert native.isotropic_remesh(v, turned, length=0.1, crease_angle=None, iterations=2, max_length=0.14) is None
    with pytest.raises(ValueError, match="finite"):
        native.isotropic_remesh(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), length=0.1, crease_angle=None,
                                iterations=1, max_length=0.14)
    with pytest.raises(ValueError, match="out of range"):
        native.isotropic_remesh(v, np.array([[0, 1, 9]]), length=0.1, crease_angle=None, iterations=1,
                                max_length=0.14)


def test_instant_meshes_takes_its_input_as_it_is_without_the_compiled_kernels(monkeypatch):
    v, f = meshes.cube()
    monkeypatch.setenv("MESHSMITH_NATIVE", "0")
    iv, jf = artist.instant_meshes_input(v, f, target_faces=200, crease_angle=30.0)
    assert iv is v and jf is f


@needs_native
def test_instant_meshes_input_edges_are_under_half_its_edge_and_a_fine_input_keeps_its_vertices():
    v, f = meshes.uv_sphere(rings=8, segments=12)
    iv, jf = artist.instant_meshes_input(v, f, target_faces=300, crease_angle=30.0)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    scale = np.sqrt(area / 300)
    assert _lengths(iv, jf).max() < 0.5 * scale
    assert np.median(_lengths(iv, jf)) > 0.8 * artist.ISOTROPIC_EDGE * scale
    # A mesh already about as fine as the remesh would be and even goes to Instant Meshes as it is.
    even_v, even_f = meshes.uv_sphere(rings=48, segments=96)
    assert artist.instant_meshes_input(even_v, even_f, target_faces=500, crease_angle=30.0)[0] is even_v
    # One as fine but with long edges keeps every vertex it has; only its
    # long edges are split (here the 12 meridians of a sphere of 400 rings: 0.52 long, against
    # 0.23 at most, half of Instant Meshes' edge).
    fine_v, fine_f = meshes.uv_sphere(rings=400, segments=12)
    fine_area = 0.5 * np.linalg.norm(np.cross(fine_v[fine_f[:, 1]] - fine_v[fine_f[:, 0]],
                                              fine_v[fine_f[:, 2]] - fine_v[fine_f[:, 0]]), axis=1).sum()
    fine_scale = np.sqrt(fine_area / 300)
    even = fine_area / (np.sqrt(3) / 2 * (artist.ISOTROPIC_EDGE * fine_scale) ** 2)
    assert len(fine_v) >= artist.ISOTROPIC_MAX_INPUT_SHARE * even
    assert _lengths(fine_v, fine_f).max() > 0.5 * fine_scale
    out_v, out_f = artist.instant_meshes_input(fine_v, fine_f, target_faces=300, crease_angle=30.0)
    assert _lengths(out_v, out_f).max() < 0.5 * fine_scale
    assert len(out_v) > len(fine_v)
    kept = {tuple(x) for x in np.round(out_v, 12).tolist()}
    assert all(tuple(x) in kept for x in np.round(fine_v, 12).tolist())
    # ... and so does one whose remesh would be too large to pay for.
    assert artist.instant_meshes_input(v, f, target_faces=10**6, crease_angle=30.0)[0] is v


@needs_native
def test_a_remesh_another_thread_cancels_stops_and_returns_none():
    v, f = meshes.uv_sphere(rings=8, segments=12)
    kwargs = dict(length=0.05, crease_angle=30.0, iterations=3, max_length=0.1)
    plain = native.isotropic_remesh(v, f, **kwargs)
    flag = np.zeros(1, dtype=np.uint8)
    unset = native.isotropic_remesh(v, f, cancel=flag, **kwargs)
    assert plain is not None and all(np.array_equal(a, b) for a, b in zip(plain, unset))
    flag[0] = 1
    assert native.isotropic_remesh(v, f, cancel=flag, **kwargs) is None
    with pytest.raises(ValueError, match="shape"):
        native.isotropic_remesh(v, f, cancel=np.zeros(2, dtype=np.uint8), **kwargs)
    # Set from another thread while the remesh runs (this one, to the end, makes about 52,000
    # vertices): it stops early, and instant_meshes_input hands the mesh back as it is.
    assert len(artist.instant_meshes_input(v, f, 5_000, 30.0)[0]) > 40_000
    ahead = artist._Ahead(artist.instant_meshes_input, (v, f, 5_000, 30.0))
    ahead.drop()
    assert ahead.dropped and not ahead._thread.is_alive() and ahead.result()[0] is v


@needs_native
@pytest.mark.parametrize("thin", [True, False])
def test_the_isotropic_input_made_ahead_gives_the_same_layout(monkeypatch, thin):
    # Made on another thread while the thin-part check runs, used when the full budget is (a
    # plate thinner than an edge) and stopped when the quarter budget is (a sphere): the result
    # is the one made in turn, bit for bit.
    import trimesh

    if thin:
        plate = trimesh.creation.box((2.0, 2.0, 0.04)).subdivide().subdivide()
        v, f = np.asarray(plate.vertices, dtype=float), np.asarray(plate.faces)
    else:
        v, f = meshes.uv_sphere(rings=24, segments=48)
    monkeypatch.setenv("MESHSMITH_WORKERS", "2")          # made ahead only with a second worker
    made = []
    real = artist.instant_meshes_input
    monkeypatch.setattr(artist, "instant_meshes_input",
                        lambda *args, **kwargs: made.append(args[2]) or real(*args, **kwargs))
    results = []
    for ahead in (True, False):
        monkeypatch.setattr(artist, "ISOTROPIC_AHEAD", ahead)
        results.append(artist.retopo(v, f, target_faces=1200, mode="quads"))
    first, second = results
    assert np.array_equal(first.vertices, second.vertices) and np.array_equal(first.polygons, second.polygons)
    full_aim = round(1200 / artist.EXPECTED_RATIO["quads"])
    assert (first.remesher_targets[0] == full_aim) == thin, first.remesher_targets
    # The full budget's input: made twice for the plate (ahead, then in turn), once for the
    # sphere (ahead, and stopped).
    assert made.count(full_aim) == (2 if thin else 1), made
