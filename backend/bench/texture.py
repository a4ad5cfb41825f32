"""Texture bench: ``python -m backend bench texture [--meshes DIR]``.

For each bench mesh with colour (``Duck.glb``, ``CesiumMilkTruck.glb``; ``spot.obj`` has UVs
but no texture, so it gets a generated one on its own UVs, see :func:`prepare_source`), its
own texture is the source, and :func:`backend.mesh.texture.bake.bake_textures` bakes it onto

- ``watertight``: the watertight remesh (``backend.mesh.remesh.watertight.watertight``, resolution
  ``--resolution``, default 256), base colour and normal map;
- ``lowpoly+normal``: the artist pipeline's ~``--faces`` (2,000) face quad-dominant mesh
  (:func:`backend.mesh.retopo.artist.retopo`), base colour and normal map;
- ``lowpoly``: the same low-poly mesh, base colour only, to show what the normal map adds;
- ``quadric+normal``: not a goal, a control: the watertight remesh decimated to ``--faces``
  by Blender's Decimate modifier (edge collapse with quadric error, which keeps the shape
  better than the watertight engine's shortest-edge collapses), base colour and normal map.
  The gap between it and ``lowpoly+normal`` is what the low-poly geometry costs, not the bake.

Source and results are rendered with render/ (Cycles, its light rig, the 6 ``zero123pp``
views, ``--render-res`` px, ``--samples`` samples, one seed) in a child process (Blender's
``bpy`` module), every result placed with the *source's* normalization so the views match
pixel for pixel. Figures, per mesh and case:

- ``psnr_masked``: PSNR of 8-bit RGB over the pixels the object covers fully (alpha 1) in both
  images: the texture and shading, without the silhouette differences of the remesh;
- ``psnr_fg``: render.bench's figure, premultiplied RGBA over pixels covered in either image
  (silhouette differences included);
- ``noise_ceiling``: the masked PSNR of the source against itself rendered with another seed,
  the best any result can score at these samples.

Goals (issue 5): masked PSNR >= 30 dB on the watertight remesh, >= 25 dB on the low-poly mesh
with its normal map. Results: ``--out``/bench-texture.json and bench-texture.png (contact sheet:
source and results side by side, two views each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"watertight": 30.0, "lowpoly+normal": 25.0}
CASES = ("watertight", "lowpoly+normal", "lowpoly", "quadric+normal")
DEFAULT_MESHES = ("Duck.glb", "CesiumMilkTruck.glb", "spot.obj")
REPO = Path(__file__).resolve().parents[2]


# -- children: Blender's decimator, and rendering with render/ ----------------------------


def _decimate_child(in_path: str, out_path: str, faces: int) -> None:
    """Blender's Decimate modifier (collapse, quadric error) on the mesh in ``in_path`` (.npz)."""
    import bpy

    data = np.load(in_path)
    v, f = data["vertices"], data["faces"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("lowpoly")
    mesh.from_pydata(v.tolist(), [], f.tolist())
    mesh.update()
    obj = bpy.data.objects.new("lowpoly", mesh)
    bpy.context.scene.collection.objects.link(obj)
    mod = obj.modifiers.new("decimate", "DECIMATE")
    mod.decimate_type = "COLLAPSE"
    mod.ratio = min(1.0, faces / len(f))
    mod.use_collapse_triangulate = True
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    out = evaluated.to_mesh()
    out.calc_loop_triangles()
    co = np.empty(len(out.vertices) * 3)
    out.vertices.foreach_get("co", co)
    tri = np.empty(len(out.loop_triangles) * 3, dtype=np.int64)
    out.loop_triangles.foreach_get("vertices", tri)
    np.savez(out_path, vertices=co.reshape(-1, 3), faces=tri.reshape(-1, 3))


def blender_decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="meshsmith-bench-texture-") as tmp:
        src, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, vertices=vertices, faces=faces)
        done = subprocess.run([sys.executable, "-m", "backend.bench.texture", "_decimate", str(src), str(out),
                               str(target)], cwd=REPO, env=_child_env(), capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError("Blender's decimation failed: " + (done.stderr or done.stdout)[-500:])
        with np.load(out) as data:
            return data["vertices"], data["faces"]


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}



def _render_child(out: str, resolution: int, samples: int, seeds: str, source: str, *others: str) -> None:
    """Render ``source`` (normalized by its own box, once per seed) and each of ``others`` (placed
    with the source's normalization, first seed) into ``out`` (.npz of (V, H, W, 4) float32)."""
    import bpy
    from mathutils import Matrix

    from render import scene
    from render.layouts import make_layout
    from render.quiet import quiet_stdout

    views = make_layout("zero123pp")
    seed_list = [int(s) for s in seeds.split(",")]
    arrays, norm = {}, None
    jobs = [(source, s, f"source_{s}") for s in seed_list] + [(p, seed_list[0], f"result_{i}")
                                                              for i, p in enumerate(others)]
    for path, seed, key in jobs:
        with quiet_stdout(True):
            scene.reset()
            objects = scene.load_asset(Path(path))
            if norm is None:
                norm = scene.normalize(objects)
            else:
                m = np.eye(4) * norm.scale
                m[3, 3] = 1.0
                m[:3, 3] = -np.asarray(norm.center) * norm.scale
                for obj in objects:
                    if obj.parent is None:
                        obj.matrix_world = Matrix(m.tolist()) @ obj.matrix_world
                bpy.context.view_layer.update()
            scene.add_light_rig()
            scene.configure_colour(scene.ColourSettings(samples=samples, seed=seed))
            scene.set_cameras(views, resolution, resolution)
            arrays[key] = scene.render_colour(len(views))
    np.savez_compressed(out, **arrays)


def render_all(source: Path, results: list[Path], *, resolution: int, samples: int, seeds=(0, 1)) -> dict:
    """Render in a child process (bpy); returns {'source_<seed>': rgba, 'result_<i>': rgba}."""
    with tempfile.TemporaryDirectory(prefix="meshsmith-bench-texture-") as tmp:
        out = Path(tmp) / "renders.npz"
        done = subprocess.run([sys.executable, "-m", "backend.bench.texture", "_render", str(out), str(resolution),
                               str(samples), ",".join(map(str, seeds)), str(source), *map(str, results)],
                              cwd=REPO, env=_child_env(), capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError("rendering failed: " + " | ".join(tail))
        with np.load(out) as data:
            return {k: data[k] for k in data.files}


# -- figures ------------------------------------------------------------------------------


def psnr_masked(test: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """PSNR (dB) of 8-bit RGB over pixels fully covered (alpha 1) in both (V, H, W, 4) images; pixel count."""
    a = np.round(np.clip(test, 0, 1) * 255) / 255
    b = np.round(np.clip(ref, 0, 1) * 255) / 255
    mask = (a[..., 3] >= 1.0) & (b[..., 3] >= 1.0)
    if not mask.any():
        return float("nan"), 0
    mse = float(((a[..., :3] - b[..., :3]) ** 2)[mask].mean())
    return (math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)), int(mask.sum())


# -- sources ------------------------------------------------------------------------------


def prepare_source(path: Path, work: Path) -> tuple[Path, str]:
    """The coloured file to bake from and render, and a note on where its colour comes from.

    A mesh with colour is its own source. A mesh with UVs but no colour (``spot.obj`` here)
    gets a generated texture on its own UVs: a hue ramp along u, a brightness ramp along v
    and an 8 x 8 checker of two strengths, written with smooth normals as a GLB.
    """
    from backend.errors import BadSource
    from backend.mesh.io import save_mesh
    from backend.mesh.texture.source import load_colour_source
    from backend.mesh.types import Material, Mesh

    try:
        load_colour_source(path)
        return path, "its own texture"
    except BadSource:
        pass
    import trimesh

    loaded = trimesh.load(str(path), force="mesh", process=False)
    uv = getattr(loaded.visual, "uv", None)
    if uv is None:
        raise ValueError(f"{path.name} has neither colour nor UVs; the texture bench cannot use it")
    from PIL import Image

    from backend.mesh.tangents import vertex_normals
    from backend.mesh.texture.bake import _png

    size = 1024
    c = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(c, 1.0 - c)
    hue = u * 6.0
    rgb = np.stack([np.clip(np.abs(hue - 3.0) - 1.0, 0, 1), np.clip(2.0 - np.abs(hue - 2.0), 0, 1),
                    np.clip(2.0 - np.abs(hue - 4.0), 0, 1)], axis=-1)
    checker = ((np.floor(u * 8) + np.floor(v * 8)) % 2)[..., None]
    rgb = rgb * (0.55 + 0.35 * v[..., None]) * (0.75 + 0.25 * checker) + 0.1
    pixels = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    mesh = Mesh(vertices, faces, uv=np.asarray(uv, dtype=np.float64), normals=vertex_normals(vertices, faces),
                material=Material(base_color=_png(pixels), name="generated"))
    out = work / f"{path.stem}_textured.glb"
    save_mesh(mesh, out)
    Image.fromarray(pixels).save(work / f"{path.stem}_texture.png")
    return out, "a generated texture on its own UVs (the file has UVs but no texture)"


# -- bench --------------------------------------------------------------------------------


def bench_mesh(path: Path, work: Path, *, resolution: int, faces: int, size: int, render_res: int,
               samples: int) -> tuple[dict, dict]:
    """Bake the three cases for one mesh, render, measure; returns (record, renders)."""
    from backend.mesh.io import load_mesh, save_mesh
    from backend.mesh.remesh.watertight import watertight
    from backend.mesh.retopo.artist import retopo
    from backend.mesh.texture.bake import bake_textures
    from backend.mesh.texture.source import load_colour_source
    from backend.mesh.types import Mesh

    source_path, note = prepare_source(path, work)
    source = load_colour_source(source_path)
    geometry = load_mesh(source_path)
    record: dict = {"mesh": path.name, "source": note, "source_faces": int(len(source.faces)), "cases": {}}
    t = time.perf_counter()
    dense = watertight(geometry.vertices, geometry.faces, resolution=resolution)
    record["watertight_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    artist = retopo(geometry.vertices, geometry.faces, target_faces=faces)   # the artist pipeline's mesh
    low_faces, low_sizes = artist.mesh_arrays()
    record["lowpoly_seconds"] = round(time.perf_counter() - t, 2)
    quadric = blender_decimate(dense.vertices, dense.faces, faces)
    targets = {"watertight": (Mesh(dense.vertices, dense.faces), True),
               "lowpoly+normal": (Mesh(artist.vertices, low_faces, low_sizes), True),
               "lowpoly": (Mesh(artist.vertices, low_faces, low_sizes), False),
               "quadric+normal": (Mesh(*quadric), True)}
    outputs = []
    for case in CASES:
        target, normal_map = targets[case]
        t = time.perf_counter()
        baked = bake_textures(target, source=source, texture_size=size, normal_map=normal_map)
        seconds = time.perf_counter() - t
        out = work / f"{path.stem}_{case.replace('+', '_')}.glb"
        save_mesh(baked.mesh, out)
        outputs.append(out)
        record["cases"][case] = {"faces": int(len(target.faces)), "bake_seconds": round(seconds, 2),
                                 "charts": baked.summary["charts"], "utilization": baked.summary["utilization"],
                                 "stage_seconds": baked.summary["stage_seconds"], "file": out.name}
    renders = render_all(source_path, outputs, resolution=render_res, samples=samples)
    np.savez_compressed(work / f"{path.stem}_renders.npz", **renders)
    ref = renders["source_0"]
    ceiling, _ = psnr_masked(renders["source_1"], ref)
    record["noise_ceiling"] = round(ceiling, 2)
    from render.bench import psnr

    for i, case in enumerate(CASES):
        img = renders[f"result_{i}"]
        masked, pixels = psnr_masked(img, ref)
        entry = record["cases"][case]
        entry.update(psnr_masked=round(masked, 2), masked_pixels=pixels, psnr_fg=round(psnr(img, ref)["fg"], 2))
        if case in GOALS:
            entry["goal"] = GOALS[case]
            entry["met"] = bool(masked >= GOALS[case])
    return record, {"source": ref, **{case: renders[f"result_{i}"] for i, case in enumerate(CASES)}}


def contact_sheet(rows: list[tuple[dict, dict]], path: Path, views=(0, 3), tile: int = 200) -> None:
    """Per mesh one row: source and each case, ``views`` of each, labelled with the figures."""
    from PIL import Image, ImageDraw

    columns = ("source", *CASES)
    label_h = 34
    width = len(columns) * len(views) * tile
    sheet = Image.new("RGB", (width, len(rows) * (tile + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (record, renders) in enumerate(rows):
        y = r * (tile + label_h)
        for c, column in enumerate(columns):
            x = c * len(views) * tile
            if column == "source":
                text = f"{record['mesh']}: source ({record['source_faces']} faces)"
            else:
                e = record["cases"][column]
                text = f"{column} ({e['faces']} f): {e['psnr_masked']:.1f} dB"
            draw.text((x + 6, y + 4), text, fill=(0, 0, 0))
            for k, view in enumerate(views):
                rgba = renders[column][view]
                rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
                im = Image.fromarray(np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)).resize((tile, tile))
                sheet.paste(im, (x + k * tile, y + label_h))
        if r:
            draw.line([(0, y), (width, y)], fill=(180, 180, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def format_table(records: list[dict]) -> str:
    head = f"{'mesh':<22} {'case':<16} {'faces':>7} {'bake s':>7} {'masked dB':>9} {'fg dB':>6} {'goal':>5} {'met':>4}"
    lines = [head, "-" * len(head)]
    for rec in records:
        for case in CASES:
            e = rec["cases"][case]
            goal = f"{e['goal']:.0f}" if "goal" in e else "-"
            met = ("yes" if e["met"] else "NO") if "met" in e else "-"
            lines.append(f"{rec['mesh']:<22} {case:<16} {e['faces']:>7} {e['bake_seconds']:>7.1f} "
                         f"{e['psnr_masked']:>9.2f} {e['psnr_fg']:>6.2f} {goal:>5} {met:>4}")
        lines.append(f"{rec['mesh']:<22} {'(noise ceiling)':<16} {'':>7} {'':>7} {rec['noise_ceiling']:>9.2f}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    t = sub.add_parser("texture", help="bake textures onto remeshes of textured meshes and compare renders")
    t.add_argument("--meshes", type=Path, default=Path("/work/shared/bench-meshes"),
                   help="folder holding the bench meshes (default /work/shared/bench-meshes)")
    t.add_argument("--names", nargs="+", default=list(DEFAULT_MESHES),
                   help=f"meshes in that folder (default {' '.join(DEFAULT_MESHES)})")
    t.add_argument("--resolution", type=int, default=256, help="watertight remesh resolution (default 256)")
    t.add_argument("--faces", type=int, default=2000, help="low-poly face count (default 2000)")
    t.add_argument("--size", type=int, default=1024, help="texture size in pixels (default 1024)")
    t.add_argument("--render-res", type=int, default=320, help="render size in pixels (default 320)")
    t.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel (default 64)")
    t.add_argument("--out", type=Path, default=Path("docs"),
                   help="folder for bench-texture.json and bench-texture.png (default docs)")
    t.add_argument("--work", type=Path, help="keep the baked GLBs here (default: a temporary folder)")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    paths = [args.meshes / n for n in args.names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="meshsmith-bench-texture-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for path in tqdm(paths, desc="bench texture", unit="mesh"):
            rows.append(bench_mesh(path, work, resolution=args.resolution, faces=args.faces, size=args.size,
                                   render_res=args.render_res, samples=args.samples))
    records = [r for r, _ in rows]
    report = {"settings": {"resolution": args.resolution, "faces": args.faces, "texture_size": args.size,
                           "render_res": args.render_res, "samples": args.samples, "layout": "zero123pp",
                           "goals_db": GOALS,
                           "psnr_masked": "8-bit RGB over pixels with alpha 1 in both renders",
                           "psnr_fg": "render.bench.psnr 'fg': premultiplied RGBA over pixels covered in either"},
              "meshes": records}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-texture.json").write_text(json.dumps(report, indent=1))
    contact_sheet(rows, args.out / "bench-texture.png")
    print(format_table(records))
    print(f"wrote {args.out / 'bench-texture.json'} and {args.out / 'bench-texture.png'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_decimate":
        _decimate_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.stdout.flush()
        os._exit(0)
    if len(sys.argv) >= 7 and sys.argv[1] == "_render":
        _render_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], *sys.argv[7:])
        sys.stdout.flush()
        os._exit(0)
    sys.exit("usage: python -m backend bench texture [--meshes DIR]")
