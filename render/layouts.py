"""Camera layouts: named view sets (``zero123pp``, ``orbit:N``, ``sphere:N``) or a JSON file of poses.

A layout gives one :class:`View` a camera: its Blender ``matrix_world``, field of view and,
where it has them, azimuth / elevation / radius (frames and angles as in
:mod:`backend.conventions`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.conventions import CANONICAL_EXTENT, camera_position, look_at, matrix_world_from_opencv

#: Zero123++ v1.2's six views: azimuths 30..330 every 60 degrees, elevations 20 / -10, 30 degree FOV.
ZERO123PP_AZIMUTHS = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
ZERO123PP_ELEVATIONS = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
ZERO123PP_FOV = 30.0

#: Default field of view (degrees) of the other layouts.
DEFAULT_FOV = 30.0
#: Default elevation (degrees) of ``orbit:N``.
ORBIT_ELEVATION = 20.0
#: Distance from the bounding sphere of the canonical box to the image border, as a fraction.
FRAMING_MARGIN = 0.05


@dataclass(frozen=True)
class View:
    """One camera.

    Attributes
    ----------
    matrix_world : (4, 4) float64
        Blender camera-to-world.
    fov : float
        Field of view in degrees across the image's larger side.
    azimuth, elevation, radius : float
        Spherical position about the origin, in degrees and canonical units (always filled:
        computed from ``matrix_world`` for poses given as matrices).
    """

    matrix_world: np.ndarray
    fov: float
    azimuth: float
    elevation: float
    radius: float


def framing_radius(fov_deg: float, extent: float = CANONICAL_EXTENT, margin: float = FRAMING_MARGIN) -> float:
    """Camera distance at which the sphere around the canonical box (radius ``extent * sqrt(3)``)
    fits the field of view with ``margin`` to spare: every normalized asset is fully in view
    from every direction, at one scale shared by all assets."""
    return extent * math.sqrt(3.0) * (1.0 + margin) / math.sin(math.radians(fov_deg) / 2.0)


def _spherical(azimuth: float, elevation: float, radius: float, fov: float) -> View:
    pos = camera_position(azimuth, elevation, radius)
    return View(look_at(pos), float(fov), float(azimuth) % 360.0, float(elevation), float(radius))


def _from_matrix(matrix_world: np.ndarray, fov: float) -> View:
    m = np.asarray(matrix_world, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f"a pose matrix must be a finite 4x4, got shape {m.shape}")
    x, y, z = m[:3, 3]
    radius = float(np.linalg.norm(m[:3, 3]))
    elevation = math.degrees(math.asin(z / radius)) if radius > 0 else 0.0
    azimuth = math.degrees(math.atan2(x, -y)) % 360.0
    return View(m, float(fov), azimuth, elevation, radius)


def hammersley_sphere(n: int) -> np.ndarray:
    """``n`` Hammersley points on the unit sphere, (n, 3): even area coverage, no randomness.

    Point ``i`` has ``z = 1 - (2 i + 1) / n`` (equal-area bands, no point on a pole) and
    azimuth ``2 pi`` times the base-2 radical inverse of ``i``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    i = np.arange(n, dtype=np.uint64)
    bits = i.copy()
    inv = np.zeros(n, dtype=np.float64)
    scale = 0.5
    for _ in range(64):
        if not bits.any():
            break
        inv += (bits & np.uint64(1)).astype(np.float64) * scale
        bits >>= np.uint64(1)
        scale /= 2.0
    z = 1.0 - (2.0 * i.astype(np.float64) + 1.0) / n
    phi = 2.0 * np.pi * inv
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def make_layout(spec: str, *, radius: float | None = None, fov: float | None = None) -> list[View]:
    """The views of ``spec``: ``zero123pp``, ``orbit:N``, ``sphere:N`` or a path to a JSON file.

    ``radius`` (canonical units) and ``fov`` (degrees) override the layout's defaults; the
    default radius frames the whole canonical box (:func:`framing_radius`).

    A JSON file holds a list of poses (or ``{"views": [...]}``, so a ``cameras.json`` written
    by ``render.views`` can be reused). Each pose is one of
    ``{"azimuth": deg, "elevation": deg[, "radius": r][, "fov": deg]}``,
    ``{"matrix_world": 4x4 Blender camera-to-world[, "fov": deg]}`` or
    ``{"world_to_camera": 4x4 OpenCV[, "fov": deg]}``.
    """
    name, _, arg = spec.partition(":")
    if name == "zero123pp" and not arg:
        f = ZERO123PP_FOV if fov is None else fov
        r = framing_radius(f) if radius is None else radius
        return [_spherical(a, e, r, f) for a, e in zip(ZERO123PP_AZIMUTHS, ZERO123PP_ELEVATIONS)]
    if name in ("orbit", "sphere") and arg:
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"layout {spec!r}: N must be a positive integer, got {arg!r}")
        f = DEFAULT_FOV if fov is None else fov
        r = framing_radius(f) if radius is None else radius
        if name == "orbit":
            return [_spherical(360.0 * k / n, ORBIT_ELEVATION, r, f) for k in range(n)]
        views = []
        for x, y, z in hammersley_sphere(n):
            views.append(_spherical(math.degrees(math.atan2(x, -y)), math.degrees(math.asin(z)), r, f))
        return views
    path = Path(spec)
    if path.suffix.lower() == ".json":
        return _layout_from_json(path, radius=radius, fov=fov)
    raise ValueError(
        f"layout must be 'zero123pp', 'orbit:N', 'sphere:N' or a .json file of poses, got {spec!r}"
    )


def _layout_from_json(path: Path, *, radius: float | None, fov: float | None) -> list[View]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"layout file {str(path)!r} cannot be read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"layout file {str(path)!r} is not valid JSON: {exc}") from exc
    poses = data.get("views") if isinstance(data, dict) else data
    if not isinstance(poses, list) or not poses:
        raise ValueError(f"layout file {str(path)!r} must hold a non-empty list of poses (or {{'views': [...]}})")
    views = []
    for k, pose in enumerate(poses):
        if not isinstance(pose, dict):
            raise ValueError(f"layout file {str(path)!r}: pose {k} must be an object, got {type(pose).__name__}")
        f = float(pose.get("fov", DEFAULT_FOV if fov is None else fov))
        if "matrix_world" in pose:
            views.append(_from_matrix(pose["matrix_world"], f))
        elif "world_to_camera" in pose:
            views.append(_from_matrix(matrix_world_from_opencv(np.asarray(pose["world_to_camera"], dtype=float)), f))
        elif "azimuth" in pose and "elevation" in pose:
            r = float(pose.get("radius", framing_radius(f) if radius is None else radius))
            views.append(_spherical(float(pose["azimuth"]), float(pose["elevation"]), r, f))
        else:
            raise ValueError(
                f"layout file {str(path)!r}: pose {k} needs 'azimuth' + 'elevation', 'matrix_world' "
                f"or 'world_to_camera', got keys {sorted(pose)}"
            )
    return views
