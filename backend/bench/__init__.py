"""Benchmarks against Blender's own tools, run as ``python -m backend bench {watertight,artist,texture}``.

Each compares one capability with what Blender offers for the same job, in fresh child
processes so that times and peak memory are clean: :mod:`~backend.bench.watertight` (the
engine against the voxel remesher), :mod:`~backend.bench.artist` (retopology against
QuadriFlow) and :mod:`~backend.bench.texture` (baked textures, judged by renders against
the source). They write JSON and a plot, and print a table; :mod:`~backend.bench.cli` holds
the command line. Nothing here is imported by the server or the pipelines.
"""
