"""Artist topology: a clean, low-poly, quad-dominant (or all-quad, or triangle) mesh at a face budget.

Promises: results of :func:`~backend.mesh.retopo.artist.retopo` are manifold and
consistently wound, close the input where it was closed, keep sharp creases, and come
within a stated tolerance of the face count asked for; quads stay quads.

- :mod:`~backend.mesh.retopo.artist`: the method (weld, reference surface, Instant Meshes'
  field-aligned quads, crease snapping, the face budget) and its entry point;
- :mod:`~backend.mesh.retopo.repair`: any list of polygons into a clean 2-manifold;
- :mod:`~backend.mesh.retopo.quads`: triangles paired into quads, and subdivision.

Uses the watertight engine (:mod:`backend.mesh.remesh`) for inputs too broken to remesh as
they are.
"""
