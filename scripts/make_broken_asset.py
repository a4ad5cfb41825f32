"""Make assets/spot_broken.obj, the demo's broken input, from Keenan Crane's Spot (CC0).

Usage: python scripts/make_broken_asset.py PATH/TO/spot.obj

Cuts holes (the faces around a few seed faces), flips the winding of a scattered tenth
of the faces and duplicates another twentieth: the kinds of damage real downloads have.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh


def break_mesh(mesh: trimesh.Trimesh, seed: int = 7) -> trimesh.Trimesh:
    rng = np.random.default_rng(seed)
    v, f = mesh.vertices, mesh.faces.copy()
    centroids = mesh.triangles_center
    holes = np.zeros(len(f), bool)
    for centre in centroids[rng.choice(len(f), 12, replace=False)]:
        holes |= np.linalg.norm(centroids - centre, axis=1) < 0.012 * mesh.scale
    f = f[~holes]
    flip = rng.random(len(f)) < 0.10
    f[flip] = f[flip][:, ::-1]
    dupes = f[rng.random(len(f)) < 0.05]
    return trimesh.Trimesh(v, np.vstack([f, dupes]), process=False)


if __name__ == "__main__":
    source = trimesh.load(sys.argv[1], force="mesh", process=False)
    broken = break_mesh(source)
    out = Path(__file__).resolve().parents[1] / "assets" / "spot_broken.obj"
    out.write_text("# Spot by Keenan Crane (CC0), damaged on purpose by scripts/make_broken_asset.py\n"
                   + "\n".join(line for line in broken.export(file_type="obj", include_normals=False, include_texture=False).splitlines() if not line.startswith("#")) + "\n")
    print(f"{out}: {len(broken.faces)} faces, watertight={broken.is_watertight}, "
          f"winding consistent={broken.is_winding_consistent}")
