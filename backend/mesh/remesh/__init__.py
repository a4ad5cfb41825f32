"""The watertight engine: any triangle soup in, a closed, manifold, outward-oriented remesh out.

Promises: every result of :func:`~backend.mesh.remesh.watertight.watertight` is closed
(every edge in two faces), manifold (one fan per vertex) and consistently wound outward,
and lies on the input wherever the input was closed (no dilation by the shell); time and
memory grow with the surface's area, not the grid's volume.

- :mod:`~backend.mesh.remesh.watertight`: the method (shell, flood fill, signs, meshing)
  and its entry point;
- :mod:`~backend.mesh.remesh.distance`: exact distances in a narrow band of grid nodes;
- :mod:`~backend.mesh.remesh.blocks`: the lattice's windows and sparse 8^3 blocks, and the
  flood fill over them;
- :mod:`~backend.mesh.remesh.dual`: dual contouring (sharp creases kept);
- :mod:`~backend.mesh.remesh.sheets`: the slab around an open sheet pulled onto its two sides;
- :mod:`~backend.mesh.remesh.decimate`: edge collapses that keep a mesh closed and manifold;
- :mod:`~backend.mesh.remesh.gpu`: the same distances with cubvh on a CUDA device (optional).
"""
