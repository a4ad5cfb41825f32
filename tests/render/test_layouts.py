"""Camera layouts and camera conventions, without Blender."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.conventions import CANONICAL_EXTENT, camera_position, intrinsics_from_fov, intrinsics_matrix, look_at, matrix_world_from_opencv, world_to_camera_opencv
from render.layouts import framing_radius, hammersley_sphere, make_layout


def project(point, view, width, height):
    w2c = world_to_camera_opencv(view.matrix_world)
    p = w2c[:3, :3] @ point + w2c[:3, 3]
    uvw = intrinsics_matrix(intrinsics_from_fov(view.fov, width, height)) @ p
    return uvw[:2] / uvw[2], p[2]


def test_zero123pp_views():
    views = make_layout("zero123pp")
    assert [v.azimuth for v in views] == [30, 90, 150, 210, 270, 330]
    assert [v.elevation for v in views] == [20, -10, 20, -10, 20, -10]
    assert all(v.fov == 30 for v in views)
    for v in views:
        pos = v.matrix_world[:3, 3]
        assert np.allclose(pos, camera_position(v.azimuth, v.elevation, v.radius))
        assert np.isclose(np.degrees(np.arcsin(pos[2] / np.linalg.norm(pos))), v.elevation)
        # The origin projects onto the principal point, in front of the camera.
        uv, z = project(np.zeros(3), v, 320, 320)
        assert np.allclose(uv, [159.5, 159.5]) and np.isclose(z, v.radius)
        # World up projects upwards in the image (OpenCV y down): no roll.
        uv_up, _ = project(np.array([0.0, 0.0, 0.1]), v, 320, 320)
        assert uv_up[1] < uv[1] and np.isclose(uv_up[0], uv[0])


def test_azimuth_convention_front_and_right():
    # Azimuth 0: Blender's front view, camera on -Y; 90: its right view, camera on +X.
    assert np.allclose(camera_position(0, 0, 2), [0, -2, 0])
    assert np.allclose(camera_position(90, 0, 2), [2, 0, 0])
    assert np.allclose(camera_position(0, 90, 2), [0, 0, 2])
    # From the front, world +X is image right.
    v = make_layout("orbit:4")[0]
    uv0, _ = project(np.zeros(3), v, 64, 64)
    uvx, _ = project(np.array([0.2, 0.0, 0.0]), v, 64, 64)
    assert uvx[0] > uv0[0]


def test_default_radius_keeps_the_canonical_box_in_view():
    for spec in ("zero123pp", "sphere:20", "orbit:7"):
        for v in make_layout(spec):
            for corner in np.array(np.meshgrid(*[[-CANONICAL_EXTENT, CANONICAL_EXTENT]] * 3)).reshape(3, -1).T:
                uv, z = project(corner, v, 100, 100)
                assert z > 0 and (uv > -0.5).all() and (uv < 99.5).all(), (spec, corner)
    assert framing_radius(30) > framing_radius(60)


def test_opencv_and_blender_matrices_round_trip():
    m = look_at(camera_position(123, -40, 3.5))
    w2c = world_to_camera_opencv(m)
    assert np.allclose(matrix_world_from_opencv(w2c), m)
    assert np.allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3))
    assert np.isclose(np.linalg.det(w2c[:3, :3]), 1.0)
    # The Blender camera looks down its -Z; OpenCV's down +Z: the same ray.
    assert np.allclose(-m[:3, 2], w2c[2, :3])


def test_look_at_the_poles_is_defined():
    for el in (90, -90):
        m = look_at(camera_position(0, el, 2))
        assert np.isfinite(m).all() and np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))


def test_hammersley_points_cover_the_sphere_evenly():
    p = hammersley_sphere(64)
    assert p.shape == (64, 3) and np.allclose(np.linalg.norm(p, axis=1), 1.0)
    assert np.linalg.norm(p.mean(axis=0)) < 0.05  # balanced
    assert len(np.unique(np.round(p, 6), axis=0)) == 64
    # Equal-area bands: as many points above z = 0.5 as the cap's area share (1/4).
    assert abs((p[:, 2] > 0.5).sum() - 16) <= 1
    views = make_layout("sphere:64")
    assert len(views) == 64 and np.allclose([v.radius for v in views], views[0].radius)


def test_orbit_and_overrides():
    views = make_layout("orbit:8", radius=3.0, fov=45)
    assert [round(v.azimuth) for v in views] == [0, 45, 90, 135, 180, 225, 270, 315]
    assert all(v.radius == 3.0 and v.fov == 45 for v in views)


def test_json_layout(tmp_path):
    m = look_at(camera_position(10, 5, 4))
    poses = [{"azimuth": 45, "elevation": 30, "radius": 2.5},
             {"matrix_world": m.tolist(), "fov": 50},
             {"world_to_camera": world_to_camera_opencv(m).tolist()}]
    path = tmp_path / "poses.json"
    path.write_text(json.dumps({"views": poses}))
    views = make_layout(str(path))
    assert len(views) == 3
    assert np.allclose(views[0].matrix_world[:3, 3], camera_position(45, 30, 2.5))
    assert np.allclose(views[1].matrix_world, m) and views[1].fov == 50
    assert np.allclose(views[2].matrix_world, m)
    assert np.isclose(views[1].azimuth, 10) and np.isclose(views[1].elevation, 5) and np.isclose(views[1].radius, 4)


@pytest.mark.parametrize("spec, match", [
    ("orbit:0", "positive integer"), ("sphere:x", "positive integer"), ("cube", "layout must be"),
    ("zero123pp:3", "layout must be"),
])
def test_bad_layouts_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        make_layout(spec)


def test_bad_json_layouts(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"azimuth\": 3}]")
    with pytest.raises(ValueError, match="pose 0 needs"):
        make_layout(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        make_layout(str(bad))
    with pytest.raises(ValueError, match="cannot be read"):
        make_layout(str(tmp_path / "missing.json"))
