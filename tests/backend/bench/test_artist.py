"""The artist benchmark runs Meshsmith and QuadriFlow in child processes and reports real figures."""

from __future__ import annotations

import json

import pytest

from backend.bench.artist import bench_artist, format_table, pair_ratios
from backend.mesh.io import save_mesh
from backend.mesh.types import Mesh
from tests import meshes

pytestmark = pytest.mark.slow


def test_bench_runs_both_methods_and_writes_json_and_plot(tmp_path):
    save_mesh(Mesh(*meshes.uv_sphere(16, 32)), tmp_path / "in" / "sphere.stl")
    save_mesh(Mesh(*meshes.broken_mesh()), tmp_path / "in" / "broken.ply")
    v, f = meshes.uv_sphere(16, 32)
    f[7] = f[7, ::-1]                                                 # one face wound backwards
    save_mesh(Mesh(v, f), tmp_path / "in" / "flipped.ply")
    (tmp_path / "in" / "notes.txt").write_text("not a mesh, skipped")
    out = tmp_path / "out" / "artist.json"
    report = bench_artist(tmp_path / "in", [300], ["quads"], out, samples=5_000, pictures=("sphere.stl", "flipped.ply"))
    rows = {(r["mesh"], r["method"]): r for r in report["rows"]}
    assert set(rows) == {(m, k) for m in ("sphere.stl", "broken.ply", "flipped.ply") for k in ("meshsmith", "quadriflow")}
    for row in rows.values():
        assert "error" not in row, row
        assert row["seconds"] > 0 and row["quad_ratio"] == 1.0 and row["manifold"]
        assert abs(row["faces"] / 300 - 1) < 0.25 and 0 < row["surface_chamfer"] < 0.05
        # The sampled figure (5,000 samples) sits on a floor of about 0.025 here; the exact one does not.
        assert 0 < row["surface_chamfer"] < row["chamfer"]
    # QuadriFlow takes the clean sphere as it is, the one with a backwards face mended, and
    # needs the watertight remesh for the broken torus.
    assert rows[("sphere.stl", "quadriflow")]["input"] == "input"
    assert rows[("flipped.ply", "quadriflow")]["input"] == "mended"
    assert rows[("flipped.ply", "meshsmith")]["input"] == "input"
    assert rows[("broken.ply", "quadriflow")]["input"] == "watertight"
    assert rows[("broken.ply", "meshsmith")]["input"] == "watertight"
    assert len(report["pairs"]) == 3 and all(p["time_ratio"] > 0 for p in report["pairs"])
    saved = json.loads(out.read_text())
    assert saved["summary"] == report["summary"] and saved["summary"]["all_manifold"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert (tmp_path / "out" / "artist-layouts.png").stat().st_size > 20_000           # two rows, both methods
    table = format_table(report["rows"], report["pairs"])
    assert "quadriflow (on watertight)" in table and "quadriflow (on mended)" in table and "time x" in table
    assert saved["summary"]["quadriflow_failed_on_input"] == {"broken.ply": "watertight", "flipped.ply": "mended"}
    # The layout figures, on both methods: a closed sphere in one piece, its quads measured.
    for row in rows.values():
        assert row["input_components"] >= 1 and row["components"] >= 1 and 0.0 <= row["crease_coverage"] <= 1.0
        assert 0.0 < row["max_quad_angle"] < 360.0 and row["poles_per_1000"] >= 0.0      # a concave corner: > 180
    assert rows[("sphere.stl", "meshsmith")]["input_components"] == 1
    assert "layout_goal_met" in report["pairs"][0] and "parts" in table


def test_repeated_runs_alternate_between_the_methods(tmp_path, monkeypatch):
    import tempfile

    save_mesh(Mesh(*meshes.uv_sphere(12, 24)), tmp_path / "in" / "sphere.stl")
    (tmp_path / "a temp dir").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a temp dir"))  # results saved to a path with spaces
    report = bench_artist(tmp_path / "in", [200], ["quads"], tmp_path / "artist.json", samples=2_000,
                          surface_samples=2_000, repeat=2)
    rows = {r["method"]: r for r in report["rows"]}
    ours, theirs = rows["meshsmith"], rows["quadriflow"]
    assert len(ours["run_seconds"]) == len(theirs["run_seconds"]) == 2
    assert ours["seconds"] == min(ours["run_seconds"]) and theirs["seconds"] == min(theirs["run_seconds"])
    started = sorted([(t, "meshsmith") for t in ours["run_started"]] + [(t, "quadriflow") for t in theirs["run_started"]])
    assert [m for _, m in started] == ["meshsmith", "quadriflow"] * 2


def test_a_child_that_dies_gives_an_error_row_and_the_bench_goes_on(tmp_path, monkeypatch):
    from backend.bench import artist

    save_mesh(Mesh(*meshes.uv_sphere(12, 24)), tmp_path / "sphere.stl")
    real = artist._Remesher.__init__

    def dying(self, method, mesh_path, target):
        real(self, method, mesh_path, target)
        if method == "quadriflow":
            self._proc.kill()

    monkeypatch.setattr(artist._Remesher, "__init__", dying)
    rows = artist.run_pair(tmp_path / "sphere.stl", 200, [("meshsmith", "quads"), ("quadriflow", "quads")],
                           samples=2_000, surface_samples=2_000, repeat=2)
    assert "error" not in rows[0] and len(rows[0]["run_seconds"]) == 2
    assert "error" in rows[1] and rows[1]["method"] == "quadriflow"


def test_pair_ratios_and_goal():
    rows = [
        {"method": "meshsmith", "mode": "quads", "mesh": "a", "target": 100, "seconds": 1.0, "chamfer": 0.9,
         "quad_ratio": 1.0},
        {"method": "meshsmith", "mode": "quad_dominant", "mesh": "a", "target": 100, "seconds": 0.5, "chamfer": 0.8,
         "quad_ratio": 0.95},
        {"method": "quadriflow", "mode": "quads", "mesh": "a", "target": 100, "seconds": 4.0, "chamfer": 1.0,
         "quad_ratio": 1.0, "input": "input"},
        {"method": "meshsmith", "mode": "quads", "mesh": "b", "target": 100, "error": "boom"},
    ]
    pairs = {p["mode"]: p for p in pair_ratios(rows)}
    assert pairs["quads"]["time_ratio"] == 0.25 and pairs["quads"]["chamfer_ratio"] == 0.9
    assert pairs["quads"]["goal_met"]
    assert not pairs["quad_dominant"]["goal_met"]                  # fewer quads than QuadriFlow
    assert "layout_goal_met" not in pairs["quads"]                 # rows without the layout figures


def test_the_chamfer_ratio_is_the_surface_one_where_rows_have_it():
    ours = {"method": "meshsmith", "mode": "quads", "mesh": "a", "target": 100, "seconds": 1.0, "chamfer": 0.99,
            "surface_chamfer": 0.3, "quad_ratio": 1.0}
    qf = {"method": "quadriflow", "mode": "quads", "mesh": "a", "target": 100, "seconds": 4.0, "chamfer": 1.0,
          "surface_chamfer": 0.6, "quad_ratio": 1.0, "input": "input"}
    (pair,) = pair_ratios([ours, qf])
    assert pair["chamfer_ratio"] == 0.5 and pair["sampled_chamfer_ratio"] == 0.99


def test_the_layout_goal_needs_every_part_of_it():
    layout = {"valence4_share": 0.90, "obtuse_quads": 0, "components": 1, "input_components": 1,
              "crease_coverage": 0.5}
    qf = {"method": "quadriflow", "mode": "quads", "mesh": "a", "target": 100, "seconds": 4.0, "chamfer": 1.0,
          "quad_ratio": 1.0, "input": "input", "valence4_share": 0.92, "obtuse_quads": 0, "components": 1,
          "input_components": 1, "crease_coverage": 0.3}
    ours = {"method": "meshsmith", "mode": "quads", "mesh": "a", "target": 100, "seconds": 1.0, "chamfer": 0.9,
            "quad_ratio": 1.0, **layout}
    assert pair_ratios([ours, qf])[0]["layout_goal_met"]
    for change in ({"valence4_share": 0.88}, {"obtuse_quads": 1}, {"components": 12}, {"crease_coverage": 0.3},
                   {"chamfer": 1.0}, {"seconds": 2.5}):
        assert not pair_ratios([{**ours, **change}, qf])[0]["layout_goal_met"], change
