"""``python -m backend watertight`` as a person runs it."""

from __future__ import annotations

import subprocess
import sys

import trimesh

from backend.mesh.io import save_mesh
from backend.mesh.types import Mesh
from tests import meshes
from tests.backend.server_process import REPO


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_watertight_command_writes_a_closed_mesh_and_a_summary(tmp_path):
    src = save_mesh(Mesh(*meshes.sphere_with_holes()), tmp_path / "in.stl")
    out = tmp_path / "out.ply"
    run = _cli("watertight", str(src), "-o", str(out), "--resolution", "48")
    assert run.returncode == 0, run.stderr
    result = trimesh.load(out, force="mesh")
    assert result.is_watertight and result.is_winding_consistent and result.volume > 0
    line = run.stdout.strip().splitlines()[-1]
    assert f"faces {len(result.faces)}" in line and "watertight True" in line and "seconds" in line


def test_watertight_command_explains_a_broken_file(tmp_path):
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nf 1 2 3\n")
    run = _cli("watertight", str(bad), "-o", str(tmp_path / "out.glb"))
    assert run.returncode == 2 and "NaN" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.glb").exists()
