"""One source of truth for frames, the canonical box and file formats.

Frames
    Blender is Z-up, glTF is Y-up. The conversion happens exactly once, where a GLB is
    written or read on the Blender side (``addon/glb.py``): a Blender point ``(x, y, z)``
    is the glTF point ``(x, z, -y)``. The backend never converts axes: it works in the
    frame of the file it received and answers in that same frame and scale.

Canonical box
    Pipelines work on a copy of the mesh centred on its bounding-box centre and scaled
    uniformly so that its longest side spans ``[-CANONICAL_EXTENT, CANONICAL_EXTENT]``,
    inside the cube ``[-1, 1]^3``. The margin ``1 - CANONICAL_EXTENT`` leaves room for
    a watertight shell and for marching cubes' outside layer. A grid of resolution
    ``res`` over the cube has voxel size ``2 / res``.

Cameras (``render/`` writes them, ``training/`` reads them; see ``cameras.json``)
    World frame: Blender's, Z-up, the canonical box around the origin. A camera at
    azimuth ``a``, elevation ``e`` and distance ``r`` sits at
    ``r * (cos e sin a, -cos e cos a, sin e)`` and looks at the origin with world +Z up:
    azimuth 0 is Blender's front view (camera on -Y), 90 its right view (camera on +X),
    elevation is positive above the XY plane.
    ``world_to_camera`` is OpenCV's: camera x right, y down, z forward (into the scene).
    ``matrix_world`` is Blender's camera-to-world, whose camera looks down its local -Z with
    +Y up; the two differ by :data:`OPENCV_FROM_BLENDER_CAMERA`.
    Pixels: pixel (row v, column u) has its centre at image point ``(u, v)`` (OpenCV), so a
    centred principal point is ``cx = width / 2 - 0.5``, ``cy = height / 2 - 0.5``; the
    field of view spans the whole image, edge to edge (Blender's ``sensor_fit`` AUTO: the
    larger side). Depth is the z of the OpenCV camera frame (not the distance along the ray).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Half the longest side of a normalized mesh; the margin to the unit cube is 0.05.
CANONICAL_EXTENT = 0.95

#: Mesh formats the backend reads and writes, by file suffix.
MESH_SUFFIXES = (".glb", ".obj", ".ply", ".stl")


@dataclass(frozen=True)
class Normalization:
    """A similarity ``canonical = (original - center) * scale``.

    Attributes
    ----------
    center : (3,) float64
        Bounding-box centre of the original mesh.
    scale : float
        Uniform factor into the canonical box.
    """

    center: np.ndarray
    scale: float

    @classmethod
    def fit(cls, vertices: np.ndarray, extent: float = CANONICAL_EXTENT) -> "Normalization":
        """The normalization that puts ``vertices`` ((n, 3) float) into the canonical box."""
        lo, hi = vertices.min(axis=0), vertices.max(axis=0)
        size = float((hi - lo).max())
        if not np.isfinite(size) or size <= 0.0:
            raise ValueError(
                f"vertices span {size!r} along their longest side; a mesh needs a positive, finite size"
            )
        return cls(center=(lo + hi) / 2.0, scale=2.0 * extent / size)

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        """Original frame -> canonical box; (n, 3) in, (n, 3) float64 out."""
        return (np.asarray(vertices, dtype=np.float64) - self.center) * self.scale

    def invert(self, vertices: np.ndarray) -> np.ndarray:
        """Canonical box -> original frame; (n, 3) in, (n, 3) float64 out."""
        return np.asarray(vertices, dtype=np.float64) / self.scale + self.center

    def to_dict(self) -> dict:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}


#: Blender point ``(x, y, z)`` from glTF point ``(x, y, z)``: glTF's +Y up becomes +Z up.
BLENDER_FROM_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

#: OpenCV camera axes from Blender camera axes (x kept, y and z flipped); its own inverse.
OPENCV_FROM_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])


def camera_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """World position (3,) of a camera at ``azimuth_deg``, ``elevation_deg``, ``radius``."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return radius * np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])


def look_at(position: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender ``matrix_world`` (4, 4) of a camera at ``position`` looking at ``target``.

    When the view direction is (nearly) parallel to ``up``, world +Y serves as up instead,
    so the poles have a defined, stable roll.
    """
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    norm = np.linalg.norm(forward)
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"position {position.tolist()} coincides with target {list(target)}")
    forward /= norm
    up = np.asarray(up, dtype=np.float64)
    if abs(float(np.dot(forward, up))) > 1.0 - 1e-9:
        up = np.array([0.0, 1.0, 0.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, -forward, position
    return m


def world_to_camera_opencv(matrix_world: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (4, 4) from a Blender camera ``matrix_world`` (4, 4, rigid)."""
    m = np.asarray(matrix_world, dtype=np.float64)
    rot, t = m[:3, :3], m[:3, 3]
    w2c = np.eye(4)
    w2c[:3, :3] = OPENCV_FROM_BLENDER_CAMERA @ rot.T
    w2c[:3, 3] = -w2c[:3, :3] @ t
    return w2c


def matrix_world_from_opencv(world_to_camera: np.ndarray) -> np.ndarray:
    """Blender camera ``matrix_world`` (4, 4) from an OpenCV world-to-camera (4, 4, rigid)."""
    w2c = np.asarray(world_to_camera, dtype=np.float64)
    rot_cv = w2c[:3, :3]
    m = np.eye(4)
    m[:3, :3] = rot_cv.T @ OPENCV_FROM_BLENDER_CAMERA
    m[:3, 3] = -rot_cv.T @ w2c[:3, 3]
    return m


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> dict:
    """Pinhole intrinsics ``{fx, fy, cx, cy, width, height}`` for a field of view across the larger side."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    f = max(width, height) / 2.0 / np.tan(np.radians(fov_deg) / 2.0)
    return {"fx": float(f), "fy": float(f), "cx": width / 2.0 - 0.5, "cy": height / 2.0 - 0.5,
            "width": int(width), "height": int(height)}


def intrinsics_matrix(intrinsics: dict) -> np.ndarray:
    """The 3x3 ``K`` of an intrinsics dict."""
    k = intrinsics
    return np.array([[k["fx"], 0.0, k["cx"]], [0.0, k["fy"], k["cy"]], [0.0, 0.0, 1.0]])
