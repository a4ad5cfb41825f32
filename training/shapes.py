"""Procedural shapes for training: smooth unions and differences of random primitives, painted.

The furniture corpus is boxes, legs and panels; these add what it lacks: rounded, organic and
hollowed shapes (a smooth union of ellipsoids, capsules, rounded boxes and tori, with some
primitives carved out, so a part of the shape is a concavity no silhouette shows). Each is
meshed by marching cubes from its signed distance on a grid, coloured by a smooth random
field, and written as a PLY with vertex colours (render/ wires those into its material).

    python -m training.data shapes --count 300 --out data/shapes      (a corpus: manifest.jsonl + meshes/)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GRID = 64
KINDS = ("ellipsoid", "capsule", "box", "torus")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _primitive(kind: str, p: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, approximate for ellipsoids) of a primitive at the origin."""
    if kind == "ellipsoid":
        k = np.linalg.norm(p / size, axis=-1)
        return (k - 1.0) * size.min()
    if kind == "capsule":
        q = p.copy()
        q[..., 2] -= np.clip(q[..., 2], -size[2], size[2])
        return np.linalg.norm(q, axis=-1) - size[0]
    if kind == "box":
        r = 0.25 * size.min()
        q = np.abs(p) - (size - r)
        return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0) - r
    # torus in the xy plane: ring radius size[0], tube radius size[2]
    ring = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - size[0]
    return np.sqrt(ring ** 2 + p[..., 2] ** 2) - min(size[2], 0.6 * size[0])


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def shape_field(rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    """The signed distance of one random shape at ``points`` (n, 3)."""
    field = None
    for i in range(int(rng.integers(2, 6))):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        size = rng.uniform(0.12, 0.5, size=3)
        centre = rng.uniform(-0.35, 0.35, size=3)
        local = (points - centre) @ _rotation(rng)
        d = _primitive(kind, local, size)
        field = d if field is None else _smooth_union(field, d, float(rng.uniform(0.02, 0.12)))
    for _ in range(int(rng.integers(0, 3))):       # carve: concavities and holes
        kind = KINDS[int(rng.integers(3))]
        size = rng.uniform(0.08, 0.3, size=3)
        centre = rng.uniform(-0.4, 0.4, size=3)
        d = _primitive(kind, (points - centre) @ _rotation(rng), size)
        field = np.maximum(field, -d)
    return field


def make_shape(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, vertex colours uint8) of shape ``seed``; the largest piece only."""
    from backend.mesh.metrics import connected_components
    from backend.mesh.remesh.marching import marching_cubes

    rng = np.random.default_rng([seed, 7])
    axis = np.linspace(-1.0, 1.0, GRID)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    field = shape_field(rng, grid).reshape(GRID, GRID, GRID)
    padded = np.pad(field, 1, constant_values=1.0)
    vertices, faces = marching_cubes(-padded, 0.0)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        raise ValueError(f"shape {seed} is empty")
    count, labels = connected_components(faces)
    if count > 1:
        faces = faces[labels == np.argmax(np.bincount(labels))]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    vertices = (vertices[used] - 1.0) * (2.0 / (GRID - 1)) - 1.0
    faces = remap[faces]
    t = vertices[faces]
    if np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() < 0:
        faces = faces[:, ::-1]
    # Colour: a base hue per shape plus a few smooth waves, in 0.15..0.9.
    base = rng.uniform(0.2, 0.8, size=3)
    colour = np.tile(base, (len(vertices), 1))
    for _ in range(3):
        direction = rng.normal(size=3)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.05, 0.25, size=3)
        colour += amp * np.sin(vertices @ direction * rng.uniform(2, 8) + phase)[:, None]
    colours = np.clip(np.round(np.clip(colour, 0.15, 0.9) * 255), 0, 255).astype(np.uint8)
    return vertices, np.ascontiguousarray(faces), colours


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> None:
    """Binary little-endian PLY with uchar vertex colours, written atomically."""
    import os
    import tempfile

    header = (f"ply\nformat binary_little_endian 1.0\ncomment Meshsmith procedural shape\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    vdt = np.dtype([("p", "<f4", 3), ("c", "u1", 3)])
    v = np.empty(len(vertices), dtype=vdt)
    v["p"], v["c"] = vertices, colours
    fdt = np.dtype([("n", "u1"), ("i", "<i4", 3)])
    f = np.empty(len(faces), dtype=fdt)
    f["n"], f["i"] = 3, faces
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(header + v.tobytes() + f.tobytes())
    os.replace(tmp, path)


def make_shapes(out: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` shapes as ``out/meshes/shape_NNNN.ply`` (existing ones kept: resumable)."""
    from tqdm import tqdm

    paths = []
    for i in tqdm(range(count), desc="shapes", unit="shape"):
        path = Path(out) / "meshes" / f"shape_{seed:02d}_{i:04d}.ply"
        if not path.is_file():
            write_ply(path, *make_shape(seed * 100_000 + i))
        paths.append(path)
    return paths
