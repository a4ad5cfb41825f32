"""The kinds of files a job takes, by upload field name: how each is checked, stored and loaded.

A pipeline names the inputs it accepts (:class:`backend.pipelines.Pipeline`); the job API
takes each as a multipart file field of the same name, checks it on arrival (so a broken
file is a 4xx answer with a sentence, not a failed job later), stores it in the job's folder
as ``<stored name>.<suffix>``, and the worker loads it back with :meth:`InputKind.load`.

========  =====================================================  =====================================
field     what                                                   loaded as
========  =====================================================  =====================================
mesh      the mesh to work on: GLB, OBJ, PLY or STL (sniffed)    :class:`backend.mesh.types.Mesh`
source    a coloured mesh: GLB (textures embedded), PLY with     :class:`backend.mesh.texture.source.ColourSource`
          vertex colours, or a ZIP of an OBJ + MTL + images
views     a ZIP of a render/ views folder: cameras.json + the    :class:`backend.mesh.texture.projection.PosedViews`
          images it names
grid      an image of six views in Zero123++'s 3 x 2 grid        :class:`backend.mesh.texture.projection.PosedViews`
points    a PLY point cloud (normals optional) or a mesh to      :class:`backend.mesh.points.PointCloud`
          sample one from
========  =====================================================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class InputKind:
    """One upload field.

    Attributes
    ----------
    name : str
        The multipart field name (and the key in the pipeline's ``inputs`` dict).
    description : str
        For people (``GET /v1/health``, error messages).
    check : callable
        ``check(data: bytes, label: str) -> Checked``: raises a :class:`backend.errors.MeshsmithError`
        (4xx) for a file that cannot be used, else the file suffix to store it under and the
        facts a pipeline's memory estimate needs (:class:`Checked`).
    load : callable
        ``load(path: Path) -> object`` for the pipeline.
    stored_as : str
        File stem in the job folder.
    """

    name: str
    description: str
    check: Callable[[bytes, str], str]
    load: Callable[[Path], Any]
    stored_as: str


@dataclass(frozen=True)
class Checked:
    """A checked upload: the suffix it is stored under and facts about it.

    ``facts``: for meshes ``faces``, ``vertices`` and ``area_ratio`` (surface area over the
    square of the bounding box's longest side: how much of a voxel grid the surface
    crosses); for views ``views`` and ``pixels`` (all images together).
    """

    suffix: str
    facts: dict[str, float]


#: Coordinates beyond this are refused: squares of them (areas) would overflow.
MAX_COORDINATE = 1e30


def mesh_facts(vertices, faces, label: str = "the mesh") -> dict[str, float]:
    """Faces, vertices and area ratio of a mesh; BadMesh for indices out of range or absurd coordinates."""
    import numpy as np

    from backend.errors import BadMesh

    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise BadMesh(f"{label} has face indices beyond its {len(vertices)} vertices: the file is damaged. "
                      "Export it again.")
    used = vertices[np.unique(faces)]
    far = float(np.abs(used).max()) if len(used) else 0.0
    if not far <= MAX_COORDINATE:
        raise BadMesh(f"{label} has coordinates as large as {far:.3g}: too large to work with. Scale it down (or "
                      "fix the stray vertices) and export it again.")
    t = vertices[faces]
    area = 0.5 * float(np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())
    side = float((used.max(axis=0) - used.min(axis=0)).max()) if len(used) else 0.0
    return {"faces": int(len(faces)), "vertices": int(len(vertices)),
            "area_ratio": round(area / side**2, 4) if side > 0 else 0.0}


#: A mesh whose size is below this share of its distance from the origin is refused: its
#: coordinates cannot tell its points apart (float32 files keep ~7 significant digits).
MIN_SPAN_SHARE = 1e-5


def check_surface(vertices, faces, facts: dict, label: str) -> None:
    """Refuse, with a sentence, a mesh no pipeline can work on: no area, or too far out for its size."""
    import numpy as np

    from backend.errors import BadMesh

    if facts["area_ratio"] <= 0.0:
        raise BadMesh(f"{label} has no surface: all its {facts['faces']:,} triangles have zero area (their corners "
                      "coincide or lie on one line, or the object is scaled to zero). Check the object's scale and "
                      "export it again.")
    used = np.asarray(vertices, dtype=np.float64)[np.unique(np.asarray(faces))]
    span = float((used.max(axis=0) - used.min(axis=0)).max())
    far = float(np.abs(used).max())
    if span < MIN_SPAN_SHARE * far:
        raise BadMesh(f"{label} is {span:.3g} across but lies {far:.3g} from the origin: too far for its coordinates "
                      "to tell its points apart. Move it to the origin (in Blender: Object > Clear > Location, or "
                      "Apply > Location) and export it again.")


def _check_mesh(data: bytes, label: str) -> Checked:
    from backend.mesh.io import load_mesh_bytes, sniff_format

    mesh = load_mesh_bytes(data, name=label)
    facts = mesh_facts(mesh.vertices, mesh.faces, label)
    check_surface(mesh.vertices, mesh.faces, facts, label)
    return Checked(sniff_format(data), facts)


def _load_mesh(path: Path):
    from backend.mesh.io import load_mesh

    return load_mesh(path)


def _check_source(data: bytes, label: str) -> Checked:
    from backend.mesh.io import sniff_format
    from backend.mesh.texture.source import load_colour_source_bytes

    from backend.errors import BadMesh, BadSource

    source = load_colour_source_bytes(data, name=label)
    try:
        facts = mesh_facts(source.vertices, source.faces, label)
    except BadMesh as exc:
        raise BadSource(exc.message) from None
    return Checked("zip" if data[:4] == b"PK\x03\x04" else sniff_format(data), facts)


def _load_source(path: Path):
    from backend.mesh.texture.source import load_colour_source

    return load_colour_source(path, name=f"the source ({path.name})")


def _check_views(data: bytes, label: str) -> Checked:
    from backend.mesh.texture.projection import load_views_bytes

    views = load_views_bytes(data, name=label).views
    return Checked("zip", {"views": len(views), "pixels": int(sum(v.image.shape[0] * v.image.shape[1] for v in views))})


def _load_views(path: Path):
    from backend.mesh.texture.projection import load_views

    return load_views(path)


def _check_grid(data: bytes, label: str) -> Checked:
    from backend.mesh.texture.grid import grid_views_bytes

    views = grid_views_bytes(data, name=label).views
    suffix = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg" if data[:3] == b"\xff\xd8\xff" else "img"
    return Checked(suffix, {"views": len(views), "pixels": int(sum(v.image.shape[0] * v.image.shape[1] for v in views))})


def _check_points(data: bytes, label: str) -> Checked:
    from backend.mesh.io import sniff_format
    from backend.mesh.points import load_points_bytes

    cloud = load_points_bytes(data, name=label)
    return Checked(sniff_format(data), {"points": int(len(cloud.points)), "faces": 0})


def _load_points(path: Path):
    from backend.mesh.points import load_points_bytes

    return load_points_bytes(path.read_bytes(), name=f"the points ({path.name})")


def _load_grid(path: Path):
    from backend.mesh.texture.grid import grid_views_bytes

    return grid_views_bytes(path.read_bytes(), name=path.name)


INPUT_KINDS: dict[str, InputKind] = {
    kind.name: kind for kind in (
        InputKind("mesh", "the mesh to work on: GLB, OBJ, PLY or STL", _check_mesh, _load_mesh, "input"),
        InputKind("source", "a coloured mesh to bake from: GLB with its textures, PLY with vertex colours, "
                  "or a ZIP of an OBJ with its MTL and images", _check_source, _load_source, "source"),
        InputKind("views", "a ZIP of posed views: cameras.json (render/'s format) and the images it names",
                  _check_views, _load_views, "views"),
        InputKind("points", "a point cloud (PLY, with or without normals) or a mesh to sample one from (GLB, OBJ, "
                  "PLY or STL)", _check_points, _load_points, "points"),
        InputKind("grid", "an image of six views in a 3 x 2 grid with Zero123++'s fixed poses (PNG, JPEG or "
                  "WebP; grey or transparent background)", _check_grid, _load_grid, "grid"),
    )
}
