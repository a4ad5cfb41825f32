"""Pictures of meshes: shaded splats and comparison sheets survive what a model can write."""

from __future__ import annotations

import numpy as np

from training.visual import comparison_sheet, shade
from tests import meshes


def test_shade_draws_a_mesh_and_leaves_a_flat_one_blank():
    v, f = meshes.cube(size=1.5)
    img = shade(v, f, size=64)
    assert img.shape == (64, 64) and (img < 1.0).mean() > 0.2          # the cube covers part of the view
    collinear = np.array([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]])
    assert (shade(collinear, np.array([[0, 1, 2]]), size=64) == 1.0).all()


def test_comparison_sheet_with_a_sample_of_zero_area(tmp_path):
    v, f = meshes.cube()
    flat_v, flat_f = np.array([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0]]), np.array([[0, 1, 2]])
    out = tmp_path / "sheet.png"
    comparison_sheet([("flat", flat_v, flat_f, v, f)], out, title="t")
    assert out.stat().st_size > 1000
