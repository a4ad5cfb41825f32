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
