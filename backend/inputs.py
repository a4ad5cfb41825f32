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
        ``check(data: bytes, label: str) -> suffix``: raises a :class:`backend.errors.MeshsmithError`
        (4xx) for a file that cannot be used, else the file suffix to store it under.
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


def _check_mesh(data: bytes, label: str) -> str:
    from backend.mesh.io import load_mesh_bytes, sniff_format

    load_mesh_bytes(data, name=label)
    return sniff_format(data)


def _load_mesh(path: Path):
    from backend.mesh.io import load_mesh

    return load_mesh(path)


def _check_source(data: bytes, label: str) -> str:
    from backend.mesh.io import sniff_format
    from backend.mesh.texture.source import load_colour_source_bytes

    load_colour_source_bytes(data, name=label)
    return "zip" if data[:4] == b"PK\x03\x04" else sniff_format(data)


def _load_source(path: Path):
    from backend.mesh.texture.source import load_colour_source

    return load_colour_source(path, name=f"the source ({path.name})")


def _check_views(data: bytes, label: str) -> str:
    from backend.mesh.texture.projection import load_views_bytes

    load_views_bytes(data, name=label)
    return "zip"


def _load_views(path: Path):
    from backend.mesh.texture.projection import load_views

    return load_views(path)


INPUT_KINDS: dict[str, InputKind] = {
    kind.name: kind for kind in (
        InputKind("mesh", "the mesh to work on: GLB, OBJ, PLY or STL", _check_mesh, _load_mesh, "input"),
        InputKind("source", "a coloured mesh to bake from: GLB with its textures, PLY with vertex colours, "
                  "or a ZIP of an OBJ with its MTL and images", _check_source, _load_source, "source"),
        InputKind("views", "a ZIP of posed views: cameras.json (render/'s format) and the images it names",
                  _check_views, _load_views, "views"),
    )
}
