"""The watertight remesher: closed, oriented outward, close to the input, in the caller's frame."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import watertight as wt
from backend.mesh.metrics import (
    chamfer_l1,
    connected_components,
    edge_manifold_report,
    genus,
    is_oriented,
    is_watertight,
    signed_volume,
)
from backend.mesh.watertight import WatertightResult, watertight
from backend.progress import Cancelled
from tests import meshes

RESOLUTION = 32


def _box_union_surface(n: int = 40) -> meshes.Mesh:
    """The outer surface of :func:`meshes.two_intersecting_boxes`, finely triangulated.

    Each box face is split into n x n quads and the triangles inside the other box are
    dropped: what a perfect remesher keeps of the intersecting pair.
    """
    parts, offset = [], 0
    boxes = [np.array(b, dtype=np.float64) for b in meshes.TWO_BOXES]
    for k, (lo, hi) in enumerate(boxes):
        for axis in range(3):
            u_ax, v_ax = [a for a in range(3) if a != axis]
            for side in (lo[axis], hi[axis]):
                s, t = np.meshgrid(np.linspace(lo[u_ax], hi[u_ax], n + 1), np.linspace(lo[v_ax], hi[v_ax], n + 1),
                                   indexing="ij")
                v = np.zeros((s.size, 3))
                v[:, axis], v[:, u_ax], v[:, v_ax] = side, s.ravel(), t.ravel()
                idx = np.arange(s.size).reshape(n + 1, n + 1)
                a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
                f = np.vstack([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
                other_lo, other_hi = boxes[1 - k]
                centroid = v[f].mean(axis=1)
                hidden = ((centroid > other_lo + 1e-9) & (centroid < other_hi - 1e-9)).all(axis=1)
                parts.append((v, f[~hidden] + offset))
                offset += len(v)
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def _canonical_faces(f: np.ndarray) -> np.ndarray:
    """Faces rotated to start at their smallest index (winding kept), rows sorted."""
    f = np.stack([np.roll(row, -int(np.argmin(row))) for row in f])
    return f[np.lexsort(f.T[::-1])]


def _outer_sphere() -> meshes.Mesh:
    v, f = meshes.nested_spheres()
    outer = np.unique(f[:len(meshes.uv_sphere(16, 32)[1])])
    return v, f[np.isin(f, outer).all(axis=1)]


# name -> (input, reference surface the result should hug)
CASES = {
    "open box": (meshes.open_box(), None),
    "sphere with holes": (meshes.sphere_with_holes(), None),
    "flipped faces": (meshes.flipped_faces(*meshes.uv_sphere()), None),
    "duplicate faces": (meshes.with_duplicate_faces(*meshes.uv_sphere()), None),
    "two intersecting boxes": (meshes.two_intersecting_boxes(), _box_union_surface()),
    "plane": (meshes.plane(), None),
    "nested spheres": (meshes.nested_spheres(), _outer_sphere()),  # the inner one is filled in
    "broken mesh": (meshes.broken_mesh(), None),
}


def _assert_clean_closed_surface(result: WatertightResult) -> None:
    v, f = result.vertices, result.faces
    assert v.dtype == np.float64 and f.dtype == np.int64 and v.shape[1] == f.shape[1] == 3
    report = edge_manifold_report(f)
    assert report.watertight, report
    assert is_oriented(f)
    assert signed_volume(v, f) > 0
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 2] != f[:, 0]).all()
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert area.min() > 1e-9 * result.voxel_size**2
    assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f), "duplicate faces"
    assert len(np.unique(v, axis=0)) == len(v), "unmerged vertices"
    assert np.array_equal(np.unique(f), np.arange(len(v))), "unused vertices"


@pytest.mark.parametrize("name", CASES)
def test_result_is_closed_oriented_outward_and_hugs_the_input(name):
    (v, f), reference = CASES[name]
    result = watertight(v, f, resolution=RESOLUTION)
    _assert_clean_closed_surface(result)
    # The surface is the outer face of a shell `offset` = SHELL_VOXELS voxels thick around
    # the input, so its Chamfer distance to the input is about `offset`; allow one more
    # voxel for marching cubes and sampling, and check the dilation really is there.
    rv, rf = reference or (v, f)
    chamfer = chamfer_l1(rv, rf, result.vertices, result.faces, samples=30_000)
    assert result.offset - 0.5 * result.voxel_size < chamfer < result.offset + result.voxel_size, \
        f"{name}: Chamfer {chamfer / result.voxel_size:.2f} voxels"


def test_flipped_and_duplicate_faces_change_nothing():
    clean = watertight(*meshes.uv_sphere(), resolution=RESOLUTION)
    for v, f in (meshes.flipped_faces(*meshes.uv_sphere(), 0.5), meshes.with_duplicate_faces(*meshes.uv_sphere(), 0.5)):
        other = watertight(v, f, resolution=RESOLUTION)
        np.testing.assert_array_equal(other.faces, clean.faces)
        np.testing.assert_allclose(other.vertices, clean.vertices, atol=1e-9)


def test_closed_input_keeps_its_shape_grown_by_the_offset():
    v, f = meshes.uv_sphere(24, 48)
    result = watertight(v, f, resolution=48)
    grown = 1.0 + result.offset
    assert signed_volume(result.vertices, result.faces) == pytest.approx(4 / 3 * np.pi * grown**3, rel=0.03)
    radii = np.linalg.norm(result.vertices, axis=1)
    assert np.abs(radii - grown).max() < 0.5 * result.voxel_size


@pytest.mark.parametrize("mesh,expected", [
    (meshes.uv_sphere(), 0),
    (meshes.torus(), 1),
    (meshes.two_intersecting_boxes(), 0),
    (meshes.plane(), 0),
])
def test_topology_of_the_result(mesh, expected):
    result = watertight(*mesh, resolution=48)
    assert connected_components(result.faces)[0] == 1
    assert genus(result.faces) == expected


def test_enclosed_parts_and_cavities_are_filled():
    v, f = meshes.nested_spheres()
    result = watertight(v, f, resolution=RESOLUTION)
    assert connected_components(result.faces)[0] == 1
    assert np.linalg.norm(result.vertices, axis=1).min() > 0.9  # nothing of the inner sphere
    outer_volume = signed_volume(*_outer_sphere())
    assert signed_volume(result.vertices, result.faces) > outer_volume  # solid, not hollow


def test_open_sheet_becomes_a_thin_closed_slab():
    v, f = meshes.plane(size=1.0)
    result = watertight(v, f, resolution=RESOLUTION)
    thickness = np.ptp(result.vertices[:, 2])
    assert thickness == pytest.approx(2 * result.offset, abs=0.5 * result.voxel_size)
    # Volume of the unit square grown by the offset: slab + half-cylinder rim + corner ball.
    r = result.offset
    expected = 2 * r + 4 * np.pi * r**2 / 2 + 4 / 3 * np.pi * r**3
    assert signed_volume(result.vertices, result.faces) == pytest.approx(expected, rel=0.05)


def test_degenerate_only_input_becomes_a_capsule():
    x = np.arange(6, dtype=np.float64)
    v = np.stack([x, 0.5 * x, np.zeros_like(x)], axis=1)          # collinear points
    f = np.array([[0, 1, 2], [1, 3, 5], [2, 2, 4], [4, 4, 4]])     # zero-area faces only
    result = watertight(v, f, resolution=RESOLUTION)
    _assert_clean_closed_surface(result)
    direction = v[-1] / np.linalg.norm(v[-1])
    t = np.clip(result.vertices @ direction, 0.0, np.linalg.norm(v[-1]))
    to_segment = np.linalg.norm(result.vertices - t[:, None] * direction, axis=1)
    assert np.abs(to_segment - result.offset).max() < 0.5 * result.voxel_size


def test_output_is_in_the_callers_frame_and_scale():
    v, f = meshes.broken_mesh()
    base = watertight(v, f, resolution=RESOLUTION)
    shift = np.array([1.0e4, -250.0, 3.0])
    moved = watertight(v * 1000.0 + shift, f, resolution=RESOLUTION)
    assert moved.voxel_size == pytest.approx(base.voxel_size * 1000.0)
    assert moved.offset == pytest.approx(base.offset * 1000.0)
    np.testing.assert_array_equal(moved.faces, base.faces)
    np.testing.assert_allclose(moved.vertices, base.vertices * 1000.0 + shift, atol=1e-6 * moved.voxel_size)
    # And the result wraps the input where the input is, grown by the offset on every side.
    lo, hi = (v * 1000.0 + shift).min(axis=0), (v * 1000.0 + shift).max(axis=0)
    np.testing.assert_allclose(moved.vertices.min(axis=0), lo - moved.offset, atol=0.5 * moved.voxel_size)
    np.testing.assert_allclose(moved.vertices.max(axis=0), hi + moved.offset, atol=0.5 * moved.voxel_size)


def test_unused_vertices_do_not_change_the_result():
    v, f = meshes.cube()
    base = watertight(v, f, resolution=RESOLUTION)
    stray = watertight(np.vstack([v, [[1e6, -1e6, 5.0]]]), f, resolution=RESOLUTION)
    np.testing.assert_array_equal(stray.faces, base.faces)
    np.testing.assert_allclose(stray.vertices, base.vertices)


def test_smallest_resolution_with_a_shell_wider_than_the_canonical_margin():
    result = watertight(*meshes.cube(), resolution=16)  # the shell pokes out of [-1, 1]^3
    _assert_clean_closed_surface(result)
    np.testing.assert_allclose(result.vertices.max(axis=0), 0.5 + result.offset, atol=0.5 * result.voxel_size)


def test_marching_cube_blocks_are_stitched(monkeypatch):
    v, f = meshes.broken_mesh()
    base = watertight(v, f, resolution=RESOLUTION)
    monkeypatch.setattr(wt, "BLOCK_CELLS", 3)  # many blocks, seams everywhere
    blocky = watertight(v, f, resolution=RESOLUTION)
    _assert_clean_closed_surface(blocky)
    # Vertices are numbered by grid edge, so both runs agree; faces come block by block.
    np.testing.assert_allclose(blocky.vertices, base.vertices, atol=1e-12)
    np.testing.assert_array_equal(_canonical_faces(blocky.faces), _canonical_faces(base.faces))


def test_field_values_on_the_level_do_not_make_collapsed_faces():
    # A shell block with one neighbour exactly `eps` away: that node borders outside nodes
    # in five directions, and unnudged, marching cubes would put five vertices on it.
    udf = np.full((8, 8, 8), np.inf, dtype=np.float32)
    udf[2:5, 2:5, 2:5] = 0.0
    udf[5, 3, 3] = 1.0
    outside = np.ones(udf.shape, bool)
    outside[2:5, 2:5, 2:5] = False
    v, f = wt._marching_cubes(udf, outside, 1.0, 2.5, wt.NUDGE_VOXELS, lambda *_: None)
    assert is_watertight(f) and is_oriented(f)
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert area.min() > 1e-9
    assert np.abs(v - np.rint(v)).max(axis=1).min() >= 0.5 * wt.NUDGE_VOXELS  # off the nodes


def test_pymcubes_winding_is_what_the_module_assumes():
    import mcubes

    x = np.mgrid[:20, :20, :20] - 9.5
    v, f = mcubes.marching_cubes(np.sqrt((x**2).sum(axis=0)) - 6.0, 0.0)  # inside below the level
    assert (signed_volume(v, f.astype(np.int64)) < 0) == wt.MCUBES_WINDS_INWARD


def test_progress_is_reported_and_cancel_stops_it():
    seen = []
    watertight(*meshes.broken_mesh(), resolution=RESOLUTION, progress=lambda x, s: seen.append((x, s)))
    fractions = [x for x, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    stages = [s for _, s in seen]
    assert {"distance", "flood fill", "marching cubes", "done"} <= set(stages)
    assert stages.count("distance") > 2  # between triangle chunks, not only around the stage

    for stop_at in ("distance", "flood fill", "marching cubes"):
        def cancel(fraction, stage, stop_at=stop_at):
            if stage == stop_at:
                raise Cancelled("job")

        with pytest.raises(Cancelled):
            watertight(*meshes.broken_mesh(), resolution=RESOLUTION, progress=cancel)


def _cube_with(**changes):
    v, f = meshes.cube()
    return {"vertices": changes.get("vertices", v), "faces": changes.get("faces", f)}


@pytest.mark.parametrize("arguments,argument,words", [
    (_cube_with(vertices=np.zeros((0, 3))), "vertices", "empty"),
    (_cube_with(faces=np.zeros((0, 3), dtype=np.int64)), "faces", "empty"),
    (_cube_with(vertices=np.zeros((8, 2))), "vertices", "shape"),
    (_cube_with(faces=np.zeros((12, 4), dtype=np.int64)), "faces", "shape"),
    (_cube_with(vertices=np.full((8, 3), "a")), "vertices", "dtype"),
    (_cube_with(vertices=np.zeros((8, 3), dtype=complex)), "vertices", "dtype"),
    (_cube_with(faces=meshes.cube()[1].astype(np.float64)), "faces", "dtype"),
    (_cube_with(vertices=np.where(np.arange(24).reshape(8, 3) == 7, np.nan, meshes.cube()[0])), "vertices", "NaN"),
    (_cube_with(vertices=np.where(np.arange(24).reshape(8, 3) == 7, np.inf, meshes.cube()[0])), "vertices", "infinite"),
    (_cube_with(faces=meshes.cube()[1] + 1), "faces", "from 1 to 8"),
    (_cube_with(faces=meshes.cube()[1] - 1), "faces", "from -1 to 6"),
    (_cube_with(vertices=np.ones((8, 3))), "vertices", "span"),
])
def test_bad_meshes_are_named(arguments, argument, words):
    with pytest.raises(ValueError, match=argument) as info:
        watertight(**arguments, resolution=RESOLUTION)
    assert words in str(info.value)


@pytest.mark.parametrize("resolution", [15, 1025, 0, -64, 64.0, True, "64", None])
def test_bad_resolution_is_named(resolution):
    with pytest.raises(ValueError, match="resolution"):
        watertight(*meshes.cube(), resolution=resolution)
