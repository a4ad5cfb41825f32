"""8-bit previews of normal and depth maps, and the contact sheet of all views of an asset."""

from __future__ import annotations

import numpy as np

#: Largest side of one cell of the contact sheet, pixels.
CELL = 192
#: Views per row of the contact sheet before it wraps.
COLUMNS = 6


def normal_preview(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> (H, W, 4) uint8: ``(n + 1) / 2`` as RGB, alpha = mask."""
    rgb = np.clip(np.round((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.dstack([rgb * mask[..., None], (mask * 255).astype(np.uint8)])


def depth_preview(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) depth -> (H, W, 4) uint8 grey, near bright, far dark, over the foreground's range."""
    grey = np.zeros(depth.shape, dtype=np.uint8)
    if mask.any():
        d = depth[mask]
        lo, hi = float(d.min()), float(d.max())
        scaled = 1.0 - (depth - lo) / max(hi - lo, 1e-12)
        grey[mask] = np.clip(np.round(40 + 215 * scaled[mask]), 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey, (mask * 255).astype(np.uint8)])


def contact_sheet(rgba: np.ndarray | None, geometry: list):
    """A PIL image: for each view a column of colour (if rendered), world normals and depth,
    over a light grey background; wraps after :data:`COLUMNS` views."""
    from PIL import Image

    n = len(geometry)
    h, w = geometry[0].mask.shape
    s = min(1.0, CELL / max(h, w))
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    rows_per_view = 3 if rgba is not None else 2
    cols = min(COLUMNS, n)
    bands = -(-n // cols)
    sheet = Image.new("RGBA", (cols * cw, bands * rows_per_view * ch), (235, 235, 235, 255))
    for k, geo in enumerate(geometry):
        cells = []
        if rgba is not None:
            cells.append(np.clip(np.round(rgba[k] * 255.0), 0, 255).astype(np.uint8))
        cells.append(normal_preview(geo.normal_world, geo.mask))
        cells.append(depth_preview(geo.depth, geo.mask))
        x = (k % cols) * cw
        y0 = (k // cols) * rows_per_view * ch
        for r, cell in enumerate(cells):
            im = Image.fromarray(cell, "RGBA").resize((cw, ch), Image.BILINEAR)
            sheet.alpha_composite(im, (x, y0 + r * ch))
    return sheet.convert("RGB")
