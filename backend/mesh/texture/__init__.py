"""Texturing: UVs plus baked base colour and tangent-space normal maps, as a glTF PBR material.

Promises: :func:`~backend.mesh.texture.bake.bake_textures` keeps the target's surface and
winding, gives every face a place in the atlas (islands apart by the padding asked for),
and bakes colour from a textured source mesh or from posed views, with normal maps in
glTF's and Blender's convention (+Y up, MikkTSpace tangents).

- :mod:`~backend.mesh.texture.bake`: the entry point: unwrap, rasterize, sample, encode;
- :mod:`~backend.mesh.texture.uv`: UV unwrapping (xatlas for low-poly meshes, planar projection for dense ones);
- :mod:`~backend.mesh.texture.atlas`: texture space: the texels a layout covers, and the gutters around charts;
- :mod:`~backend.mesh.texture.source`: colour sources: a mesh's textures, vertex colours;
- :mod:`~backend.mesh.texture.projection`: colour from posed views (cameras, z-buffer).
"""
