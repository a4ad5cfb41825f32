"""Posed views (render/'s ``cameras.json`` format) and baking colour from them onto a surface.

Views
    A folder or ZIP holding ``cameras.json`` and the images it names, as ``render.views``
    writes it: ``views[i].intrinsics`` (``fx, fy, cx, cy, width, height``),
    ``views[i].world_to_camera`` (4 x 4, OpenCV: x right, y down, z forward; or, failing it,
    Blender's camera-to-world ``matrix_world``), ``views[i].files.rgb`` (an RGBA or RGB image,
    8-bit sRGB, straight alpha) and optionally ``views[i].files.normal_world`` (an (H, W, 3)
    float ``.npy`` of world-frame unit normals). Pixel ``(row v, column u)`` has its centre at
    ``(u, v)`` (:mod:`backend.conventions`).

Frames
    The cameras live in render/'s world frame (Blender's, Z-up, the asset normalized into the
    canonical box). A mesh handed to the backend is in its file's frame; when ``cameras.json``
    has ``normalization.file_to_world`` (render/ writes it) that matrix takes the mesh into the
    cameras' world. Without it the mesh is taken to be glTF-axes (Y-up, as uploads are) and
    is normalized into the canonical box by its own bounding box, as render/ would have done.

Baking (:func:`bake_from_views`)
    Each surface point (a texel's 3D point) is projected into every view. Visibility is a
    depth test against a z-buffer of the *target* mesh rendered here per view (numpy,
    perspective-correct depth, no Python loop per pixel), so the test never depends on depth
    maps of another geometry. The four pixels around the projection are used as in bilinear
    filtering, each only if its own depth agrees with the point's within
    ``depth_tolerance`` and it is opaque (alpha > 0.5): a point at an occlusion edge or on the
    silhouette takes the pixels that really see it, with a confidence equal to their share of
    the bilinear weight. Views are blended with the weight ``confidence * cos^power``, the
    cosine between the surface normal and the direction to the camera (grazing views blur and
    stretch, so they count little). Points no view sees get weight 0; :mod:`backend.mesh.texture.bake`
    fills them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from backend.conventions import BLENDER_FROM_GLTF, CANONICAL_EXTENT, Normalization, intrinsics_matrix
from backend.errors import BadViews
from backend.mesh.texture.atlas import box_pixels
from backend.progress import ProgressFn, null_progress

log = logging.getLogger(__name__)

CAMERAS_FILE = "cameras.json"
#: Caps on what a views upload may hold.
MAX_VIEWS = 64
MAX_IMAGE_SIDE = 4096
#: Uncompressed size a views ZIP may unpack to, as a multiple of its own size (zip bombs).
ZIP_MAX_RATIO = 200
#: Default depth agreement for the visibility test, in canonical units (the box spans 1.9).
DEPTH_TOLERANCE = 0.01
#: Pixels a z-buffer chunk considers at once.
CHUNK_PAIRS = 1 << 21


@dataclass(frozen=True)
class View:
    """One posed image.

    Attributes
    ----------
    image : (H, W, 4) float32
        sRGB RGBA in [0, 1], straight alpha (alpha 1 when the image has none).
    intrinsics : dict
        ``fx, fy, cx, cy, width, height``.
    world_to_camera : (4, 4) float64
        OpenCV convention.
    normal_world : (H, W, 3) float32 or None
        World-frame unit normals per pixel, when the views came with them.
    name : str
    """

    image: np.ndarray
    intrinsics: dict
    world_to_camera: np.ndarray
    normal_world: np.ndarray | None = None
    name: str = ""


@dataclass(frozen=True)
class PosedViews:
    """Posed views and how a mesh's file frame maps into their world.

    Attributes
    ----------
    views : list of View
    file_to_world : (4, 4) float64 or None
        From the mesh file's frame to the cameras' world; None: see the module doc.
    """

    views: list[View]
    file_to_world: np.ndarray | None = None

    def mesh_to_world(self, vertices: np.ndarray) -> np.ndarray:
        """The (4, 4) matrix taking ``vertices`` (n, 3, file frame) into the cameras' world."""
        if self.file_to_world is not None:
            return self.file_to_world
        norm = Normalization.fit(np.asarray(vertices) @ BLENDER_FROM_GLTF.T, CANONICAL_EXTENT)
        m = np.eye(4)
        m[:3, :3] = norm.scale * BLENDER_FROM_GLTF
        m[:3, 3] = -norm.scale * norm.center
        return m


# -- loading ------------------------------------------------------------------------------


def load_views(path: str | os.PathLike) -> PosedViews:
    """Posed views from a folder holding ``cameras.json`` or from a ZIP of such a folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / CAMERAS_FILE).is_file():
            raise BadViews(f"The folder {path} has no {CAMERAS_FILE}. Point at a folder written by render/ "
                           "(python -m render.views), which holds cameras.json and the images it names.")

        def read(rel: str) -> bytes:
            target = (path / rel).resolve()
            if path.resolve() not in target.parents:
                raise BadViews(f"{CAMERAS_FILE} names {rel!r}, which is outside the folder {path}.")
            try:
                return target.read_bytes()
            except OSError as exc:
                raise BadViews(f"{CAMERAS_FILE} names {rel!r}, but it cannot be read ({exc.strerror}).") from exc

        return _parse(read(CAMERAS_FILE), read, str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadViews(f"Cannot read the views {path}: {exc.strerror}.") from exc
    return load_views_bytes(data, name=path.name)


def load_views_bytes(data: bytes, *, name: str = "the views upload") -> PosedViews:
    """Posed views from the bytes of a ZIP (``cameras.json`` and its images, at the root or in one folder).

    Raises
    ------
    BadViews
        Not a ZIP, a path pointing out of the archive, no or a broken ``cameras.json``, an image
        that is missing or does not decode.
    """
    if not data:
        raise BadViews(f"{name} is empty (0 bytes). Zip the folder of views (cameras.json + images) and upload it.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, NotImplementedError, OSError, EOFError) as exc:
        log.info("opening %s as a ZIP failed: %r", name, exc)
        raise BadViews(f"{name} is not a readable ZIP archive. Zip the folder of views (cameras.json + images) "
                       "again and upload the .zip.") from exc
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        raw = info.filename.replace("\\", "/")
        parts = raw.split("/")
        if raw.startswith("/") or ":" in parts[0] or ".." in parts:
            raise BadViews(f"{name} contains the path {info.filename!r}, which points outside the archive. "
                           "Zip the views folder again from its own folder.")
        if not raw.endswith("/"):
            members[str(PurePosixPath(*[p for p in parts if p not in ("", ".")]))] = info
    total = sum(i.file_size for i in members.values())
    if total > ZIP_MAX_RATIO * max(len(data), 1 << 20):
        raise BadViews(f"{name} unpacks to {total / 2**20:.0f} MB, far more than its size; it is not a views folder.")
    cameras = [m for m in members if PurePosixPath(m).name == CAMERAS_FILE]
    if len(cameras) != 1:
        what = "no" if not cameras else f"{len(cameras)}"
        raise BadViews(f"{name} holds {what} {CAMERAS_FILE}; it needs exactly one, next to the images it names "
                       "(the folder render/ writes).")
    base = PurePosixPath(cameras[0]).parent

    def read(rel: str) -> bytes:
        key = str(base / rel) if str(base) != "." else str(PurePosixPath(rel))
        if key not in members:
            raise BadViews(f"{CAMERAS_FILE} in {_mid(name)} names {rel!r}, but the ZIP has no such file.")
        try:
            return archive.read(members[key])
        except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError, NotImplementedError,
                zlib.error) as exc:
            log.info("unpacking %s from %s failed: %r", rel, name, exc)
            raise BadViews(f"{name}: {rel!r} cannot be unpacked (the ZIP is damaged or uses an unusual "
                           "compression). Zip the folder again.") from exc

    return _parse(read(CAMERAS_FILE), read, name)


def _mid(name: str) -> str:
    """``name`` inside a sentence: "The uploaded views file" -> "the uploaded views file"."""
    return name[0].lower() + name[1:] if name.startswith("The ") else name


def _parse(cameras_bytes: bytes, read, name: str) -> PosedViews:
    try:
        doc = json.loads(cameras_bytes)
    except RecursionError:
        raise BadViews(f"{CAMERAS_FILE} in {_mid(name)} is nested too deeply to be a camera file.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" (it stops being JSON at line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise BadViews(f"{CAMERAS_FILE} in {_mid(name)} is not valid JSON{where}.") from exc
    entries = doc.get("views") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BadViews(f"{CAMERAS_FILE} in {_mid(name)} must hold a non-empty list 'views' (render/'s format).")
    if len(entries) > MAX_VIEWS:
        raise BadViews(f"{CAMERAS_FILE} in {_mid(name)} lists {len(entries)} views; at most {MAX_VIEWS} are accepted.")
    views = [_parse_view(k, entry, read, name) for k, entry in enumerate(entries)]
    file_to_world = None
    norm = doc.get("normalization")
    if isinstance(norm, dict) and norm.get("file_to_world") is not None:
        file_to_world = _matrix(norm["file_to_world"], f"normalization.file_to_world in {_mid(name)}")
    return PosedViews(views, file_to_world)


def _parse_view(k: int, entry, read, name: str) -> View:
    where = f"view {k} of {CAMERAS_FILE} in {_mid(name)}"
    if not isinstance(entry, dict):
        raise BadViews(f"{where} must be an object, got {type(entry).__name__}.")
    intr = entry.get("intrinsics")
    keys = ("fx", "fy", "cx", "cy", "width", "height")
    if not isinstance(intr, dict) or not all(isinstance(intr.get(k2), (int, float)) for k2 in keys):
        raise BadViews(f"{where} needs 'intrinsics' with numbers {', '.join(keys)}.")
    intr = {k2: float(intr[k2]) for k2 in keys}
    intr["width"], intr["height"] = int(intr["width"]), int(intr["height"])
    if not (0 < intr["width"] <= MAX_IMAGE_SIDE and 0 < intr["height"] <= MAX_IMAGE_SIDE) or intr["fx"] <= 0 \
            or intr["fy"] <= 0:
        raise BadViews(f"{where}: intrinsics must have positive focal lengths and a size up to "
                       f"{MAX_IMAGE_SIDE} px, got {intr}.")
    if "world_to_camera" in entry:
        w2c = _matrix(entry["world_to_camera"], f"{where}: world_to_camera")
    elif "matrix_world" in entry:
        from backend.conventions import world_to_camera_opencv

        w2c = world_to_camera_opencv(_matrix(entry["matrix_world"], f"{where}: matrix_world"))
    else:
        raise BadViews(f"{where} needs 'world_to_camera' (OpenCV, 4 x 4) or 'matrix_world'.")
    files = entry.get("files")
    rgb_name = files.get("rgb") if isinstance(files, dict) else None
    if not isinstance(rgb_name, str):
        raise BadViews(f"{where} needs 'files': {{'rgb': IMAGE}} naming its image.")
    image = _decode_image(read(rgb_name), rgb_name, name)
    if image.shape[:2] != (intr["height"], intr["width"]):
        raise BadViews(f"{rgb_name} in {_mid(name)} is {image.shape[1]} x {image.shape[0]} px but its intrinsics say "
                       f"{intr['width']} x {intr['height']}.")
    normal = None
    normal_name = files.get("normal_world")
    if isinstance(normal_name, str):
        try:
            normal = np.load(io.BytesIO(read(normal_name)), allow_pickle=False).astype(np.float32)
        except BadViews:
            normal = None  # normals are optional: a folder without them still bakes colour
        except (ValueError, OSError) as exc:
            raise BadViews(f"{normal_name} in {_mid(name)} is not a readable .npy array ({exc}).") from exc
        if normal is not None and normal.shape != (*image.shape[:2], 3):
            raise BadViews(f"{normal_name} in {_mid(name)} has shape {normal.shape}; expected "
                           f"({image.shape[0]}, {image.shape[1]}, 3).")
    return View(image, intr, w2c, normal, rgb_name)


def _matrix(value, what: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise BadViews(f"{what} must be a finite 4 x 4 matrix.")
    return m


def _decode_image(data: bytes, rel: str, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise BadViews(f"{rel} in {_mid(name)} is {im.size[0]} x {im.size[1]} px; at most {MAX_IMAGE_SIDE} "
                               "px a side are accepted.")
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadViews(f"{rel} in {_mid(name)} is not an image Meshsmith can decode (damaged, or not a common "
                       "format). Use 8-bit PNG or JPEG images.") from exc
    return rgba


# -- z-buffer -----------------------------------------------------------------------------


def zbuffer(camera_points: np.ndarray, faces: np.ndarray, intrinsics: dict) -> np.ndarray:
    """Depth (H, W) float64 of the nearest triangle at each pixel centre; ``inf`` where none.

    Parameters
    ----------
    camera_points : (n, 3) float
        Vertices in the OpenCV camera frame.
    faces : (m, 3) int
    intrinsics : dict

    Depth is perspective-correct (``1 / z`` interpolated in screen space). Triangles with a
    corner at or behind the camera plane are skipped (cameras are outside the geometry).
    """
    w, h = int(intrinsics["width"]), int(intrinsics["height"])
    depth = np.full(h * w, np.inf)
    pts = np.asarray(camera_points, dtype=np.float64)
    z = pts[:, 2]
    front = z > 1e-9
    pix = (pts @ intrinsics_matrix(intrinsics).T)[:, :2] / np.where(front, z, 1.0)[:, None]
    faces = np.asarray(faces, dtype=np.int64)
    faces = faces[front[faces].all(axis=1)]
    tri = pix[faces]  # (m, 3, 2)
    inv_z = 1.0 / z[faces]  # (m, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lo = np.ceil(tri.min(axis=1)).astype(np.int64)
    hi = np.floor(tri.max(axis=1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [w - 1, h - 1])
    width = hi[:, 0] - lo[:, 0] + 1
    height = hi[:, 1] - lo[:, 1] + 1
    ok = (np.abs(det) > 1e-18) & (width > 0) & (height > 0)
    count = np.where(ok, width * height, 0)
    for t, px, py in box_pixels(lo, width, count, CHUNK_PAIRS):
        rel = np.stack([px, py], axis=1) - tri[t, 0]
        inv = 1.0 / det[t]
        b1 = (rel[:, 0] * e2[t, 1] - rel[:, 1] * e2[t, 0]) * inv
        b2 = (e1[t, 0] * rel[:, 1] - e1[t, 1] * rel[:, 0]) * inv
        b0 = 1.0 - b1 - b2
        inside = (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
        iz = b0 * inv_z[t, 0] + b1 * inv_z[t, 1] + b2 * inv_z[t, 2]
        d = 1.0 / np.where(inside, iz, 1e-300)
        np.minimum.at(depth, (py * w + px)[inside], d[inside])
    return depth.reshape(h, w)


# -- baking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSamples:
    """What the views say about surface points.

    Attributes
    ----------
    colour : (k, 4) float64
        sRGB RGBA blended over the views (0 where unseen).
    weight : (k,) float64
        Sum of the blend weights; 0: no view sees the point.
    normal : (k, 3) float64 or None
        Blended world normals brought back to the mesh frame (unit), when every view has them.
    views_seen : (k,) int64
        How many views contributed.
    """

    colour: np.ndarray
    weight: np.ndarray
    normal: np.ndarray | None
    views_seen: np.ndarray


def bake_from_views(views: PosedViews, vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                    normals: np.ndarray, *, power: float = 4.0, depth_tolerance: float = DEPTH_TOLERANCE,
                    progress: ProgressFn = null_progress) -> ViewSamples:
    """Colour (and normals, when the views have them) at surface ``points`` from the posed views.

    Parameters
    ----------
    views : PosedViews
    vertices : (n, 3) float, faces : (m, 3) int
        The mesh the points lie on (file frame), for the z-buffers.
    points : (k, 3) float
        Surface points, file frame.
    normals : (k, 3) float
        Their unit surface normals, file frame.
    power : float
        Exponent of the view-angle cosine in the blend weight.
    depth_tolerance : float
        Depth agreement of the visibility test, canonical units.
    """
    to_world = views.mesh_to_world(vertices)
    a = to_world[:3, :3]
    world_vertices = np.asarray(vertices) @ a.T + to_world[:3, 3]
    world_points = np.asarray(points) @ a.T + to_world[:3, 3]
    # Normals transform with the inverse transpose; the scale is uniform, so A itself up to length.
    world_normals = np.asarray(normals) @ np.linalg.inv(a)
    world_normals /= np.maximum(np.linalg.norm(world_normals, axis=1, keepdims=True), 1e-300)
    k = len(points)
    colour = np.zeros((k, 4))
    weight = np.zeros(k)
    seen = np.zeros(k, dtype=np.int64)
    with_normals = all(v.normal_world is not None for v in views.views)
    normal_acc = np.zeros((k, 3)) if with_normals else None
    for index, view in enumerate(views.views):
        w2c = view.world_to_camera
        rot, t = w2c[:3, :3], w2c[:3, 3]
        depth = zbuffer(world_vertices @ rot.T + t, faces, view.intrinsics)
        cam = world_points @ rot.T + t
        centre = -rot.T @ t
        to_camera = centre - world_points
        to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-300)
        cos = np.einsum("ij,ij->i", world_normals, to_camera)
        z = cam[:, 2]
        front = (z > 1e-9) & (cos > 0)
        pix = (cam @ intrinsics_matrix(view.intrinsics).T)[:, :2] / np.where(front, z, 1.0)[:, None]
        c, conf, nrm = _bilinear_visible(view, depth, pix, z, front, depth_tolerance)
        wgt = conf * np.clip(cos, 0.0, 1.0) ** power
        colour += wgt[:, None] * c
        weight += wgt
        seen += wgt > 0
        if normal_acc is not None:
            normal_acc += wgt[:, None] * nrm
        progress((index + 1) / len(views.views), "projecting views")
    got = weight > 0
    colour[got] /= weight[got, None]
    normal = None
    if normal_acc is not None:
        normal = normal_acc @ a  # world -> file frame: A^T n (row-vector form)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    return ViewSamples(colour, weight, normal, seen)


def _bilinear_visible(view: View, depth: np.ndarray, pix: np.ndarray, z: np.ndarray, front: np.ndarray,
                      tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour (k, 4), confidence (k,) and normal (k, 3) from the four pixels around ``pix``,
    each used only when it is opaque and its depth agrees with ``z``."""
    h, w = depth.shape
    x0 = np.floor(pix[:, 0]).astype(np.int64)
    y0 = np.floor(pix[:, 1]).astype(np.int64)
    fx, fy = pix[:, 0] - x0, pix[:, 1] - y0
    k = len(z)
    colour = np.zeros((k, 4))
    normal = np.zeros((k, 3))
    total = np.zeros(k)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xx, yy = x0 + dx, y0 + dy
        inside = front & (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        xi, yi = np.where(inside, xx, 0), np.where(inside, yy, 0)
        rgba = view.image[yi, xi]
        ok = inside & (np.abs(depth[yi, xi] - z) <= tolerance) & (rgba[:, 3] > 0.5)
        wt = np.where(ok, wt, 0.0)
        colour += wt[:, None] * rgba
        if view.normal_world is not None:
            normal += wt[:, None] * view.normal_world[yi, xi]
        total += wt
    got = total > 1e-9
    colour[got] /= total[got, None]
    normal[got] /= total[got, None]
    return colour, total, normal
