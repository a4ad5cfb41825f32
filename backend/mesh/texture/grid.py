"""Posed views from one image: a Zero123++-style grid of six views, three rows of two.

Zero123++ (v1.2) generates six views of an object on a grey background, tiled row by row
into one image: view ``k`` sits at row ``k // 2``, column ``k % 2``. Their poses are fixed:
azimuths 30, 90, ..., 330 degrees, elevations alternating 20 and -10 degrees, a 30 degree
field of view (:data:`render.layouts.ZERO123PP_AZIMUTHS`; render/'s ``zero123pp`` layout
renders the same cameras). The object's scale is not known from a grid; it is taken to
fill the canonical box as render/ frames it.

Masks: the image's alpha when it has a transparent background, else every pixel that
differs from the background grey (the median colour of the tiles' borders) by more than
:data:`BACKGROUND_TOLERANCE`. Grids carry no normal maps.
"""

from __future__ import annotations

import io

import numpy as np

from backend.conventions import intrinsics_from_fov, world_to_camera_opencv
from backend.errors import BadViews
from backend.mesh.texture.projection import PosedViews, View

#: Largest colour distance (0..1, per channel max) still taken for background grey.
BACKGROUND_TOLERANCE = 0.06
COLUMNS, ROWS = 2, 3
MAX_PIXELS = 64_000_000


def grid_views_bytes(data: bytes, *, name: str = "the grid image") -> PosedViews:
    """Posed views from the bytes of a grid image (PNG, JPEG or WebP); raises :class:`BadViews`."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadViews(f"{name} is empty (0 bytes). Upload the PNG of a 3 x 2 grid of views.")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise BadViews(f"{name} is {width} x {height} pixels; a grid of six views needs far fewer "
                           f"(Zero123++ makes 640 x 960).")
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    except BadViews:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadViews(f"{name} is not a readable image. Upload a PNG, JPEG or WebP of a 3 x 2 grid of views.") from exc
    if width * ROWS != height * COLUMNS or width % COLUMNS:
        raise BadViews(f"{name} is {width} x {height} pixels; a grid of six square views is two views wide and "
                       f"three high (e.g. 640 x 960, as Zero123++ makes).")
    return grid_views(rgba)


def grid_views(rgba: np.ndarray) -> PosedViews:
    """Posed views from an (H, W, 4) float image of a 3 x 2 grid (see the module doc)."""
    from render.layouts import make_layout

    size = rgba.shape[1] // COLUMNS
    tiles = [rgba[r * size:(r + 1) * size, c * size:(c + 1) * size] for r in range(ROWS) for c in range(COLUMNS)]
    transparent = any((t[..., 3] < 0.99).mean() > 0.05 for t in tiles)
    if not transparent:
        border = np.concatenate([np.concatenate([t[0], t[-1], t[:, 0], t[:, -1]]) for t in tiles])[:, :3]
        grey = np.median(border, axis=0)
    views = []
    for k, (tile, pose) in enumerate(zip(tiles, make_layout("zero123pp"))):
        tile = tile.copy()
        if not transparent:
            distance = np.abs(tile[..., :3] - grey).max(-1)
            tile[..., 3] = _smooth(distance > BACKGROUND_TOLERANCE)
        if tile[..., 3].max() < 0.5:
            raise BadViews(f"view {k + 1} of the grid (row {k // 2 + 1}, column {k % 2 + 1}) shows nothing but "
                           "background; each of the six views must show the object.")
        views.append(View(image=tile.astype(np.float32), intrinsics=intrinsics_from_fov(pose.fov, size, size),
                          world_to_camera=world_to_camera_opencv(pose.matrix_world), name=f"grid_{k}"))
    return PosedViews(views)


def _smooth(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask with isolated pixels removed and a one-pixel soft edge (3 x 3 majority, then mean)."""
    m = mask.astype(np.float32)
    padded = np.pad(m, 1)
    box = sum(padded[1 + dy:1 + dy + m.shape[0], 1 + dx:1 + dx + m.shape[1]]
              for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    majority = (box > 0.5).astype(np.float32)
    padded = np.pad(majority, 1)
    return sum(padded[1 + dy:1 + dy + m.shape[0], 1 + dx:1 + dx + m.shape[1]]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
