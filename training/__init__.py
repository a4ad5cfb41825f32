"""Meshsmith's training package: datasets built from render/ and the backend, models, one training loop.

``training.data`` builds asset corpora (any folder of meshes; Sweet Home 3D's furniture
catalogues from Debian's ``sweethome3d-furniture`` package) with per-asset credit, licence
and a seeded train / val / test split.
"""
