"""The optional CUDA path: point-to-mesh distances with cubvh (a CUDA BVH), when it imports.

cubvh (https://github.com/ashawkey/cubvh) is not on PyPI and needs CUDA, so it is never a
requirement: :func:`available` says whether this process can use it, and everything has a
CPU path (:mod:`backend.mesh.remesh.distance`) that gives the same results to float32 precision.
Set ``MESHSMITH_DEVICE=cpu`` to keep the CPU path even where cubvh works.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

#: cubvh refuses BVHs of fewer triangles than this.
MIN_TRIANGLES = 9

#: Query points sent to the GPU at once (12 bytes in, 16 out per point).
GPU_CHUNK = 1 << 22


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when cubvh imports, torch sees a CUDA device, and ``MESHSMITH_DEVICE`` is not ``cpu``."""
    if os.environ.get("MESHSMITH_DEVICE", "").lower() == "cpu":
        return False
    try:
        import cubvh  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class MeshDistance:
    """Unsigned distance to a triangle mesh on the GPU: the BVH is built once, queried often.

    Raises
    ------
    RuntimeError
        cubvh is not usable here (see :func:`available`).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        if not available():
            raise RuntimeError("cubvh with a CUDA device is not available in this process")
        import cubvh

        self._bvh = cubvh.cuBVH(np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.int32))

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance (k,) float32 and nearest face (k,) int64 of ``points`` (k, 3)."""
        import torch

        distance = np.empty(len(points), dtype=np.float32)
        face = np.empty(len(points), dtype=np.int64)
        for i in range(0, len(points), GPU_CHUNK):
            query = torch.as_tensor(np.asarray(points[i:i + GPU_CHUNK], dtype=np.float32), device="cuda")
            d, f, _ = self._bvh.unsigned_distance(query, return_uvw=False)
            distance[i:i + len(query)] = d.cpu().numpy()
            face[i:i + len(query)] = f.cpu().numpy()
        return distance, face
