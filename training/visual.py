"""Pictures of meshes without a renderer: shaded point splats, and sheets of results beside references."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.mesh.metrics import sample_surface, surface_area


def shade(vertices: np.ndarray, faces: np.ndarray, size: int = 192, *, azimuth: float = 35.0,
          elevation: float = 20.0, points: int = 120_000) -> np.ndarray:
    """An (size, size) grey image of the mesh seen from (azimuth, elevation), orthographic, over ``[-1, 1]``.

    Surface samples are splatted with a z-buffer and lit by their face normal (headlight).
    """
    img = np.ones((size, size), dtype=np.float32)
    if len(faces) == 0 or not surface_area(vertices, faces) > 0:     # nothing to see (a model can write flat faces)
        return img
    p, fid = sample_surface(vertices, faces, points, seed=0)
    t = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)[fid]]
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    a, e = np.radians(azimuth), np.radians(elevation)
    # Camera frame as in backend.conventions: the camera sits at r (cos e sin a, -cos e cos a, sin e).
    forward = -np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    x, y, depth = p @ right, p @ up, p @ forward
    u = np.clip(((x + 1.0) / 2.0 * (size - 1)).round().astype(int), 0, size - 1)
    v = np.clip(((1.0 - y) / 2.0 * (size - 1)).round().astype(int), 0, size - 1)
    pix = v * size + u
    order = np.lexsort((depth, pix))                       # nearest first within each pixel
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    keep = order[first]
    light = 0.25 + 0.75 * np.abs(n[keep] @ forward)
    img.reshape(-1)[pix[keep]] = light
    return img


def comparison_sheet(panels: list[tuple], path: Path, title: str = "") -> None:
    """A PNG: one row per asset, result and reference from two sides each. ``panels``: (name, v, f, ref_v, ref_f)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(panels)
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2.1 * rows + 0.4), squeeze=False)
    for r, (name, v, f, rv, rf) in enumerate(panels):
        for c, (verts, fcs, az, label) in enumerate([(v, f, 35, "result"), (v, f, 215, "result, back"),
                                                     (rv, rf, 35, "reference"), (rv, rf, 215, "reference, back")]):
            ax = axes[r][c]
            ax.imshow(shade(verts, fcs, azimuth=az), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(name[-28:], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def methods_sheet(panels: list[tuple], path: Path, title: str = "") -> None:
    """A PNG: one row per asset, one column per method, then the reference.

    ``panels``: ``(name, {label: (vertices, faces)}, (ref_vertices, ref_faces))``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(panels[0][1]) + ["reference"]
    fig, axes = plt.subplots(len(panels), len(labels), figsize=(2.2 * len(labels), 2.2 * len(panels) + 0.4),
                             squeeze=False)
    for r, (name, results, reference) in enumerate(panels):
        for c, label in enumerate(labels):
            v, f = reference if label == "reference" else results[label]
            ax = axes[r][c]
            ax.imshow(shade(v, f), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(name.split("__")[-1][:24], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
