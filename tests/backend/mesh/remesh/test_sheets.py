"""Open sheets and parts thinner than the probes come back as closed shells hugging both sides."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from backend.mesh.metrics import connected_components, sample_surface
from backend.mesh.remesh import sheets
from backend.mesh.remesh import watertight as wt
from backend.mesh.remesh.watertight import WatertightResult, watertight
from backend.mesh.sampling import signed_distance
from backend.mesh.triangles import closest_point_on_triangle
from tests import meshes
from tests.backend.mesh.remesh.test_watertight import _assert_clean_closed_surface

#: The goal (issue 19): within a quarter voxel of the input, both ways, but for a few samples.
MEAN_VOXELS, P99_VOXELS = 0.15, 0.25

SAMPLES = 20_000


def bumpy_patch(n: int = 48, holes: int = 3, seed: int = 0) -> meshes.Mesh:
    """An open height field over the unit square, bumps ~0.1 high, with ``holes`` small round
    holes (~6% of its width across): what a scan of a surface patch looks like."""
    xs = np.linspace(-0.5, 0.5, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    z = 0.06 * np.sin(7 * x) * np.cos(5 * y) + 0.03 * np.cos(11 * x + 3 * y)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.vstack([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    centroid = v[f].mean(axis=1)
    drop = np.zeros(len(f), dtype=bool)
    for middle in np.random.default_rng(seed).uniform(-0.3, 0.3, size=(holes, 2)):
        drop |= np.linalg.norm(centroid[:, :2] - middle, axis=1) < 0.03
    return v, f[~drop]


def _nearest_on_input(points: np.ndarray, v: np.ndarray, f: np.ndarray, k: int = 8) -> np.ndarray:
    """A point (p, 3) of the input near each of ``points``: the closest on the ``k`` faces with
    the nearest centroids (all faces of a small mesh). Its distance bounds the true distance
    from above."""
    _, face = cKDTree(v[f].mean(axis=1)).query(points, k=len(f) if len(f) <= 64 else k)
    t = v[f[face]]                                                                    # (p, k, 3, 3)
    closest = closest_point_on_triangle(points[:, None], t[..., 0, :], t[..., 1, :], t[..., 2, :])
    gap = np.linalg.norm(closest - points[:, None], axis=-1)
    return closest[np.arange(len(points)), gap.argmin(axis=1)]


def _hug(result: WatertightResult, v: np.ndarray, f: np.ndarray) -> dict[str, float]:
    """How closely the result hugs the input, in voxels, and how many of its triangles face it.

    ``out``: from the result's vertices and 20,000 area samples to the input (an upper bound,
    :func:`_nearest_on_input`); ``in``: from 20,000 samples of the input to the result (exact,
    the result is closed); ``facing``: the share of the result's area whose normal points
    away from the input (at each triangle's centroid; a fold faces it), counting triangles
    on the input (within 0.04 voxel: the side walls of a plate thinner than the probes sit
    0.03 voxel inside it; the hugging shells, at 0.05, count) as facing. By area: a sliver along a sheet's rim, its
    corners nearly in line, can have any normal.
    """
    rv, rf = result.vertices, result.faces
    out_points = np.vstack([rv, sample_surface(rv, rf, SAMPLES, seed=1)[0]])
    out = np.linalg.norm(out_points - _nearest_on_input(out_points, v, f), axis=1) / result.voxel_size
    inward = np.abs(signed_distance(rv, rf, sample_surface(v, f, SAMPLES, seed=2)[0])) / result.voxel_size
    t = rv[rf]
    centroid = t.mean(axis=1)
    normal = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    away = centroid - _nearest_on_input(centroid, v, f)
    on_input = np.linalg.norm(away, axis=1) < 0.04 * result.voxel_size
    facing = (np.einsum("ij,ij->i", normal, away) > 0) | on_input
    area = np.linalg.norm(normal, axis=1)
    return {"out mean": out.mean(), "out p99": np.percentile(out, 99), "in mean": inward.mean(),
            "in p99": np.percentile(inward, 99), "facing": area[facing].sum() / area.sum()}


def _assert_hugs(stats: dict[str, float], min_facing: float) -> None:
    for way in ("out", "in"):
        assert stats[f"{way} mean"] < MEAN_VOXELS, stats
        assert stats[f"{way} p99"] < P99_VOXELS, stats
    assert stats["facing"] >= min_facing, stats


@pytest.mark.parametrize("resolution", [32, 45, 64])
@pytest.mark.parametrize("tilted", [False, True])
def test_flat_sheet_comes_back_closed_and_within_a_quarter_voxel(resolution, tilted, kernels):
    # Zero thickness. Even resolutions put the untilted square on lattice nodes, odd ones
    # between them; tilted, every cell configuration occurs.
    v, f = meshes.plane(size=1.0)
    if tilted:
        v = v @ Rotation.from_euler("xyz", [0.5, 0.3, 0.2]).as_matrix().T
    result = watertight(v, f, resolution=resolution)
    _assert_clean_closed_surface(result)
    assert connected_components(result.faces)[0] == 1
    stats = _hug(result, v, f)
    _assert_hugs(stats, min_facing=0.9999)
    # Before, the slab stood 0.75 voxel off each side.
    assert stats["in mean"] == pytest.approx(sheets.SHEET_OFFSET_VOXELS, abs=0.02)


@pytest.mark.parametrize("resolution", [48, 96])
def test_open_scan_like_patch_comes_back_closed_and_within_a_quarter_voxel(resolution, kernels):
    v, f = bumpy_patch()
    result = watertight(v, f, resolution=resolution)
    _assert_clean_closed_surface(result)
    assert connected_components(result.faces)[0] == 1
    # A few triangles at the small holes' rims cut across the hole (their corners sit on
    # the rim), so "facing" is not all.
    _assert_hugs(_hug(result, v, f), min_facing=0.999)


def test_part_thinner_than_the_probes_is_hugged():
    # A closed plate 0.4 voxel thick looks like a sheet from both sides; it used to come
    # back 0.75 voxel out on each side.
    resolution = 64
    v, f = meshes.cube()
    v = v * [1.0, 0.6, 0.4 * (2.0 / resolution) / 1.9]           # the longest side spans 1.9 of the box
    result = watertight(v, f, resolution=resolution)
    _assert_clean_closed_surface(result)
    # At the plate's corners a few triangles sit 0.05-0.08 voxel inside it (dual contouring
    # does that before anything moves): 0.05% of the area.
    _assert_hugs(_hug(result, v, f), min_facing=0.999)


def _hugged(monkeypatch, v: np.ndarray, f: np.ndarray, resolution: int) -> int:
    """How many vertices of ``watertight(v, f)`` the sheet rule moved (the snap onto the input
    turned off)."""
    moved = []

    def spy(*args, **kwargs):
        moved.append(sheets.hug_sheets(*args, **{**kwargs, "snap": 0.0}))
        return moved[-1]

    monkeypatch.setattr(wt, "hug_sheets", spy)
    watertight(v, f, resolution=resolution)
    return moved[0]


@pytest.mark.parametrize("mesh", [meshes.uv_sphere(), meshes.sphere_with_holes(5, radius=0.01),
                                  meshes.two_intersecting_boxes()])
def test_closed_inputs_and_capped_holes_are_not_moved(mesh, monkeypatch):
    # Caps of holes narrower than the shell are signed -d, not as sheets: they stay flat.
    assert _hugged(monkeypatch, *mesh, 32) == 0
    assert _hugged(monkeypatch, *meshes.plane(), 32) > 0                  # the spy sees moves


@pytest.mark.parametrize("mesh, gain", [(meshes.uv_sphere(), 0.95), (meshes.two_intersecting_boxes(), 1.001)])
def test_closed_surfaces_land_on_the_input(mesh, gain, kernels, monkeypatch):
    """Dual contouring's vertices sit where tangent planes meet, a little off a curved surface;
    the snap puts them on it: nearer in the exact surface Chamfer (flat boxes: their vertices
    were on the planes already, and the hidden inner faces dominate), nothing opens or folds."""
    from backend.mesh.sampling import surface_chamfer_l1
    from backend.mesh.sampling import unsigned_distance

    v, f = mesh
    resolution = 40
    on = watertight(v, f, resolution=resolution)
    monkeypatch.setattr(wt, "SNAP_VOXELS", 0.0)
    off = watertight(v, f, resolution=resolution)
    _assert_clean_closed_surface(on)
    assert len(on.faces) == len(off.faces)
    voxel = on.voxel_size
    assert np.quantile(unsigned_distance(v, f, on.vertices), 0.95) < 1e-9 * voxel
    assert np.quantile(unsigned_distance(v, f, off.vertices), 0.95) > 1e-4 * voxel
    assert surface_chamfer_l1(v, f, on.vertices, on.faces, samples=SAMPLES) \
        <= gain * surface_chamfer_l1(v, f, off.vertices, off.faces, samples=SAMPLES)


def test_moves_that_would_turn_a_triangle_over_are_held_back(kernels):
    # A square of two triangles (0, 1, 2) and (0, 2, 3). Vertex 1 steps across the diagonal
    # 0-2 (y = x), which would turn triangle (0, 1, 2) over: it goes back by halves until it
    # does not. Vertex 3 steps along its side of the diagonal: all the way.
    square = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    vertices = square.copy()
    fraction = sheets._unfolded_moves(vertices, triangles, np.array([1, 3]),
                                      np.array([[-0.6, 0.6, 0.0], [0.1, -0.1, 0.0]]))
    np.testing.assert_allclose(fraction, [0.5, 1.0])
    np.testing.assert_allclose(vertices, [[0.0, 0.0, 0.0], [0.7, 0.3, 0.0], [1.0, 1.0, 0.0], [0.1, 0.9, 0.0]])
    assert not sheets._turned_over(square, vertices, triangles).any()
    # Still turned over after UNFOLD_ROUNDS halvings (1/16 of the step): back home.
    vertices = square.copy()
    vertices[1] = [0.51, 0.49, 0.0]
    fraction = sheets._unfolded_moves(vertices, triangles, np.array([1]), np.array([[-0.5, 0.5, 0.0]]))
    np.testing.assert_allclose(fraction, [0.0])
    np.testing.assert_allclose(vertices[1], [0.51, 0.49, 0.0])
    # A degenerate triangle has no side to turn over: the step is taken.
    vertices = square.copy()
    vertices[1] = [0.5, 0.5, 0.0]
    fraction = sheets._unfolded_moves(vertices, triangles, np.array([1]), np.array([[-0.3, 0.3, 0.0]]))
    np.testing.assert_allclose(fraction, [1.0])
