"""Make assets/spot_broken.obj, the demo's broken input, from Keenan Crane's Spot (CC0).

Usage: python scripts/make_broken_asset.py PATH/TO/spot.obj

Deletes a dozen scattered faces (small holes, a triangle each), flips the winding of a
tenth of the faces and duplicates another twentieth: the kinds of damage real downloads
have. The holes are ones the first watertight version seals at the demo's resolution
(128): holes wider than about two voxels are wrapped, not filled (see README).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh


#: Holes are single faces whose edges are all shorter than this (Spot units; median edge 0.048).
SMALL_FACE_EDGE = 0.04


def break_mesh(mesh: trimesh.Trimesh, seed: int = 7) -> trimesh.Trimesh:
    rng = np.random.default_rng(seed)
    v, f = mesh.vertices, mesh.faces.copy()
    longest_edge = mesh.edges_unique_length[mesh.faces_unique_edges].max(axis=1)
    small = np.flatnonzero(longest_edge < SMALL_FACE_EDGE)
    holes = rng.choice(small, 12, replace=False)
    f = np.delete(f, holes, axis=0)
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
