"""render.dataset as Ray tasks on a private local Ray instance (``--ray-address local``)."""

from __future__ import annotations

import json

import pytest

from tests.render.checks import check_geometry, flat_shape, run

pytest.importorskip("ray")


def test_ray_tasks_render_and_record_failures(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "shape.stl").write_bytes(flat_shape().export(file_type="stl"))
    (src / "bad.obj").write_text("v 0 0 0\nf 1 2 3\n")  # a face on vertices that do not exist
    proc = run(["-m", "render.dataset", "--input-dir", str(src), "--out", str(out), "--ray-address", "local",
                "--resolution", "48", "--no-colour", "--no-progress"])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "1 rendered, 0 skipped (already complete), 1 failed" in proc.stdout
    failure = json.loads((out / "failures.jsonl").read_text())
    assert failure["name"] == "bad" and "no mesh with faces" in failure["error"]
    check_geometry(out / "shape", src / "shape.stl")
