"""Pack a folder of posed images (a ``render/`` views folder) into the zip the texture pipeline takes; stdlib only.

The folder is what ``python -m render.views`` writes: ``cameras.json`` (intrinsics, OpenCV
world-to-camera and Blender ``matrix_world`` per view) and, per view, the files named in
``views[i].files`` (``rgb`` at least). The zip holds ``cameras.json`` and those files at
its root, under the same names; nothing else from the folder is sent.

Frames: ``normalization.file_to_world`` in ``cameras.json`` takes the rendered asset *file's*
coordinates into the cameras' world, and the backend applies it to the uploaded mesh. The
add-on's upload is always a GLB, glTF axes of Blender coordinates, which is the asset file's
frame only for Y-up formats (glTF, OBJ). For a Z-up file (PLY, STL: ``file_up_axis`` "Z")
the packed ``cameras.json`` says so for the upload instead: ``file_to_world`` gains the
glTF -> Blender rotation and ``file_up_axis`` becomes "Y". The active mesh is then expected
to hold the asset as Blender imports it (its object space), whatever the file format.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath

from .errors import MeshsmithError

CAMERAS = "cameras.json"
#: Already-compressed formats are stored; everything else (JSON, .npy) is deflated.
_STORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
_HOW = "Texture from posed images needs a folder written by render/ (python -m render.views ... with colour)."


#: Blender (x, y, z) from glTF (X, Y, Z): x = X, y = -Z, z = Y (backend/conventions.py, BLENDER_FROM_GLTF).
_BLENDER_FROM_GLTF = ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def for_gltf_upload(cameras: dict) -> dict:
    """``cameras`` with its normalization describing a glTF-axes upload of the asset (see the module doc).

    A record without ``normalization.file_to_world`` or with a Y-up file is returned unchanged.
    """
    norm = cameras.get("normalization")
    if not isinstance(norm, dict) or norm.get("file_up_axis") != "Z" or norm.get("file_to_world") is None:
        return cameras
    matrix = norm["file_to_world"]
    try:
        rows = [[float(v) for v in row] for row in matrix]
        if len(rows) != 4 or any(len(row) != 4 for row in rows):
            raise ValueError
    except (TypeError, ValueError):
        raise MeshsmithError(f"{CAMERAS}: normalization.file_to_world must be a 4 x 4 matrix, got {matrix!r}.") from None
    # A Z-up file's coordinates are Blender's: world = file_to_world @ blender = file_to_world @ B @ gltf.
    product = [[sum(rows[r][k] * _BLENDER_FROM_GLTF[k][c] for k in range(4)) for c in range(4)] for r in range(4)]
    return {**cameras, "normalization": {**norm, "file_to_world": product, "file_up_axis": "Y"}}


def _safe_name(name: object, view: int, key: str) -> str:
    """A file name from cameras.json that stays inside the folder."""
    if not isinstance(name, str) or not name:
        raise MeshsmithError(f"{CAMERAS}: view {view} names its {key!r} file with {name!r}, which is not a file name.")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise MeshsmithError(f"{CAMERAS}: view {view} names {name!r}; files must be inside the views folder.")
    return path.as_posix()


def view_files(cameras: dict) -> list[str]:
    """Every file the views of a ``cameras.json`` record name, in order, without repeats.

    Raises :class:`MeshsmithError` when there are no views or a view has no ``rgb`` image.
    """
    views = cameras.get("views") if isinstance(cameras, dict) else None
    if not isinstance(views, list) or not views:
        raise MeshsmithError(f"{CAMERAS} lists no views. {_HOW}")
    names: list[str] = []
    for k, view in enumerate(views):
        files = view.get("files") if isinstance(view, dict) else None
        if not isinstance(files, dict) or "rgb" not in files:
            raise MeshsmithError(
                f"{CAMERAS}: view {k} has no colour image (files.rgb); the views were rendered without colour. {_HOW}"
            )
        for key, name in files.items():
            name = _safe_name(name, k, key)
            if name not in names:
                names.append(name)
    return names


def pack_views(folder: str | Path) -> bytes:
    """The zip (bytes) of ``folder``'s ``cameras.json`` and the files its views name.

    Raises :class:`MeshsmithError`, with a sentence for the user, when the folder is not set,
    missing, has no or a broken ``cameras.json``, or lacks a file it names.
    """
    root, cameras, names = check_folder(folder)
    cameras = for_gltf_upload(cameras)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(CAMERAS, json.dumps(cameras, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        for name in names:
            stored = PurePosixPath(name).suffix.lower() in _STORED_SUFFIXES
            archive.write(root / name, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def check_folder(folder: str | Path) -> tuple[Path, dict, list[str]]:
    """What :func:`pack_views` checks, without packing (quick: for the click): (folder, cameras, files)."""
    if not str(folder).strip():
        raise MeshsmithError(f"Choose the folder of posed images in the Meshsmith panel. {_HOW}")
    root = Path(folder)
    if not root.is_dir():
        raise MeshsmithError(f"The posed-images folder {str(root)!r} does not exist.")
    cameras_path = root / CAMERAS
    if not cameras_path.is_file():
        raise MeshsmithError(f"The folder {str(root)!r} has no {CAMERAS}. {_HOW}")
    try:
        cameras = json.loads(cameras_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MeshsmithError(f"{cameras_path} cannot be read as JSON ({exc}).") from exc
    names = view_files(cameras)
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MeshsmithError(f"{CAMERAS} in {str(root)!r} names files that are not there: {shown}.")
    return root, cameras, names


#: The key of ``cameras.json`` under which Render Views records where its object is.
PLACEMENT = "blender_placement"


def placement(folder: str | Path) -> list[list[float]] | None:
    """The 4 x 4 matrix taking the views' world to the Blender scene, when Render Views wrote the folder.

    Render Views frames an object in the canonical box (centred, longest side 1.9) and records
    ``{"object": name, "matrix_world": ...}``; a result made from the views, placed with this
    matrix, lands over the object. None for any other folder (the result stays in the cameras' world).
    """
    try:
        cameras = json.loads((Path(folder) / CAMERAS).read_text(encoding="utf-8"))
        matrix = cameras[PLACEMENT]["matrix_world"]
        rows = [[float(v) for v in row] for row in matrix]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if len(rows) == 4 and all(len(r) == 4 for r in rows) else None
