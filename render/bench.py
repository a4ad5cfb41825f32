"""Speed and colour quality of render/ against BlenderProc's defaults and a 1024-sample reference.

    python -m render.bench --input MESH [--resolution 320] [--samples 4,8,16,32] [--denoise off,fast]

For one asset and layout it times

- *blenderproc-default*: BlenderProc's default renderer settings (up to 1024 samples,
  adaptive threshold 0.01, Intel denoiser in the compositor) with its normal and depth
  outputs enabled: colour + normals + depth from one Cycles render, as a BlenderProc script
  would make them;
- each fast configuration: Cycles colour at a few samples (optionally OpenImageDenoise) plus
  the exact ray-cast geometry maps (:mod:`render.raycast`);

and compares each colour image with a reference of the same scene and views rendered with
1024 samples (no adaptive sampling, no denoiser, another seed), cached in ``--cache``.
Seconds per view exclude Blender start-up and asset import (paid once per asset); each
configuration runs ``--repeat`` times and the fastest counts, since the machine may be shared;
CPU seconds (all threads of the process) are printed too, as other people's load disturbs
them less than wall time.
PSNR is
over 8-bit RGBA with premultiplied colour, pooled over views: ``all`` over whole images,
``fg`` over pixels that are foreground in either image (the stricter figure).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from render.views import RenderConfig, exit_hard, parse_resolution

#: Increment when the scene (light rig, colour management) changes, to invalidate cached references.
REFERENCE_VERSION = 2


def psnr(test: np.ndarray, ref: np.ndarray) -> dict:
    """PSNR (dB) of 8-bit-quantized RGBA (V, H, W, 4) floats in [0, 1], premultiplied colour."""
    a = np.round(np.clip(test, 0, 1) * 255) / 255
    b = np.round(np.clip(ref, 0, 1) * 255) / 255
    a = np.concatenate([a[..., :3] * a[..., 3:], a[..., 3:]], axis=-1)
    b = np.concatenate([b[..., :3] * b[..., 3:], b[..., 3:]], axis=-1)
    err = (a - b) ** 2
    fg = (a[..., 3] > 0) | (b[..., 3] > 0)
    return {"all": _db(err.mean()), "fg": _db(err[fg].mean()) if fg.any() else math.inf}


def _db(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _load_scene(path: Path, config: RenderConfig):
    from render import scene
    from render.layouts import make_layout

    views = make_layout(config.layout, radius=config.radius, fov=config.fov)
    scene.reset()
    objects = scene.load_asset(path)
    scene.normalize(objects)
    return scene, objects, views


@dataclass(frozen=True)
class Timing:
    """Seconds per view: wall clock, and CPU time of this process (all its threads), which
    other people's work on a shared machine disturbs less."""

    wall: float
    cpu: float


def time_fast(path: Path, config: RenderConfig) -> tuple[Timing, np.ndarray]:
    """Seconds per view (colour + geometry) and the colour (V, H, W, 4) of one fast configuration."""
    from backend.conventions import intrinsics_from_fov, world_to_camera_opencv
    from render.raycast import RayCaster

    scene, objects, views = _load_scene(path, config)
    t, c = time.perf_counter(), time.process_time()
    scene.add_light_rig()
    scene.configure_colour(scene.ColourSettings(samples=config.samples, denoise=config.denoise, seed=config.seed))
    scene.set_cameras(views, config.width, config.height)
    rgba = scene.render_colour(len(views))
    caster = RayCaster(*scene.scene_triangles(objects))
    for v in views:
        caster.render(world_to_camera_opencv(v.matrix_world), intrinsics_from_fov(v.fov, config.width, config.height))
    n = len(views)
    return Timing((time.perf_counter() - t) / n, (time.process_time() - c) / n), rgba


def time_blenderproc_default(path: Path, config: RenderConfig) -> Timing:
    """Seconds per view of BlenderProc's defaults: colour + normals + depth from one Cycles render."""
    from render import _blenderproc

    bp = _blenderproc.api()
    scene, _, views = _load_scene(path, config)
    with tempfile.TemporaryDirectory(prefix="meshsmith-bench-") as tmp:
        t, c = time.perf_counter(), time.process_time()
        scene.add_light_rig()
        bp.renderer.set_output_format(enable_transparency=True)
        bp.renderer.enable_normals_output(output_dir=tmp)
        bp.renderer.enable_depth_output(activate_antialiasing=False, output_dir=tmp)
        scene.set_cameras(views, config.width, config.height)
        bp.renderer.render(output_dir=tmp, output_key=None, return_data=False)
        n = len(views)
        return Timing((time.perf_counter() - t) / n, (time.process_time() - c) / n)


def reference(path: Path, config: RenderConfig, samples: int, cache: Path) -> np.ndarray:
    """The ``samples``-sample colour of the views, from ``cache`` when it was rendered before."""
    key = hashlib.sha256(json.dumps([
        hashlib.sha256(path.read_bytes()).hexdigest(), config.layout, config.width, config.height,
        config.fov, config.radius, samples, REFERENCE_VERSION]).encode()).hexdigest()[:16]
    file = cache / f"reference-{path.stem}-{key}.npz"
    if file.is_file():
        return np.load(file)["rgba"]
    scene, _, views = _load_scene(path, config)
    scene.add_light_rig()
    scene.configure_colour(scene.ColourSettings(samples=samples, denoise=None, seed=config.seed + 1))
    scene.set_cameras(views, config.width, config.height)
    t = time.perf_counter()
    rgba = scene.render_colour(len(views))
    print(f"reference: {samples} samples, {(time.perf_counter() - t) / len(views):.1f} s per view (cached in {file})")
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(file, rgba=rgba)
    return rgba


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="asset to render")
    parser.add_argument("--layout", default="zero123pp")
    parser.add_argument("--resolution", default="320")
    parser.add_argument("--samples", default="4,8,16,32", help="comma-separated sample counts to time")
    parser.add_argument("--denoise", default="off,fast",
                        help="comma-separated OpenImageDenoise qualities to time: off, fast, balanced, high")
    parser.add_argument("--ref-samples", type=int, default=1024)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip timing BlenderProc's defaults")
    parser.add_argument("--repeat", type=int, default=3,
                        help="time each configuration this often and keep the fastest (the machine is shared)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "meshsmith-bench")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    width, height = parse_resolution(args.resolution)
    base = RenderConfig(layout=args.layout, width=width, height=height)
    ref = reference(args.input, base, args.ref_samples, args.cache)
    rows = []
    baseline = None
    if args.baseline:
        runs = [time_blenderproc_default(args.input, base) for _ in range(args.repeat)]
        baseline = Timing(min(r.wall for r in runs), min(r.cpu for r in runs))
        print(f"{'blenderproc-default':<24} {baseline.wall:7.3f} s/view  ({baseline.cpu:6.3f} CPU s)")
    denoise = [None if d == "off" else d for d in args.denoise.split(",")]
    for samples in [int(s) for s in args.samples.split(",")]:
        for dn in denoise:
            cfg = RenderConfig(layout=args.layout, width=width, height=height, samples=samples, denoise=dn)
            runs = [time_fast(args.input, cfg) for _ in range(args.repeat)]
            timing = Timing(min(r[0].wall for r in runs), min(r[0].cpu for r in runs))
            q = psnr(runs[0][1], ref)
            name = f"{samples} spp" + (f" + OIDN {dn}" if dn else "")
            speed = (f"  {baseline.wall / timing.wall:5.1f}x ({baseline.cpu / timing.cpu:.1f}x CPU)"
                     if baseline else "")
            print(f"{name:<24} {timing.wall:7.3f} s/view  ({timing.cpu:6.3f} CPU s)  "
                  f"PSNR all {q['all']:5.1f} dB  fg {q['fg']:5.1f} dB{speed}")
            rows.append({"samples": samples, "denoise": dn, **asdict(timing), "psnr": q})
    if args.json:
        args.json.write_text(json.dumps({"input": str(args.input), "layout": args.layout, "width": width,
                                         "height": height, "ref_samples": args.ref_samples,
                                         "blenderproc_default": asdict(baseline) if baseline else None, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    exit_hard(main())
