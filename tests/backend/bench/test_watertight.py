"""The watertight benchmark runs both methods in child processes and reports real figures."""

from __future__ import annotations

import json

import pytest

from backend.bench.watertight import bench_watertight, summarize
from backend.mesh.io import save_mesh
from backend.mesh.types import Mesh
from tests import meshes

pytestmark = pytest.mark.slow


def test_bench_measures_both_methods_and_writes_json_and_plot(tmp_path):
    save_mesh(Mesh(*meshes.broken_mesh()), tmp_path / "in" / "broken.ply")
    (tmp_path / "in" / "notes.txt").write_text("not a mesh, skipped")
    report = bench_watertight(tmp_path / "in", [24, 48], tmp_path / "out", samples=5_000)
    rows = report["rows"]
    assert {(r["method"], r["resolution"]) for r in rows} == {(m, r) for m in ("meshsmith", "blender") for r in (24, 48)}
    for row in rows:
        assert "error" not in row, row
        assert row["seconds"] > 0 and row["peak_mb"] >= row["baseline_mb"] > 10
        assert row["closed"] and row["faces"] > 100
        assert row["manifold"] == row["oriented"] == True  # noqa: E712 (both methods, this mesh)
        assert 0 < row["chamfer"] < 0.2
        # Exact distances: far below the sampled figure's floor, never above it.
        assert 0 < row["surface_chamfer"] < row["chamfer"]
    # Finer grids give more faces, for both methods.
    for method in ("meshsmith", "blender"):
        faces = {r["resolution"]: r["faces"] for r in rows if r["method"] == method}
        assert faces[48] > faces[24]
    saved = json.loads((tmp_path / "out" / "watertight.json").read_text())
    assert saved["summary"] == report["summary"] and saved["summary"]["median_time_ratio"] > 0
    assert (tmp_path / "out" / "watertight.png").stat().st_size > 10_000


def test_summary_is_the_median_of_per_mesh_ratios():
    rows = [
        {"method": m, "mesh": name, "resolution": 64, "seconds": s, "chamfer": c, "peak_mb": 100.0,
         "closed": True, "manifold": True, "oriented": True}
        for name, (ours, theirs) in {"a": ((1.0, 0.1), (2.0, 0.1)), "b": ((3.0, 0.3), (1.0, 0.1)),
                                     "c": ((1.0, 0.2), (1.0, 0.1))}.items()
        for m, (s, c) in (("meshsmith", ours), ("blender", theirs))
    ]
    summary = summarize(rows)
    assert summary["median_time_ratio"] == pytest.approx(1.0)  # ratios 0.5, 3, 1
    assert summary["median_chamfer_ratio"] == pytest.approx(2.0)  # ratios 1, 3, 2
    assert summary["all_closed_manifold_oriented"]
    assert summary["time_exponent"]["meshsmith"] is None  # one resolution: no slope


def test_ratios_and_goals_are_on_the_surface_chamfer_when_rows_have_it():
    rows = [
        {"method": m, "mesh": name, "resolution": 256, "seconds": 1.0, "chamfer": sampled, "surface_chamfer": exact,
         "peak_mb": mb, "closed": True, "manifold": True, "oriented": True}
        for name, pair in {"floor": ((0.0101, 1e-4, 90.0), (0.0100, 2e-4, 100.0)),
                           "worse": ((0.0100, 3e-4, 120.0), (0.0100, 2e-4, 100.0))}.items()
        for m, (sampled, exact, mb) in zip(("meshsmith", "blender"), pair)
    ]
    summary = summarize(rows)
    by_mesh = {p["mesh"]: p for p in summary["pairs"]}
    assert by_mesh["floor"]["chamfer_ratio"] == pytest.approx(0.5)
    assert by_mesh["floor"]["sampled_chamfer_ratio"] == pytest.approx(1.01)
    assert by_mesh["worse"]["chamfer_ratio"] == pytest.approx(1.5)
    assert summary["chamfer_goal_met"] == 1 and summary["memory_goal_met"] == 1
    assert summary["median_chamfer_ratio"] == pytest.approx(1.0)


def test_exponent_is_the_median_slope_of_log_time_against_log_resolution():
    rows = [{"method": "meshsmith", "mesh": name, "resolution": res, "seconds": t, "chamfer": 0.1, "peak_mb": 50.0,
             "closed": True, "manifold": name != "c", "oriented": True}
            for name, times in {"a": (1.0, 4.0), "b": (1.0, 8.0), "c": (2.0, 4.0)}.items()
            for res, t in zip((128, 256), times)]
    summary = summarize(rows)
    assert summary["time_exponent"]["meshsmith"] == pytest.approx(2.0)  # slopes 2, 3, 1
    assert summary["memory_exponent"]["meshsmith"] == pytest.approx(0.0)
    assert summary["time_exponent"]["blender"] is None
    assert not summary["all_closed_manifold_oriented"]  # mesh c is not manifold


def test_the_plot_takes_any_number_of_meshes(tmp_path):
    """Issue 19: eleven meshes crashed the plot (a KeyError past tab10's ten colours)."""
    from backend.bench.watertight import plot

    rows = [{"method": m, "mesh": f"mesh{i:02d}", "resolution": r, "seconds": 0.1 * r, "chamfer": 1.0 / r,
             "peak_mb": 100.0 + r} for i in range(25) for m in ("meshsmith", "blender") for r in (64, 128)]
    plot(rows, tmp_path / "many.png")
    assert (tmp_path / "many.png").stat().st_size > 10_000
