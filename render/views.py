"""Render one asset into posed views: RGBA, exact normal / depth / mask maps, cameras.json, GLB.

    python -m render.views --input ASSET --out DIR [options]            (pip bpy module)
    blender -b -P render/views.py -- --input ASSET --out DIR [options]   (Blender 4.2 binary)

Colour comes from Cycles (few samples, fixed seed, fixed light rig, transparent film);
depth, normals and mask from one ray per pixel centre against the same triangles
(:mod:`render.raycast`), so they are exact and cost no render. Files, per view ``k``::

    k_rgb.png                      RGBA, 8 bit, sRGB, straight alpha
    k_normal_world.npy / .png      (H, W, 3) float32 unit normals, world frame / 8-bit preview
    k_normal_camera.npy / .png     the same in the OpenCV camera frame
    k_depth.npy / .png             (H, W) float32 z in the OpenCV camera frame (0: background)
    k_mask.png                     255 where the ray through the pixel centre hits the mesh

plus ``cameras.json`` (intrinsics, OpenCV world-to-camera, Blender matrix_world, azimuth /
elevation / radius, the normalization, render settings, light rig, seed), ``mesh.glb`` (the
normalized mesh, glTF's Y-up) and ``contact_sheet.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`blender -b -P render/views.py`): make the project importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from backend.conventions import BLENDER_FROM_GLTF, intrinsics_from_fov, world_to_camera_opencv
from render.quiet import quiet_stdout

log = logging.getLogger("render.views")

#: Version of the layout of an output folder; bump when files or cameras.json change meaning.
OUTPUT_FORMAT = "meshsmith-views/1"


@dataclass
class RenderConfig:
    """Everything that decides what a render looks like (the command line maps onto it)."""

    layout: str = "zero123pp"
    width: int = 320
    height: int = 320
    fov: float | None = None  # degrees; None: the layout's default
    radius: float | None = None  # canonical units; None: frame the whole canonical box
    samples: int = 16
    denoise: str | None = None  # OpenImageDenoise quality: fast, balanced, high
    seed: int = 0
    threads: int = 0
    colour: bool = True  # False: geometry maps only (no Cycles render)
    verbose: bool = False


@dataclass
class RenderResult:
    """Arrays and records of one asset, before anything is written."""

    cameras: dict
    rgba: np.ndarray | None  # (V, H, W, 4) float32 in [0, 1]
    geometry: list  # of raycast.GeometryMaps
    triangles: np.ndarray  # (m, 3, 3) world
    corner_normals: np.ndarray  # (m, 3, 3) world
    timing: dict = field(default_factory=dict)


def render_asset(path: str | os.PathLike, config: RenderConfig) -> RenderResult:
    """Load, normalize and render ``path``; returns arrays (no file is written)."""
    from render import scene
    from render.layouts import make_layout
    from render.raycast import RayCaster

    path = Path(path)
    if config.width < 1 or config.height < 1:
        raise ValueError(f"resolution must be positive, got {config.width}x{config.height}")
    scene.check_asset_path(path)
    views = make_layout(config.layout, radius=config.radius, fov=config.fov)
    timing = {}
    t0 = time.perf_counter()
    scene.reset()
    objects = scene.load_asset(path)
    norm = scene.normalize(objects)
    triangles, corner_normals = scene.scene_triangles(objects)
    timing["load_s"] = time.perf_counter() - t0

    settings = scene.ColourSettings(samples=config.samples, denoise=config.denoise, seed=config.seed,
                                    threads=config.threads)
    cameras = {
        "format": OUTPUT_FORMAT,
        "asset": {"input": str(path), "name": path.name, "sha256": _sha256(path)},
        "normalization": scene.normalization_record(norm, path.suffix),
        "conventions": {
            "world": "Blender world frame, Z-up, asset centred and scaled into the canonical box "
                     "(backend/conventions.py)",
            "world_to_camera": "OpenCV: camera x right, y down, z forward",
            "matrix_world": "Blender camera-to-world: camera looks down its local -Z, +Y up",
            "pixel_centres": "pixel (row v, column u) has its centre at (u, v)",
            "azimuth_elevation": "degrees; azimuth 0 = camera on -Y (front), 90 = camera on +X; "
                                 "elevation > 0 above the XY plane",
            "depth": "float32, z in the OpenCV camera frame, canonical units, 0 = background",
            "normals": "float32 unit shading normals, flipped to face the camera on back faces; "
                       "normal_world in the world frame, normal_camera in the OpenCV camera frame; "
                       "0 = background",
            "mask": "255 where the ray through the pixel centre hits the mesh",
            "rgb": "8-bit sRGB (Standard view transform), straight alpha, colour 0 where alpha is 0",
        },
        "layout": config.layout,
        "render": {**settings.to_dict(), "width": config.width, "height": config.height,
                   "light_rig": scene.light_rig_record(),
                   "geometry": "ray cast through pixel centres (mathutils BVHTree), exact, no sampling"},
        "views": [],
    }
    for k, v in enumerate(views):
        intr = intrinsics_from_fov(v.fov, config.width, config.height)
        cameras["views"].append({
            "index": k, "azimuth": v.azimuth, "elevation": v.elevation, "radius": v.radius, "fov": v.fov,
            "intrinsics": intr,
            "world_to_camera": world_to_camera_opencv(v.matrix_world).tolist(),
            "matrix_world": np.asarray(v.matrix_world).tolist(),
        })

    rgba = None
    if config.colour:
        t = time.perf_counter()
        scene.add_light_rig()
        scene.configure_colour(settings)
        scene.set_cameras(views, config.width, config.height)
        rgba = scene.render_colour(len(views), verbose=config.verbose)
        timing["colour_s"] = time.perf_counter() - t

    t = time.perf_counter()
    caster = RayCaster(triangles, corner_normals)
    geometry = [caster.render(np.asarray(c["world_to_camera"]), c["intrinsics"]) for c in cameras["views"]]
    timing["geometry_s"] = time.perf_counter() - t
    return RenderResult(cameras, rgba, geometry, triangles, corner_normals, timing)


def write_result(result: RenderResult, out: Path) -> dict:
    """Write every file of ``result`` into the folder ``out``; returns the cameras record written."""
    from PIL import Image

    from render.sheet import contact_sheet, depth_preview, normal_preview

    out.mkdir(parents=True, exist_ok=True)
    cameras = json.loads(json.dumps(result.cameras))
    for view, geo in zip(cameras["views"], result.geometry):
        k = view["index"]
        files = {}
        if result.rgba is not None:
            files["rgb"] = f"{k:03d}_rgb.png"
            Image.fromarray(_to_uint8(result.rgba[k]), "RGBA").save(out / files["rgb"])
        for frame in ("world", "camera"):
            arr = geo.normal_world if frame == "world" else geo.normal_camera
            files[f"normal_{frame}"] = f"{k:03d}_normal_{frame}.npy"
            files[f"normal_{frame}_preview"] = f"{k:03d}_normal_{frame}.png"
            np.save(out / files[f"normal_{frame}"], arr)
            Image.fromarray(normal_preview(arr, geo.mask), "RGBA").save(out / files[f"normal_{frame}_preview"])
        files["depth"] = f"{k:03d}_depth.npy"
        files["depth_preview"] = f"{k:03d}_depth.png"
        np.save(out / files["depth"], geo.depth)
        Image.fromarray(depth_preview(geo.depth, geo.mask), "RGBA").save(out / files["depth_preview"])
        files["mask"] = f"{k:03d}_mask.png"
        Image.fromarray((geo.mask * 255).astype(np.uint8), "L").save(out / files["mask"])
        view["files"] = files
    write_glb(result.triangles, result.corner_normals, out / "mesh.glb")
    contact_sheet(result.rgba, result.geometry).save(out / "contact_sheet.png")
    cameras["files"] = {"mesh": "mesh.glb", "contact_sheet": "contact_sheet.png", "cameras": "cameras.json"}
    cameras["timing"] = {k: round(v, 4) for k, v in result.timing.items()}
    # cameras.json last: a folder with it is complete.
    (out / "cameras.json").write_text(json.dumps(cameras, indent=1))
    return cameras


def render_to_folder(path: str | os.PathLike, out: str | os.PathLike, config: RenderConfig,
                     *, overwrite: bool = False) -> dict:
    """Render ``path`` and write its folder ``out`` atomically: everything is written into a
    temporary sibling folder, which is then renamed. Returns the cameras record."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out folder {str(out)!r} exists and is not empty; pass --overwrite to replace it")
    with quiet_stdout(not config.verbose):
        result = render_asset(path, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        t = time.perf_counter()
        result.timing["write_s"] = 0.0
        cameras = write_result(result, tmp)
        cameras["timing"]["write_s"] = round(time.perf_counter() - t, 4)
        (tmp / "cameras.json").write_text(json.dumps(cameras, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cameras


def write_glb(triangles: np.ndarray, corner_normals: np.ndarray, path: Path) -> None:
    """The normalized mesh as GLB (glTF Y-up), with the shading normals; no materials.

    Written with trimesh: Blender 4.2's glTF exporter leaves the ``bpy`` module crashing at exit.
    """
    import trimesh

    corners = triangles.reshape(-1, 3) @ BLENDER_FROM_GLTF  # row-vector form of BLENDER_FROM_GLTF.T @ p
    normals = corner_normals.reshape(-1, 3) @ BLENDER_FROM_GLTF
    keys = np.round(np.concatenate([corners, normals], axis=1), 9)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    mesh = trimesh.Trimesh(corners[first], inverse.reshape(-1, 3), vertex_normals=normals[first], process=False)
    data = mesh.export(file_type="glb", include_normals=True)
    path.write_bytes(data)


def _to_uint8(rgba: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``render.views``, ``render.dataset`` and ``render.bench``."""
    parser.add_argument("--layout", default="zero123pp",
                        help="zero123pp (6 views), orbit:N, sphere:N (Hammersley) or a JSON file of poses")
    parser.add_argument("--resolution", default="320",
                        help="pixels: N for N x N, or WxH (default 320)")
    parser.add_argument("--fov", type=float, default=None, help="field of view in degrees (layout default: 30)")
    parser.add_argument("--radius", type=float, default=None,
                        help="camera distance in canonical units (default: frames the whole canonical box)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel for colour (default 16)")
    parser.add_argument("--denoise", choices=("off", "fast", "balanced", "high"), default="off",
                        help="OpenImageDenoise on the colour, at this quality (default off)")
    parser.add_argument("--seed", type=int, default=0, help="Cycles sampling seed (recorded in cameras.json)")
    parser.add_argument("--threads", type=int, default=0, help="render threads (0: all cores)")
    parser.add_argument("--no-colour", dest="colour", action="store_false",
                        help="geometry maps only, no Cycles render")
    parser.add_argument("--verbose", action="store_true", help="Blender's own render output")


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    width, height = parse_resolution(args.resolution)
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    return RenderConfig(layout=args.layout, width=width, height=height, fov=args.fov, radius=args.radius,
                        samples=args.samples, denoise=None if args.denoise == "off" else args.denoise, seed=args.seed, threads=args.threads,
                        colour=args.colour, verbose=args.verbose)


def parse_resolution(text: str) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"320x240"`` -> (320, 240)."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--resolution must be N or WxH with positive integers, got {text!r}")
    return parts[0], parts[1]


def script_argv(argv: list[str]) -> list[str]:
    """The script's own arguments: after ``--`` when Blender passes them (``blender -b -P x.py -- ...``)."""
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.views", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="GLB / glTF, OBJ (+MTL), PLY or STL")
    parser.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_render_arguments(parser)
    args = parser.parse_args(script_argv(sys.argv) if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        config = config_from_args(args)
        t = time.perf_counter()
        cameras = render_to_folder(args.input, args.out, config, overwrite=args.overwrite)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(cameras["views"])
    timing = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in cameras["timing"].items())
    print(f"{args.input.name}: {n} views at {config.width}x{config.height} -> {args.out} "
          f"in {time.perf_counter() - t:.2f} s ({timing})")
    return 0


def exit_hard(code: int) -> None:
    """Leave without Python's shutdown: ``bpy`` 4.2 can crash in its own teardown, which would
    turn a finished render into a failed exit code. Output streams are flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_hard(main())
