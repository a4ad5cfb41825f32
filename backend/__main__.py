"""Command line: ``python -m backend serve`` and the pipelines without a server.

    python -m backend serve [--port 8765]
    python -m backend watertight IN -o OUT --resolution 256 [--keep largest] [--cavities keep] [--target-faces N]
                                 [--smooth]
    python -m backend artist IN -o OUT.obj --faces 2000 [--mode quads|quad_dominant|triangles] [--sharp-angle 30]
                             [--no-sharp] [--resolution R] [--chamfer]
    python -m backend texture IN -o OUT.glb (--source SRC | --views DIR_OR_ZIP) [--size 1024] [--padding 4]
                              [--hard-angle 40] [--no-normal-map]
    python -m backend text "a wooden chair" -o OUT.obj [--model meshsmith|llama-mesh] [--weights W] [--max-faces N]
                           [--temperature T] [--seed S] [--repair none|watertight|artist]
    python -m backend points IN -o OUT.obj [--weights W] [--max-faces N] [--temperature T] [--seed S] [--up y|z]
    python -m backend bench watertight --meshes DIR --resolution 256 512
    python -m backend bench artist --meshes DIR --faces 2000 5000
    python -m backend bench texture [--meshes DIR]
    python -m backend preprocess IN --out DIR [--resolution 256] [--surface N] [--sdf-uniform N] [--sdf-near N]
                                 [--salient N] [--angle 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from backend.errors import MeshsmithError
from backend.memory import keep_freed_memory


def _serve(args: argparse.Namespace) -> int:
    from backend.server import serve
    from backend.settings import ServerSettings

    try:
        settings = ServerSettings.from_env(
            host=args.host, port=args.port, data_dir=args.data_dir, state_dir=args.state_dir,
            token=args.token, max_upload_mb=args.max_upload_mb, max_faces=args.max_faces, job_workers=args.job_workers,
            upload_stall_seconds=args.upload_stall_seconds,
            max_queued_jobs=args.max_queued_jobs, keep_jobs_days=args.keep_jobs_days,
            max_jobs_disk_gb=args.max_jobs_disk_gb,
            max_job_memory_gb=args.max_job_memory_gb, max_job_minutes=args.max_job_minutes,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


class _TqdmProgress:
    """A pipeline progress callback drawing one tqdm bar with the current stage."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, unit="‰", leave=False, dynamic_ncols=True,
                        bar_format="{desc:<24} {percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, fraction: float, stage: str) -> None:
        self.bar.set_description_str(stage, refresh=False)
        self.bar.update(int(fraction * 1000) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _run_pipeline(args: argparse.Namespace, name: str, params: dict, files: dict[str, Path] | None = None,
                  mesh: bool = True) -> int:
    """Run pipeline ``name`` on ``args.input`` (the ``mesh``, unless ``mesh`` is False) and the other
    input ``files`` by name."""
    from backend.inputs import INPUT_KINDS
    from backend.mesh.io import load_mesh, save_mesh
    from backend.pipelines import get_pipeline

    progress = _TqdmProgress()
    try:
        pipeline = get_pipeline(name)
        checked = pipeline.parse_params(params)
        pipeline.check_available(checked)
        files = {k: v for k, v in (files or {}).items() if v is not None}
        pipeline.check_inputs(["mesh", *files] if mesh else list(files))
        inputs = {"mesh": load_mesh(args.input)} if mesh else {}
        inputs.update({k: INPUT_KINDS[k].load(path) for k, path in files.items()})
        start = time.perf_counter()
        result = pipeline.run(inputs, checked, progress)
        seconds = time.perf_counter() - start
        save_mesh(result.mesh, args.output)
    except MeshsmithError as exc:
        progress.close()
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress.close()
    summary = {**result.summary, "seconds": round(seconds, 2)}
    print(f"{args.output}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.preprocess import preprocess_dir

    def report(record: dict) -> None:
        if record["status"] == "done":
            line = (f"{record['name']}: faces {record['faces_in']} -> {record['faces']}, genus {record['genus']}, "
                    f"salient {record['salient_on_edge']}/{record['salient']} on edges, {record['seconds']} s")
        elif record["status"] == "skipped":
            line = f"{record['name']}: skipped, {record['output']} exists"
        else:
            line = f"{record['name']}: failed: {record['error']}"
        tqdm.write(line)

    try:
        totals = preprocess_dir(
            args.input, args.out, on_asset=report, resolution=args.resolution, n_surface=args.surface,
            n_sdf_uniform=args.sdf_uniform, n_sdf_near=args.sdf_near, n_salient=args.salient,
            angle_deg=args.angle, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{totals['done']} done, {totals['skipped']} skipped, {totals['failed']} failed in {totals['seconds']} s"
          + (f" (see {args.out / 'failures.jsonl'})" if totals["failed"] else ""))
    return 1 if totals["failed"] else 0


def _texture(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() != ".glb":
        print(f"error: -o must end in .glb (the material and its textures travel in the GLB), got "
              f"{args.output.name!r}", file=sys.stderr)
        return 2
    params = {"texture_size": args.size, "padding": args.padding, "normal_map": args.normal_map,
              "view_power": args.view_power, "hard_angle": None if args.hard_angle >= 180 else args.hard_angle}
    return _run_pipeline(args, "texture", params, {"source": args.source, "views": args.views})


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    parser = argparse.ArgumentParser(prog="python -m backend", description="Meshsmith backend.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the local HTTP job API")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    s.add_argument("--data-dir", type=Path, help="where jobs are stored")
    s.add_argument("--state-dir", type=Path, help="where backend.json (port + token) is written")
    s.add_argument("--token", help="bearer token (default: a new random one each start)")
    s.add_argument("--max-upload-mb", type=float, help="largest accepted upload (default 200)")
    s.add_argument("--upload-stall-seconds", type=float,
                   help="an upload that stops arriving this long is answered 408 (default 30)")
    s.add_argument("--max-faces", type=int, help="most faces an uploaded mesh may have (default 5,000,000)")
    s.add_argument("--max-queued-jobs", type=int, help="jobs waiting to run, at most (default 100; more: 429)")
    s.add_argument("--keep-jobs-days", type=float, help="finished jobs are removed after this many days (default 7; 0: kept)")
    s.add_argument("--max-jobs-disk-gb", type=float,
                   help="oldest finished jobs are removed to keep all jobs under this (default 20; 0: no budget)")
    s.add_argument("--job-workers", type=int, help="worker processes, i.e. jobs run at once (default 1)")
    s.add_argument("--max-job-memory-gb", type=float,
                   help="hard memory limit of each worker process (default 3/4 of this machine's RAM; 0: none)")
    s.add_argument("--max-job-minutes", type=float, help="time limit of one job (default 60; 0: none)")
    s.set_defaults(func=_serve)

    w = sub.add_parser("watertight", help="remesh IN into a closed, manifold, oriented mesh")
    w.add_argument("input", type=Path, help="mesh file: GLB, OBJ, PLY or STL")
    w.add_argument("-o", "--output", type=Path, required=True, help="output file (.glb, .obj, .ply or .stl)")
    w.add_argument("--resolution", type=int, default=128, help="grid cells along the longest side (default 128)")
    w.add_argument("--keep", choices=("all", "largest"), default="all",
                   help="keep every solid part, or only the largest by volume (default all)")
    w.add_argument("--cavities", choices=("fill", "keep"), default="fill",
                   help="fill enclosed empty space, or keep it as inner surfaces (default fill)")
    w.add_argument("--target-faces", type=int, help="decimate to about this many faces, keeping the mesh closed")
    w.add_argument("--smooth", action="store_true",
                   help="vertices at the mean of their cell's crossings instead of on the input's creases and corners")
    w.set_defaults(func=lambda a: _run_pipeline(a, "watertight", {
        "resolution": a.resolution, "keep": a.keep, "cavities": a.cavities, "target_faces": a.target_faces,
        "sharp_features": not a.smooth}))

    a = sub.add_parser("artist", help="retopologize IN into low-poly quad-dominant (or quad, or triangle) topology")
    a.add_argument("input", type=Path, help="mesh file: GLB, OBJ, PLY or STL")
    a.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (.obj and .glb keep quads; .ply and .stl hold triangles)")
    a.add_argument("--faces", type=int, default=2000, help="faces (polygons) wanted (default 2000)")
    a.add_argument("--mode", choices=("quads", "quad_dominant", "triangles"), default="quad_dominant",
                   help="quad-dominant (default), quads only, or triangles only")
    a.add_argument("--sharp-angle", type=float, default=30.0,
                   help="dihedral angle in degrees above which an edge is kept sharp (default 30)")
    a.add_argument("--no-sharp", action="store_true", help="do not keep sharp edges")
    a.add_argument("--resolution", type=int,
                   help="watertight grid for broken inputs (default: chosen from --faces)")
    a.add_argument("--chamfer", action="store_true",
                   help="also measure Chamfer-L1 to the input (the benches' convention, 10^6 samples; seconds)")
    a.set_defaults(func=lambda a: _run_pipeline(a, "artist", {
        "faces": a.faces, "mode": a.mode, "sharp_edges": not a.no_sharp, "sharp_angle": a.sharp_angle,
        "resolution": a.resolution, "measure_chamfer": a.chamfer}))
    t = sub.add_parser("texture", help="UV-unwrap IN and bake its base colour (and normal map) from a source")
    t.add_argument("input", type=Path, help="the mesh to texture: GLB, OBJ, PLY or STL")
    t.add_argument("-o", "--output", type=Path, required=True, help="output .glb (keeps UVs, material, polygons)")
    colour = t.add_mutually_exclusive_group(required=True)
    colour.add_argument("--source", type=Path,
                        help="coloured mesh to bake from (GLB, OBJ with MTL + images beside it, PLY, or a ZIP)")
    colour.add_argument("--views", type=Path, help="posed views: a render/ folder (cameras.json + images) or its ZIP")
    t.add_argument("--size", type=int, default=1024, help="texture side in pixels (default 1024)")
    t.add_argument("--padding", type=int, default=4, help="empty pixels around each UV island (default 4)")
    t.add_argument("--no-normal-map", dest="normal_map", action="store_false", help="bake the base colour only")
    t.add_argument("--view-power", type=float, default=4.0,
                   help="views only: exponent of the view-angle weight (default 4)")
    t.add_argument("--hard-angle", type=float, default=40.0,
                   help="edges sharper than this many degrees shade crisp; 180: smooth everywhere (default 40)")
    t.set_defaults(func=_texture)

    x = sub.add_parser("text", help="a mesh written face by face by a language model from PROMPT")
    x.add_argument("prompt", help="what to make, e.g. 'a wooden chair'")
    x.add_argument("-o", "--output", type=Path, required=True, help="output file (.obj and .glb keep quads)")
    x.add_argument("--model", choices=("meshsmith", "llama-mesh"), default="meshsmith",
                   help="Meshsmith's small mesh model (default) or LLaMA-Mesh (a GGUF file / transformers weights)")
    x.add_argument("--weights", help="checkpoint folder / .gguf file / hub repo id in the cache (default: shipped "
                                     "weights; LLaMA-Mesh: its Q4_K_M GGUF from the Hugging Face cache)")
    x.add_argument("--max-faces", type=int, default=500, help="stop after this many faces (default 500)")
    x.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    x.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    x.add_argument("--repair", choices=("none", "watertight", "artist"), default="none",
                   help="keep the faces as written (default), close them, or re-lay them out")
    x.set_defaults(func=lambda a: _run_pipeline(a, "text_to_mesh", {
        "prompt": a.prompt, "model": a.model, "weights": a.weights, "max_faces": a.max_faces,
        "temperature": a.temperature, "seed": a.seed, "repair": a.repair}, mesh=False))

    q = sub.add_parser("points", help="an artist mesh written by the mesh model over a point cloud or mesh IN")
    q.add_argument("input", type=Path, help="a PLY point cloud (normals optional) or a mesh file to sample")
    q.add_argument("-o", "--output", type=Path, required=True, help="output file (.obj and .glb keep quads)")
    q.add_argument("--weights", help="checkpoint folder or hub repo id (default: the shipped mesh model)")
    q.add_argument("--max-faces", type=int, default=800, help="stop after this many faces (default 800)")
    q.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (default 0.5)")
    q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    q.add_argument("--up", choices=("y", "z"), default="y", help="the input's up axis (default y)")
    q.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the artist pipeline's reference at the same face count")
    q.set_defaults(func=lambda a: _run_pipeline(a, "points_to_mesh", {
        "weights": a.weights, "max_faces": a.max_faces, "temperature": a.temperature, "seed": a.seed,
        "up_axis": a.up, "compare_artist": a.compare}, {"points": a.input}, mesh=False))

    b = sub.add_parser("bench", help="measure pipelines against Blender's own tools")
    from backend.bench import cli as bench

    bench.add_arguments(b)
    b.set_defaults(func=bench.main)

    from backend.preprocess import PreprocessOptions

    d = PreprocessOptions()
    p = sub.add_parser("preprocess",
                       help="watertight remesh + surface, SDF and salient-edge samples, one .npz per mesh")
    p.add_argument("input", type=Path, help="a mesh file, or a folder searched recursively for mesh files")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable: existing .npz are skipped)")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help=f"watertight grid resolution (default {d.resolution})")
    p.add_argument("--surface", type=int, default=d.n_surface,
                   help=f"surface points with normals (default {d.n_surface})")
    p.add_argument("--sdf-uniform", type=int, default=d.n_sdf_uniform,
                   help=f"SDF points uniform in [-1, 1]^3 (default {d.n_sdf_uniform})")
    p.add_argument("--sdf-near", type=int, default=d.n_sdf_near,
                   help=f"SDF points near the surface (default {d.n_sdf_near})")
    p.add_argument("--salient", type=int, default=d.n_salient, help=f"points on salient edges (default {d.n_salient})")
    p.add_argument("--angle", type=float, default=d.angle_deg,
                   help=f"dihedral angle of a salient edge, degrees (default {d.angle_deg:g})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.set_defaults(func=_preprocess)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.command != "serve"
                        else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
