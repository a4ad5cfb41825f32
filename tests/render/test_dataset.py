"""render.dataset's bookkeeping without Blender: names, crashed workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from render.dataset import _run_local, find_assets
from render.views import RenderConfig


def fake_render(asset: str, out_dir: str, config: RenderConfig) -> dict:
    """Stands in for render_one in the worker: dies like a crashing Blender on 'crash' assets."""
    if Path(asset).stem.startswith("crash"):
        os._exit(139)
    if Path(asset).stem.startswith("raise"):
        raise RuntimeError("no such material")
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # a retry after a broken pool finds it made
    return {"asset": asset, "ok": True, "seconds": 0.0}


def test_a_crashing_worker_fails_only_its_asset(tmp_path):
    names = ["a", "b", "crash", "c", "raise", "d"]
    tasks = {n: tmp_path / f"{n}.obj" for n in names}
    seen = []
    records = _run_local(tasks, tmp_path / "out", RenderConfig(), 2, seen.append, task=fake_render)
    by_name = {r["name"]: r for r in records}
    assert sorted(by_name) == sorted(names) and len(records) == len(names) == len(seen)
    assert not by_name["crash"]["ok"] and "worker process died" in by_name["crash"]["error"]
    assert not by_name["raise"]["ok"] and "no such material" in by_name["raise"]["error"]
    assert all(by_name[n]["ok"] for n in names if n not in ("crash", "raise"))


def test_asset_names_are_unique_and_skip_hidden_and_output(tmp_path):
    for rel in ("a.obj", "a.glb", "sub/b.STL", "sub/c.ply", ".hidden/d.obj", "notes.txt", "out/e.obj"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    found = find_assets(tmp_path, exclude=tmp_path / "out")
    assert sorted(found) == ["a_glb", "a_obj", "sub__b", "sub__c"]
    with pytest.raises(ValueError, match="not a folder"):
        find_assets(tmp_path / "missing")


def test_a_worker_renders_after_this_process_imported_bpy(tmp_path):
    """Regression: a spawned worker inherits sys.path, which after ``import bpy`` holds Blender's
    script folders; their pure-Python ``bpy`` shadowed the real one (No module named '_bpy')."""
    import bpy  # noqa: F401  (the parent state that broke the workers)

    from backend.mesh.io import mesh_to_bytes
    from backend.mesh.types import Mesh
    from render.dataset import run
    from tests import meshes

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ball.obj").write_bytes(mesh_to_bytes(Mesh(*meshes.uv_sphere(8, 16, radius=0.5)), "obj"))
    summary = run(tmp_path / "in", tmp_path / "out", RenderConfig(width=32, height=32, samples=1, threads=1),
                  workers=1, show_progress=False)
    assert summary["failed"] == 0, [r.get("error") for r in summary["records"]]
    assert (tmp_path / "out" / "ball" / "cameras.json").is_file()
