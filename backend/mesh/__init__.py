"""The mesh core: free functions over ``(n, 3)`` vertex and ``(m, 3)`` / ``(k, 4)`` index arrays.

Three capabilities, each a subpackage, stand on shared geometry below them:

- :mod:`backend.mesh.remesh`: the watertight engine (any soup in, a closed, manifold,
  oriented surface out; decimation that keeps it closed; the optional CUDA distances).
- :mod:`backend.mesh.retopo`: artist topology (quad-dominant remeshing at a face budget,
  repair of polygon meshes, triangles paired into quads). Builds on ``remesh``.
- :mod:`backend.mesh.texture`: UVs, atlases and baked colour and normal maps, from a
  textured source mesh or from posed views.

Shared by all three (and by ``backend.preprocess`` and the benches): the mesh type
(:mod:`~backend.mesh.types`), files (:mod:`~backend.mesh.io`, :mod:`~backend.mesh.gltf`),
polygon arrays (:mod:`~backend.mesh.polygons`), the point-triangle kernel
(:mod:`~backend.mesh.triangles`), closest points on a surface (:mod:`~backend.mesh.nearest`),
sampling and SDFs (:mod:`~backend.mesh.sampling`), quality metrics
(:mod:`~backend.mesh.metrics`), normals and tangents (:mod:`~backend.mesh.tangents`),
the compiled kernels (:mod:`~backend.mesh.native`, ``_native.c``) and the process pool
(:mod:`~backend.mesh.parallel`).

Imports go downward only: a capability may import the shared modules and a capability
listed before it, never the reverse; ``tests/backend/test_imports.py`` checks that no
module imports one that imports it back.
"""
