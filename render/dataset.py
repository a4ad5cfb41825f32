"""Render a folder of assets into a dataset, in local processes or as Ray tasks; resumable.

    python -m render.dataset --input-dir DIR --out DIR [--layout zero123pp] [--workers N]
                             [--ray-address ADDR] [render options of render.views]

One task per asset (:func:`render_one`, the same function locally and on Ray). Each asset
is rendered into ``OUT/<name>.tmp-*`` and renamed to ``OUT/<name>`` when complete, so an
interrupted run leaves no half-written asset; a later run skips every asset whose folder is
complete. An asset that fails (unreadable file, Blender error, even a crashed worker) is
written to ``OUT/failures.jsonl`` with its error, and the run goes on. At the end
``OUT/manifest.jsonl`` lists every complete asset of ``OUT``, this run's and earlier ones,
with its files and normalization. Exit status: 0, or 3 when some asset failed.

``--ray-address`` runs the tasks on a Ray cluster (``auto``, ``HOST:PORT``, or ``local`` to
start a private one); every node needs this project and its requirements installed, and
``--input-dir`` / ``--out`` on a file system all nodes share.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from render.scene import ASSET_SUFFIXES
from render.views import RenderConfig, add_render_arguments, config_from_args, exit_hard

log = logging.getLogger(__name__)

#: How often an asset is tried after the process rendering it died (a crash in Blender).
CRASH_RETRIES = 1


def find_assets(input_dir: Path, *, exclude: Path | None = None) -> dict[str, Path]:
    """Asset files under ``input_dir`` by output name, sorted.

    The name is the path relative to ``input_dir`` without suffix, ``/`` turned into ``__``;
    when two files would share a name (``a.obj`` and ``a.glb``) both get their suffix appended.
    """
    if not input_dir.is_dir():
        raise ValueError(f"--input-dir {str(input_dir)!r} is not a folder")
    files = []
    for p in sorted(input_dir.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in ASSET_SUFFIXES:
            continue
        rel = p.relative_to(input_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if exclude is not None and exclude.resolve() in p.resolve().parents:
            continue
        files.append((rel, p))
    stems: dict[str, int] = {}
    for rel, _ in files:
        stem = rel.with_suffix("").as_posix().replace("/", "__")
        stems[stem] = stems.get(stem, 0) + 1
    named = {}
    for rel, p in files:
        stem = rel.with_suffix("").as_posix().replace("/", "__")
        name = stem if stems[stem] == 1 else f"{stem}_{rel.suffix.lower()[1:]}"
        named[name] = p
    return named


def is_complete(folder: Path) -> bool:
    """An asset folder is complete when its ``cameras.json`` (written last, then renamed in) is there."""
    return (folder / "cameras.json").is_file()


def render_one(asset: str, out_dir: str, config: RenderConfig) -> dict:
    """Render one asset into ``out_dir`` (atomic); never raises: failures come back as a record."""
    t = time.perf_counter()
    try:
        from render.views import render_to_folder

        cameras = render_to_folder(asset, out_dir, config, overwrite=True)
        return {"asset": asset, "ok": True, "seconds": round(time.perf_counter() - t, 3),
                "views": len(cameras["views"])}
    except Exception as exc:  # any error of one asset must not stop the dataset
        return {"asset": asset, "ok": False, "seconds": round(time.perf_counter() - t, 3),
                "error": f"{type(exc).__name__}: {str(exc).strip()}",
                "traceback": traceback.format_exc(limit=-4)}


def _run_local(tasks: dict[str, Path], out: Path, config: RenderConfig, workers: int, progress,
               task=render_one) -> list[dict]:
    """Tasks in a pool of ``workers`` processes.

    A worker that dies (Blender crashing) breaks the whole pool; the assets that were in it are
    then tried again one at a time, each in a pool of its own, so only the culprit fails.
    """
    records, crashed = _pool_pass(tasks, out, config, workers, progress, task)
    for name in crashed:
        for attempt in range(CRASH_RETRIES + 1):
            if attempt == CRASH_RETRIES:
                records.append({"name": name, "asset": str(tasks[name]), "ok": False,
                                "error": "the worker process died while rendering this asset (Blender crashed)"})
                progress(records[-1])
                break
            done, again = _pool_pass({name: tasks[name]}, out, config, 1, progress, task)
            records.extend(done)
            if not again:
                break
    return records


def forget_blender_script_paths() -> None:
    """Drop Blender's script folders from ``sys.path`` (a pool worker's initializer).

    A spawned worker starts with its parent's ``sys.path``; when the parent has imported
    ``bpy``, that holds ``bpy/<version>/scripts/modules``, whose pure-Python ``bpy`` package
    shadows the real module (``No module named '_bpy'``). Without them ``import bpy`` finds the
    real one, which adds them back.
    """
    def is_blender_scripts(entry: str) -> bool:
        parts = Path(entry).parts
        return "scripts" in parts and ("bpy" in parts or any(p.lower() == "blender" for p in parts))

    sys.path[:] = [p for p in sys.path if not is_blender_scripts(p)]


def _pool_pass(tasks: dict[str, Path], out: Path, config: RenderConfig, workers: int, progress, task):
    """One pool over ``tasks``: (records, names whose worker died)."""
    records, crashed = [], []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),  # bpy is not fork-safe
                             initializer=forget_blender_script_paths) as pool:
        futures = {pool.submit(task, str(p), str(out / n), config): n for n, p in tasks.items()}
        not_done = set(futures)
        while not_done:
            done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    rec = fut.result()
                except BrokenProcessPool:
                    crashed.append(futures[fut])
                    continue
                except Exception as exc:  # a task that raised instead of reporting: one failed asset
                    rec = {"asset": str(tasks[futures[fut]]), "ok": False,
                           "error": f"{type(exc).__name__}: {str(exc).strip()}"}
                records.append({"name": futures[fut], **rec})
                progress(records[-1])
    return records, crashed


def _run_ray(tasks: dict[str, Path], out: Path, config: RenderConfig, address: str, progress) -> list[dict]:
    """Tasks as Ray tasks, one CPU each, on the cluster at ``address``."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--ray-address needs the `ray` package (pip install ray)") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        remote = ray.remote(num_cpus=1, max_retries=CRASH_RETRIES)(render_one)
        refs = {remote.remote(str(p), str(out / n), config): n for n, p in tasks.items()}
        records = []
        not_done = list(refs)
        while not_done:
            done, not_done = ray.wait(not_done, num_returns=1)
            for ref in done:
                name = refs[ref]
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as exc:  # a crashed worker, after its retries
                    rec = {"asset": str(tasks[name]), "ok": False,
                           "error": f"{type(exc).__name__}: the Ray worker died while rendering this asset"}
                records.append({"name": name, **rec})
                progress(records[-1])
        return records
    finally:
        if started_here:
            ray.shutdown()


def write_manifest(out: Path) -> int:
    """Rewrite ``out/manifest.jsonl`` from every complete asset folder; returns their number."""
    lines = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_complete(folder):
            continue
        cams = json.loads((folder / "cameras.json").read_text())
        files = dict(cams.get("files", {}))
        files["views"] = [v.get("files", {}) for v in cams["views"]]
        lines.append(json.dumps({
            "name": folder.name, "dir": folder.name, "asset": cams["asset"]["input"],
            "sha256": cams["asset"]["sha256"], "layout": cams["layout"], "views": len(cams["views"]),
            "width": cams["render"]["width"], "height": cams["render"]["height"],
            "normalization": cams["normalization"], "files": files,
        }))
    _write_text_atomic(out / "manifest.jsonl", "".join(line + "\n" for line in lines))
    return len(lines)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(input_dir: Path, out: Path, config: RenderConfig, *, workers: int = 1,
        ray_address: str | None = None, show_progress: bool = True) -> dict:
    """Render every incomplete asset of ``input_dir`` into ``out``; returns counts and records."""
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp-*"):  # left by a run that was killed mid-asset
        shutil.rmtree(stale, ignore_errors=True)
    assets = find_assets(input_dir, exclude=out)
    todo = {n: p for n, p in assets.items() if not is_complete(out / n)}
    skipped = len(assets) - len(todo)
    bar = tqdm(total=len(assets), initial=skipped, unit="asset", desc="render", disable=not show_progress,
               file=sys.stderr)

    def progress(record: dict) -> None:
        bar.update(1)
        if not record["ok"]:
            bar.write(f"failed: {record['name']}: {record['error']}", file=sys.stderr)

    t = time.perf_counter()
    try:
        if not todo:
            records = []
        elif ray_address:
            records = _run_ray(todo, out, config, ray_address, progress)
        else:
            records = _run_local(todo, out, config, min(workers, len(todo)), progress)
    finally:
        bar.close()
    failures = [r for r in records if not r["ok"]]
    _write_text_atomic(out / "failures.jsonl", "".join(json.dumps(r) + "\n" for r in failures))
    listed = write_manifest(out)
    return {"assets": len(assets), "rendered": len(records) - len(failures), "skipped": skipped,
            "failed": len(failures), "manifest": listed, "seconds": time.perf_counter() - t,
            "records": records}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.dataset", description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", required=True, type=Path, help="folder of GLB/glTF/OBJ/PLY/STL files")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumable)")
    parser.add_argument("--workers", type=int, default=1, help="local render processes (default 1)")
    parser.add_argument("--ray-address", default=None,
                        help="run as Ray tasks on this cluster (auto, HOST:PORT, or local)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_render_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        config = config_from_args(args)
        summary = run(args.input_dir, args.out, config, workers=args.workers, ray_address=args.ray_address,
                      show_progress=args.progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rendered = [r for r in summary["records"] if r["ok"]]
    per_asset = sum(r["seconds"] for r in rendered) / len(rendered) if rendered else 0.0
    print(f"{summary['assets']} assets: {summary['rendered']} rendered, {summary['skipped']} skipped "
          f"(already complete), {summary['failed']} failed, in {summary['seconds']:.1f} s"
          + (f" ({per_asset:.1f} s per rendered asset in its worker)" if rendered else ""))
    print(f"manifest: {args.out / 'manifest.jsonl'} ({summary['manifest']} assets); "
          f"failures: {args.out / 'failures.jsonl'} ({summary['failed']})")
    return 3 if summary["failed"] else 0


if __name__ == "__main__":
    exit_hard(main())
