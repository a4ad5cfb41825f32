"""The mesh every module passes around: triangles as plain arrays, optional polygons, UVs and a material.

Below every other mesh module: readers and writers (:mod:`backend.mesh.io`,
:mod:`backend.mesh.gltf`) produce and consume these; pipelines return them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    """A PBR material with baked textures (PNG bytes), as results carry it.

    Attributes
    ----------
    base_color : bytes or None
        sRGB colour texture.
    normal : bytes or None
        Tangent-space normal map (glTF / Blender convention: +Y up, MikkTSpace tangents).
    roughness : float
    name : str
    metallic : float
        glTF ``metallicFactor`` (0: dielectric).
    """

    base_color: bytes | None = None
    normal: bytes | None = None
    roughness: float = 0.8
    name: str = "meshsmith"
    metallic: float = 0.0


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh as plain arrays, optionally with polygons, UVs and a material.

    Attributes
    ----------
    vertices : (n, 3) float64
    faces : (m, 3) int64, indices into ``vertices``
    face_sizes : (k,) uint8 or None
        Polygon sizes (3 or 4) when the mesh has quads: ``faces`` lists each polygon's
        triangles in order, a quad ``(a, b, c, d)`` as ``(a, b, c), (a, c, d)``
        (:func:`backend.mesh.gltf.polygon_triangles` builds this). None: every face is a triangle.
    uv : (n, 2) float64 or None
        Per-vertex texture coordinates, origin at the bottom-left (Blender's convention).
    material : Material or None
    normals : (n, 3) float64 or None
        Per-vertex unit shading normals. Results with a normal map carry the normals it was
        baked against (a tangent-space map is only right on those); None: readers choose
        (glTF readers shade flat).
    vertex_ids : (n,) int64 or None
        For a mesh whose vertices were split (UV seams, hard edges), the vertex each one copies
        in the mesh it was made from: copies share an id. A reader welds by it, not by position,
        so distinct vertices that happen to coincide stay distinct.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_sizes: np.ndarray | None = None
    uv: np.ndarray | None = None
    material: Material | None = None
    normals: np.ndarray | None = None
    vertex_ids: np.ndarray | None = None
