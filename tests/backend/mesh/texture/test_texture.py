"""Texture baking on meshes and images the tests make: UVs, colour round trips, normal maps, views."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.conventions import BLENDER_FROM_GLTF, intrinsics_from_fov
from backend.errors import BadSource, BadViews
from backend.mesh.gltf import polygon_triangles
from backend.mesh.io import load_mesh_bytes, mesh_to_bytes, save_mesh
from backend.mesh.nearest import SurfaceIndex
from backend.mesh.tangents import (
    decode_normals,
    encode_normals,
    face_normals,
    split_at_hard_edges,
    vertex_normals,
    vertex_tangents,
)
from backend.mesh.texture import atlas
from backend.mesh.texture.bake import bake_textures
from backend.mesh.texture.projection import load_views, load_views_bytes, zbuffer
from backend.mesh.texture.source import (
    ColourPart,
    ColourSource,
    load_colour_source,
    load_colour_source_bytes,
    sample_bilinear,
)
from backend.mesh.texture.uv import unwrap
from backend.mesh.types import Mesh
from tests import meshes
from tests.backend.mesh.texture.assets import colour_field, png, sphere_source, synthesize_views
from tests.backend.server_process import REPO

# -- helpers: meshes, textures and files made here ----------------------------------------


def _random_surface_points(vertices, faces, n, seed=0):
    rng = np.random.default_rng(seed)
    face = rng.integers(0, len(faces), n)
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    bary = np.stack([1 - r1 - r2, r1, r2], axis=1)
    return face, bary, np.einsum("kc,kcj->kj", bary, vertices[faces[face]])


# -- UVs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["xatlas", "project"])
def test_unwrap_keeps_faces_positions_and_fits_the_square(method):
    v, f = meshes.torus(rings=48, segments=24)
    out = unwrap(Mesh(v, f), texture_size=256, padding=2, method=method)
    m = out.mesh
    np.testing.assert_array_equal(m.vertices[m.faces], v[f])         # same triangles, same order
    np.testing.assert_array_equal(m.vertices, v[out.vertex_map])
    assert m.uv.min() >= 0.0 and m.uv.max() <= 1.0
    t = m.uv[m.faces]
    area = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 1, 1] - t[:, 0, 1]) * (t[:, 2, 0] - t[:, 0, 0])
    assert (np.abs(area) > 0).all()
    if method == "project":
        assert (area > 0).all()                                          # never mirrored
    # No two triangles share a texel centre: the charts do not overlap.
    pixel, _, _, _ = atlas._cover(m.uv, m.faces, 256, 0.0, strict=1e-6)
    assert len(pixel) == len(np.unique(pixel))
    assert 0.2 < out.utilization <= 1.0


def test_unwrap_keeps_quads_grouped():
    n = 6
    xs = np.linspace(-1, 1, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.2 * np.sin(2 * x.ravel())], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(-1, 4)
    tris, sizes = polygon_triangles(quads)
    for method in ("xatlas", "project"):
        out = unwrap(Mesh(v, tris, sizes), texture_size=128, padding=2, method=method)
        m = out.mesh
        assert int((m.face_sizes == 4).sum()) == len(quads) - out.quads_split
        first = np.concatenate([[0], np.cumsum(m.face_sizes.astype(int) - 2)[:-1]])
        for q in np.flatnonzero(m.face_sizes == 4):
            a, b = m.faces[first[q]], m.faces[first[q] + 1]
            assert a[0] == b[0] and a[2] == b[1]                        # one quad, shared diagonal
    assert out.quads_split == 0                                          # projection labels whole polygons


def test_unwrap_rejects_bad_sizes():
    v, f = meshes.cube()
    with pytest.raises(ValueError, match="texture_size"):
        unwrap(Mesh(v, f), texture_size=8)
    with pytest.raises(ValueError, match="method"):
        unwrap(Mesh(v, f), method="magic")


def test_rasterize_border_texels_extrapolate_the_plane():
    uv = np.array([[0.2, 0.2], [0.8, 0.2], [0.2, 0.8]])
    t = atlas.rasterize(uv, np.array([[0, 1, 2]]), 32)
    assert (~t.inside).any() and t.inside.any()
    # Interpolating u itself must give each texel centre's own u, inside and on the border.
    centres = atlas.texel_centres(32)[t.pixel]
    np.testing.assert_allclose(t.interpolate(uv, np.array([[0, 1, 2]])), centres, atol=1e-9)
    known = t.image(np.ones(len(t.pixel))) > 0
    filled = atlas.dilate(t.image(np.arange(len(t.pixel), dtype=float) + 1), known)
    assert (filled > 0).all() and np.array_equal(filled[known], t.image(np.arange(len(t.pixel), dtype=float) + 1)[known])


# -- base colour from a source mesh: the UV round trip ---------------------------------------


def test_checker_comes_back_where_it_should(tmp_path):
    """Bake a checker from a textured sphere onto a differently tessellated sphere with new UVs,
    write GLB, read it back, and compare colours at the same 3D points."""
    src_mesh, _ = sphere_source()
    src_path = save_mesh(src_mesh, tmp_path / "source.glb")
    source = load_colour_source(src_path)
    tv, tf = meshes.uv_sphere(20, 40)
    tv = tv * 1.002                                                     # not on the source exactly
    baked = bake_textures(Mesh(tv, tf), source=source, texture_size=512, normal_map=False)
    out = save_mesh(baked.mesh, tmp_path / "baked.glb")
    result = load_colour_source(out)                                    # the GLB as a reader sees it
    face, bary, points = _random_surface_points(result.vertices, result.faces, 4000)
    got = result.colour_at(face, bary)[:, :3]
    hit = SurfaceIndex(source.vertices, source.faces).closest(points)
    want = source.colour_at(hit.face, hit.bary)[:, :3]
    err = np.abs(got - want).max(axis=1)
    # Away from the checker's edges colours agree to a few 8-bit steps; near an edge the two
    # tessellations put the edge a little apart, so allow a small share of large errors.
    assert np.median(err) < 0.02, np.median(err)
    assert np.mean(err < 0.06) > 0.93, np.mean(err < 0.06)
    # A v flip, a wrong texel centre or a mirrored chart would move the checker: check the
    # colour at cell centres, far from edges, is right everywhere.
    uvs = np.einsum("kc,kcj->kj", hit.bary, source.uv[source.faces[hit.face]])
    cell = (uvs * 8) % 1.0
    central = (np.abs(cell - 0.5) < 0.3).all(axis=1) & (np.abs(points[:, 2]) < 0.9)
    assert central.sum() > 500 and err[central].max() < 0.05, err[central].max()


def test_target_that_is_the_source_itself_gets_its_own_colours(tmp_path):
    src_mesh, _ = sphere_source(16, 32)
    source = load_colour_source(save_mesh(src_mesh, tmp_path / "s.glb"))
    baked = bake_textures(Mesh(src_mesh.vertices, src_mesh.faces), source=source, texture_size=256,
                          normal_map=True)
    result = load_colour_source(save_mesh(baked.mesh, tmp_path / "b.glb"))
    face, bary, points = _random_surface_points(result.vertices, result.faces, 2000, seed=3)
    hit = SurfaceIndex(source.vertices, source.faces).closest(points)
    assert hit.distance.max() < 1e-9
    err = np.abs(result.colour_at(face, bary) - source.colour_at(hit.face, hit.bary))[:, :3].max(axis=1)
    assert np.median(err) < 0.02


def test_source_with_several_textured_primitives_keeps_each_texture(tmp_path):
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 230, 200
    scene = trimesh.Scene()
    for name, pixels, dx in (("left", red, -1.5), ("right", blue, 1.5)):
        box = trimesh.creation.box()
        box.apply_translation([dx, 0, 0])
        uv = np.full((len(box.vertices), 2), 0.5)
        box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.PBRMaterial(
            name=name, baseColorTexture=Image.fromarray(pixels), metallicFactor=0.0, roughnessFactor=0.6))
        scene.add_geometry(box, geom_name=name)
    data = scene.export(file_type="glb")
    source = load_colour_source_bytes(data, name="two boxes")
    assert len(source.parts) == 2 and all(p.image is not None for p in source.parts)
    assert source.surface_factors() == pytest.approx((0.6, 0.0))
    left = source.vertices[:, 0] < 0
    colours = source.colour_at(np.arange(len(source.faces)), np.full((len(source.faces), 3), 1 / 3))
    face_left = left[source.faces[:, 0]]
    np.testing.assert_allclose(colours[face_left, :3], np.tile([230 / 255, 0, 0], (face_left.sum(), 1)), atol=2e-3)
    np.testing.assert_allclose(colours[~face_left, :3], np.tile([0, 0, 200 / 255], ((~face_left).sum(), 1)),
                               atol=2e-3)
    # And a bake onto one remesh of both keeps both colours where they were.
    target = trimesh.creation.box(extents=(4.0, 1.0, 1.0)).subdivide().subdivide()
    baked = bake_textures(Mesh(np.asarray(target.vertices), np.asarray(target.faces)), source=source,
                          texture_size=128, normal_map=False)
    result = load_colour_source(save_mesh(baked.mesh, tmp_path / "b.glb"))
    face, bary, points = _random_surface_points(result.vertices, result.faces, 500)
    c = result.colour_at(face, bary)
    far = np.abs(points[:, 0]) > 1.2
    assert (c[far & (points[:, 0] < 0), 0] > 0.8).all() and (c[far & (points[:, 0] > 0), 2] > 0.7).all()
    assert baked.mesh.material.roughness == pytest.approx(0.6)


def test_vertex_coloured_ply_and_zipped_obj_are_sources(tmp_path):
    v, f = meshes.uv_sphere(8, 16)
    colours = np.concatenate([np.round((v + 1) / 2 * 255), np.full((len(v), 1), 255)], axis=1).astype(np.uint8)
    ply = trimesh.Trimesh(v, f, vertex_colors=colours, process=False).export(file_type="ply")
    source = load_colour_source_bytes(ply, name="sphere.ply")
    assert source.vertex_colour is not None
    got = source.colour_at(np.arange(len(f)), np.tile([1.0, 0.0, 0.0], (len(f), 1)))
    np.testing.assert_allclose(got[:, :3], colours[f[:, 0], :3] / 255, atol=2e-3)

    # OBJ + MTL + PNG, zipped in a folder.
    src, pixels = sphere_source(8, 16)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        lines = ["mtllib model.mtl", "usemtl skin"] + [f"v {a} {b} {c}" for a, b, c in src.vertices]
        lines += [f"vt {a} {b}" for a, b in src.uv]
        lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in tri) for tri in src.faces]
        z.writestr("model/model.obj", "\n".join(lines) + "\n")
        z.writestr("model/model.mtl", "newmtl skin\nKd 1 1 1\nmap_Kd skin.png\n")
        z.writestr("model/skin.png", png(pixels))
    source = load_colour_source_bytes(buf.getvalue(), name="model.zip")
    assert source.parts[0].image is not None and source.parts[0].image.shape[:2] == pixels.shape[:2]


@pytest.mark.parametrize("make,words", [
    (lambda: mesh_to_bytes(Mesh(*meshes.cube()), "glb"), "no colour"),
    (lambda: mesh_to_bytes(Mesh(*meshes.cube()), "stl"), "STL"),
    (lambda: b"", "empty"),
    (lambda: b"not a mesh at all" * 10, "not a mesh"),
    (lambda: _zip({"../evil.obj": b"v 0 0 0\n"}), "outside the archive"),
    (lambda: _zip({"a.png": b"x"}), "exactly one mesh"),
])
def test_unusable_sources_are_refused_with_a_sentence(make, words):
    with pytest.raises(BadSource, match=words) as info:
        load_colour_source_bytes(make(), name="the upload")
    assert info.value.status == 422


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


# -- normal maps --------------------------------------------------------------------------


def bumpy_plane(n=96, amplitude=0.08, waves=2.0):
    """z = a sin(2 pi w x) over [-1, 1]^2: bumps along x only, smooth normals from the formula."""
    xs = np.linspace(-1, 1, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    z = amplitude * np.sin(2 * np.pi * waves * x)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64)
    return v, f


def bump_normal(points, amplitude=0.08, waves=2.0):
    slope = amplitude * 2 * np.pi * waves * np.cos(2 * np.pi * waves * points[:, 0])
    n = np.stack([-slope, np.zeros_like(slope), np.ones_like(slope)], axis=1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_normal_map_of_a_flat_plane_points_the_right_way():
    """Bake a bumpy plane's normals onto a flat 8 x 8 plane and decode the map as Blender does:
    c = 2 rgb - 1, shaded normal = c.x T + c.y B + c.z N with T along +U and B along +V of the
    target's own UV layout (worked out here from the UVs, independently of the tangent code)."""
    bv, bf = bumpy_plane()
    # The source's shading normals are the exact ones of the formula.
    source = ColourSource(bv, bf, np.zeros(len(bf), dtype=np.int64), [ColourPart("grey", np.ones(4))],
                          normals=bump_normal(bv), has_normals=np.ones(len(bf), dtype=bool))
    pv, pf = meshes.plane(8, size=1.6)
    baked = bake_textures(Mesh(pv, pf), source=source, texture_size=256, normal_map=True)
    assert baked.normal_map is not None
    m = baked.mesh
    face, bary, points = _random_surface_points(m.vertices, m.faces, 3000, seed=5)
    uv = np.einsum("kc,kcj->kj", bary, m.uv[m.faces[face]])
    rgb = sample_bilinear(baked.normal_map.astype(np.float64) / 255.0, uv)
    c = 2.0 * rgb - 1.0                                                  # Blender: Non-Color, 2 rgb - 1
    # dP/du and dP/dv of each target triangle from its UVs (the plane is flat: N = +z).
    p, t = m.vertices[m.faces[face]], m.uv[m.faces[face]]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = (d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1])[:, None]
    dpdu = (d2[:, 1:2] * e1 - d1[:, 1:2] * e2) / det
    dpdv = (d1[:, 0:1] * e2 - d2[:, 0:1] * e1) / det
    tu = dpdu / np.linalg.norm(dpdu, axis=1, keepdims=True)
    tv = dpdv / np.linalg.norm(dpdv, axis=1, keepdims=True)
    want = bump_normal(points)
    # The true tangent-space x and y: the tilt of the bumps along +U and along +V (the unwrap
    # may turn the chart any way, so both are checked where they are large).
    for axis, direction in ((0, tu), (1, tv)):
        tilt = np.einsum("ij,ij->i", want, direction)
        strong = np.abs(tilt) > 0.15
        if strong.sum() > 100:
            assert (np.sign(c[strong, axis]) == np.sign(tilt[strong])).mean() > 0.99, axis
    assert (np.abs(np.einsum("ij,ij->i", want, tu)) + np.abs(np.einsum("ij,ij->i", want, tv)) > 0.15).sum() > 300
    assert (c[:, 2] > 0.5).all()                                         # +Z out of the surface
    shaded = c[:, 0:1] * tu + c[:, 1:2] * tv + c[:, 2:3] * np.array([0.0, 0.0, 1.0])
    shaded /= np.linalg.norm(shaded, axis=1, keepdims=True)
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", shaded, want), -1, 1)))
    assert np.median(angle) < 1.5 and np.percentile(angle, 99) < 6.0, (np.median(angle), np.percentile(angle, 99))
    # The result carries the normals the map was baked against (written as glTF NORMAL).
    assert m.normals is not None and np.allclose(m.normals, [0, 0, 1])


def test_encode_inverts_the_renderers_decode():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    t = rng.normal(size=(500, 3))
    t -= n * np.einsum("ij,ij->i", t, n)[:, None]
    t *= rng.uniform(0.7, 1.0, (500, 1)) / np.linalg.norm(t, axis=1, keepdims=True)  # unnormalized, as interpolated
    want = n + 0.5 * rng.normal(size=(500, 3))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    sign = np.where(rng.random(500) < 0.5, -1.0, 1.0)
    c = encode_normals(want, t, n, sign)
    keep = c[:, 2] > 0
    np.testing.assert_allclose(decode_normals(c[keep], t[keep], n[keep], sign[keep]), want[keep], atol=1e-9)


def test_tangents_follow_the_uv_and_flip_with_mirrored_charts():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    f = np.array([[0, 1, 2]])
    n = vertex_normals(v, f)
    t = vertex_tangents(v, f, v[:, :2], n)
    np.testing.assert_allclose(t[:, :3], [[1, 0, 0]] * 3, atol=1e-12)
    assert (t[:, 3] == 1).all()
    mirrored = vertex_tangents(v, f, np.stack([1 - v[:, 0], v[:, 1]], axis=1), n)
    np.testing.assert_allclose(mirrored[:, :3], [[-1, 0, 0]] * 3, atol=1e-12)
    assert (mirrored[:, 3] == -1).all()


def test_hard_edges_split_a_cube_and_leave_a_sphere_smooth():
    v, f = meshes.cube()
    copy, faces, normals = split_at_hard_edges(v, f, 40.0)
    assert len(copy) == 24                                               # 3 copies of each corner, one per side
    np.testing.assert_array_equal(v[copy][faces], v[f])                 # same triangles, same positions
    np.testing.assert_allclose(normals[faces[:, 0]], face_normals(v, f), atol=1e-12)
    sv, sf = meshes.uv_sphere(16, 32)                                   # neighbours 11-23 degrees apart
    copy, faces, normals = split_at_hard_edges(sv, sf, 40.0)
    assert len(copy) == len(np.unique(sf))
    np.testing.assert_allclose(normals, vertex_normals(sv, sf)[copy], atol=1e-12)
    copy, faces, normals = split_at_hard_edges(v, f, 180.0)            # nothing is hard: plain smooth normals
    np.testing.assert_allclose(normals, vertex_normals(v, f)[copy], atol=1e-12)


def test_baked_cube_keeps_crisp_edges():
    # A source cube with a colour per side and a slightly smaller target cube: the result
    # carries one normal per side (as Blender shows a cube with sharp edges), and every
    # texel inside a side has that side's colour.
    from backend.mesh.texture.source import linear_to_srgb

    v, f = meshes.cube()
    n = face_normals(v, f)
    side = np.argmax(np.abs(n), axis=1) * 2 + (n[np.arange(len(f)), np.argmax(np.abs(n), axis=1)] > 0)
    colours = np.array([[0.8, 0.05, 0.05], [0.05, 0.8, 0.05], [0.05, 0.05, 0.8],
                        [0.8, 0.8, 0.05], [0.05, 0.8, 0.8], [0.8, 0.05, 0.8]])
    parts = [ColourPart(f"side{i}", np.append(c, 1.0)) for i, c in enumerate(colours)]
    source = ColourSource(v, f, side, parts)
    baked = bake_textures(Mesh(v * 0.95, f), source=source, texture_size=64, padding=2)
    m = baked.mesh
    np.testing.assert_allclose(m.normals[m.faces[:, 0]], face_normals(m.vertices, m.faces), atol=1e-9)
    texels = atlas.rasterize(m.uv, m.faces, 64)
    got = baked.base_color.reshape(-1, 3)[texels.pixel] / 255.0
    want = linear_to_srgb(colours[side[texels.face]])
    wrong = np.abs(got - want).max(axis=1) > 0.02
    assert not wrong[texels.inside].any()
    # Without a normal map the result still carries its crisp shading normals (not flat-by-default).
    plain = bake_textures(Mesh(v * 0.95, f), source=source, texture_size=64, padding=2, normal_map=False).mesh
    assert plain.material.normal is None
    np.testing.assert_allclose(plain.normals[plain.faces[:, 0]], face_normals(plain.vertices, plain.faces), atol=1e-9)


_BLENDER_TANGENTS = r"""
import sys, os, numpy as np, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
obj = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
me = obj.data
nodes = {n.bl_idname: n for n in me.materials[0].node_tree.nodes}
normal_map = nodes["ShaderNodeNormalMap"]
images = [n for n in me.materials[0].node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"]
spaces = sorted(n.image.colorspace_settings.name for n in images)
me.calc_tangents()
k = len(me.loops)
get = lambda coll, attr, w: (lambda a: (coll.foreach_get(attr, a), a)[1])(np.empty(k * w))
co = np.empty(len(me.vertices) * 3); me.vertices.foreach_get("co", co)
vi = np.empty(k, dtype=np.int64); me.loops.foreach_get("vertex_index", vi)
np.savez(sys.argv[2], tangent=get(me.loops, "tangent", 3).reshape(-1, 3), sign=get(me.loops, "bitangent_sign", 1),
         normal=get(me.loops, "normal", 3).reshape(-1, 3), uv=get(me.uv_layers[0].data, "uv", 2).reshape(-1, 2),
         co=co.reshape(-1, 3)[vi], space=np.array(normal_map.space), images=np.array(spaces))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
def test_blender_reads_the_normal_map_with_our_tangents_and_normals(tmp_path):
    """Blender 4.2 (the bpy module) imports the baked GLB: a tangent-space Normal Map node on a
    Non-Color image, our normals as its normals, and MikkTSpace tangents equal to ours."""
    pytest.importorskip("bpy")
    bv, bf = bumpy_plane(48)
    source = ColourSource(bv, bf, np.zeros(len(bf), dtype=np.int64), [ColourPart("grey", np.ones(4))],
                          normals=bump_normal(bv), has_normals=np.ones(len(bf), dtype=bool))
    v, f = meshes.uv_sphere(12, 24)                                      # curved, several charts
    baked = bake_textures(Mesh(v * 0.9, f), source=source, texture_size=128)
    glb = save_mesh(baked.mesh, tmp_path / "baked.glb")
    script = tmp_path / "tangents.py"
    script.write_text(_BLENDER_TANGENTS)
    out = tmp_path / "blender.npz"
    run = subprocess.run([sys.executable, str(script), str(glb), str(out)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.exists(), run.stderr[-2000:]
    got = np.load(out)
    assert str(got["space"]) == "TANGENT" and sorted(got["images"].tolist()) == ["Non-Color", "sRGB"]
    m = baked.mesh
    ours = vertex_tangents(m.vertices, m.faces, m.uv, m.normals)
    # Blender's loops in glTF axes, matched to our vertices by position and UV.
    co = got["co"] @ BLENDER_FROM_GLTF
    from scipy.spatial import cKDTree

    dist, index = cKDTree(np.concatenate([m.vertices, m.uv], axis=1)).query(np.concatenate([co, got["uv"]], axis=1))
    assert dist.max() < 1e-5
    np.testing.assert_allclose(got["normal"] @ BLENDER_FROM_GLTF, m.normals[index], atol=1e-4)
    cos = np.einsum("ij,ij->i", got["tangent"] @ BLENDER_FROM_GLTF, ours[index, :3])
    assert np.percentile(cos, 1) > 0.999, np.percentile(cos, 1)
    assert (np.sign(got["sign"]) == ours[index, 3]).mean() > 0.99


# -- base colour from posed views ---------------------------------------------------------


def test_bake_from_posed_views_matches_the_colour_of_the_surface(tmp_path):
    v, f = meshes.torus(major=0.7, minor=0.3, rings=48, segments=24)
    v = v[:, [0, 2, 1]] * [1, 1, -1]                                     # a rotation: lying flat in glTF's Y-up
    folder = synthesize_views(v, f, tmp_path / "views")
    views = load_views(folder)
    baked = bake_textures(Mesh(v, f), views=views, texture_size=256, normal_map=False)
    assert baked.summary["colour_from"] == "views"
    result = load_colour_source(save_mesh(baked.mesh, tmp_path / "baked.glb"))
    face, bary, points = _random_surface_points(result.vertices, result.faces, 3000, seed=2)
    err = np.abs(result.colour_at(face, bary)[:, :3] - colour_field(points)).max(axis=1)
    assert np.median(err) < 0.03, np.median(err)
    assert np.mean(err < 0.1) > 0.95, np.mean(err < 0.1)


def test_normal_map_from_views_that_carry_normal_maps(tmp_path):
    """Views with world-frame normal maps (render/ writes them) give a normal map that decodes,
    in the target's tangent frames, to those normals, brought back to the mesh's frame."""
    def wavy(points):
        n = points / np.linalg.norm(points, axis=1, keepdims=True)
        n = n + 0.3 * np.stack([np.sin(4 * points[:, 1]), np.zeros(len(points)), np.cos(3 * points[:, 0])], axis=1)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    v, f = meshes.uv_sphere(24, 48)
    folder = synthesize_views(v, f, tmp_path / "views", n_views=8, normal_of=wavy)
    baked = bake_textures(Mesh(v, f), views=load_views(folder), texture_size=256, normal_map=True)
    assert baked.normal_map is not None and "normal_map_skipped" not in baked.summary
    m = baked.mesh
    face, bary, points = _random_surface_points(m.vertices, m.faces, 3000, seed=4)
    uv = np.einsum("kc,kcj->kj", bary, m.uv[m.faces[face]])
    c = 2.0 * sample_bilinear(baked.normal_map.astype(np.float64) / 255.0, uv) - 1.0
    tangents = vertex_tangents(m.vertices, m.faces, m.uv, m.normals)
    corners = m.faces[face]
    shaded = decode_normals(c, np.einsum("kc,kcj->kj", bary, tangents[corners, :3]),
                            np.einsum("kc,kcj->kj", bary, m.normals[corners]), tangents[corners[:, 0], 3])
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", shaded, wavy(points)), -1, 1)))
    assert np.median(angle) < 3.0 and np.percentile(angle, 90) < 8.0, (np.median(angle), np.percentile(angle, 90))
    # Views without normal maps bake colour only, and say so.
    plain = synthesize_views(v, f, tmp_path / "plain", n_views=4)
    summary = bake_textures(Mesh(v, f), views=load_views(plain), texture_size=64).summary
    assert summary["normal_map"] is False and "normal_map_skipped" in summary


def test_texels_no_view_sees_are_filled_from_their_surroundings(tmp_path):
    v, f = meshes.uv_sphere(24, 48)
    folder = synthesize_views(v, f, tmp_path / "views", n_views=6, elevations=(40.0,))   # all from above
    baked = bake_textures(Mesh(v, f), views=load_views(folder), texture_size=128, normal_map=False)
    assert baked.summary["texels_unseen"] > 0
    seen = baked.summary["texels_seen_share"]
    assert 0.3 < seen < 0.95                                           # the views from above see most of it
    result = load_colour_source(save_mesh(baked.mesh, tmp_path / "baked.glb"))
    face, bary, points = _random_surface_points(result.vertices, result.faces, 2000)
    c = result.colour_at(face, bary)[:, :3]
    bottom = points[:, 1] < -0.95                                         # glTF Y-up: the unseen pole
    assert bottom.sum() > 5
    # Filled by diffusion: within the range of the seen colours, not black or grey defaults.
    seen_range = colour_field(points[points[:, 1] > 0])
    assert (c[bottom] >= seen_range.min(axis=0) - 0.05).all() and (c[bottom] <= seen_range.max(axis=0) + 0.05).all()


def test_zbuffer_hides_what_is_behind():
    # Two parallel squares facing the camera at z = 2 and z = 3 (OpenCV camera frame).
    sq = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
    v = np.concatenate([sq + [0, 0, 2], sq * 2 + [0, 0, 3]])
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    intr = intrinsics_from_fov(60.0, 64, 64)
    depth = zbuffer(v, f, intr)
    assert depth[32, 32] == pytest.approx(2.0) and depth[2, 32] == pytest.approx(3.0)


@pytest.mark.parametrize("files,words", [
    ({"readme.txt": b"hi"}, "no cameras.json"),
    ({"../cameras.json": b"{}"}, "outside the archive"),
    ({"cameras.json": b"{not json"}, "not valid JSON"),
    ({"cameras.json": b'{"views": []}'}, "non-empty list"),
])
def test_bad_views_zips_are_refused_with_a_sentence(files, words):
    with pytest.raises(BadViews, match=words):
        load_views_bytes(_zip(files), name="views.zip")


def test_views_with_a_broken_image_or_a_missing_file_are_refused(tmp_path):
    v, f = meshes.cube()
    folder = synthesize_views(v, f, tmp_path / "views", n_views=2, size=32)
    cameras = (folder / "cameras.json").read_bytes()
    good = {"cameras.json": cameras, "000_rgb.png": (folder / "000_rgb.png").read_bytes()}
    with pytest.raises(BadViews, match="001_rgb.png.*no such file"):
        load_views_bytes(_zip(good), name="views.zip")
    with pytest.raises(BadViews, match="not an image"):
        load_views_bytes(_zip({**good, "001_rgb.png": b"\x89PNG garbage"}), name="views.zip")
    with pytest.raises(BadViews, match="not a readable ZIP"):
        load_views_bytes(b"plain bytes", name="views.zip")
    # The same folder, zipped inside a subfolder, loads.
    nested = {f"shot/{k}": d for k, d in {**good, "001_rgb.png": (folder / "001_rgb.png").read_bytes()}.items()}
    assert len(load_views_bytes(_zip(nested)).views) == 2


# -- command line -------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_texture_command_writes_a_textured_glb(tmp_path):
    src, _ = sphere_source(16, 32)
    source = save_mesh(src, tmp_path / "source.glb")
    target = save_mesh(Mesh(*meshes.uv_sphere(10, 20)), tmp_path / "target.ply")
    out = tmp_path / "out.glb"
    run = _cli("texture", str(target), "-o", str(out), "--source", str(source), "--size", "128")
    assert run.returncode == 0, run.stderr
    assert "texture_size 128" in run.stdout and "normal_map True" in run.stdout
    doc = trimesh.load(out)
    material = list(doc.geometry.values())[0].visual.material
    assert material.baseColorTexture.size == (128, 128) and material.normalTexture.size == (128, 128)
    bad = _cli("texture", str(target), "-o", str(tmp_path / "x.glb"), "--source", str(target))
    assert bad.returncode == 2 and "no colour" in bad.stderr and "Traceback" not in bad.stderr
    both = _cli("texture", str(target), "-o", str(tmp_path / "x.glb"), "--source", str(source), "--views", str(tmp_path))
    assert both.returncode == 2 and "not allowed with" in both.stderr
    obj = _cli("texture", str(target), "-o", str(tmp_path / "x.obj"), "--source", str(source))
    assert obj.returncode == 2 and ".glb" in obj.stderr


def test_cancel_from_the_progress_callback_stops_the_bake(tmp_path):
    from backend.progress import Cancelled

    src, _ = sphere_source(12, 24)
    source = load_colour_source(save_mesh(src, tmp_path / "s.glb"))
    stages = []

    def progress(fraction, stage):
        stages.append(stage)
        if stage == "sampling the source":
            raise Cancelled("job")

    with pytest.raises(Cancelled):
        bake_textures(Mesh(*meshes.uv_sphere(8, 16)), source=source, texture_size=64, progress=progress)
    assert "baked" not in stages and stages[-1] == "sampling the source"


def _folded_quad_grid(n: int = 5) -> Mesh:
    """An n x n quad grid whose corners alternate in height: every quad folds ~70 degrees along its diagonal."""
    xs = np.linspace(-1, 1, n + 1)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.4 * ((i + j) % 2).ravel()], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(-1, 4)
    tris, sizes = polygon_triangles(quads)
    return Mesh(v, tris, sizes)


def _assert_quads_are_two_triangles_on_a_diagonal(mesh: Mesh) -> None:
    first = np.concatenate([[0], np.cumsum(mesh.face_sizes.astype(int) - 2)[:-1]])
    for q in np.flatnonzero(mesh.face_sizes == 4):
        a, b = mesh.faces[first[q]], mesh.faces[first[q] + 1]
        assert a[0] == b[0] and a[2] == b[1], f"quad {q}: {a.tolist()}, {b.tolist()}"


def test_hard_edges_never_split_a_folded_quad():
    # Regression (field test, Artist + Texture): a quad whose triangles meet at more than the
    # hard angle had its diagonal split, and Blender's reader refused the result.
    grid = _folded_quad_grid()
    fn = face_normals(grid.vertices, grid.faces)
    assert (np.einsum("ij,ij->i", fn[0::2], fn[1::2]) < np.cos(np.radians(40.0))).all()   # every quad folds
    copy, faces, normals = split_at_hard_edges(grid.vertices, grid.faces, 40.0, grid.face_sizes)
    np.testing.assert_array_equal(grid.vertices[copy][faces], grid.vertices[grid.faces])
    _assert_quads_are_two_triangles_on_a_diagonal(Mesh(grid.vertices[copy], faces, grid.face_sizes))
    # Edges between polygons are still hard: a cube of six quads gets one copy of a corner per side.
    v, quads = meshes.quad_cube(0)
    tris, sizes = polygon_triangles(quads)
    copy, faces, _ = split_at_hard_edges(v, tris, 40.0, sizes)
    assert len(copy) == 24
    _assert_quads_are_two_triangles_on_a_diagonal(Mesh(v[copy], faces, sizes))


def test_bake_keeps_folded_quads_readable():
    grid = _folded_quad_grid()
    source, _ = sphere_source()
    source = ColourSource(source.vertices * 2.0, source.faces, np.zeros(len(source.faces), dtype=np.int64),
                          [ColourPart("grey", np.array([0.5, 0.5, 0.5, 1.0]))])
    # Planar projection keeps every quad in one chart, so no UV seam splits one first.
    baked = bake_textures(grid, source=source, texture_size=128, padding=2, hard_angle=40.0,
                          uv_method="project").mesh
    assert baked.face_sizes is not None and (baked.face_sizes == 4).all()
    _assert_quads_are_two_triangles_on_a_diagonal(baked)
    # Every vertex says which target vertex it copies (split along seams and hard edges).
    np.testing.assert_array_equal(baked.vertices, grid.vertices[baked.vertex_ids])
    assert len(np.unique(baked.vertex_ids)) == len(grid.vertices) <= len(baked.vertices)


def test_keep_bakes_into_the_targets_own_uvs(tmp_path):
    # Regression (field test, Texture after Artist): the target's own UVs were always replaced.
    # A sphere with its equirectangular UVs, sent as GLB, baked from itself with uv_method="keep":
    # the layout comes back untouched and the texture is the checker it was made with.
    src_mesh, pixels = sphere_source()
    source = load_colour_source(save_mesh(src_mesh, tmp_path / "source.glb"))
    target = load_mesh_bytes(mesh_to_bytes(Mesh(src_mesh.vertices, src_mesh.faces, uv=src_mesh.uv), "glb"))
    np.testing.assert_allclose(target.uv, src_mesh.uv, atol=1e-6)
    baked = bake_textures(target, source=source, texture_size=256, normal_map=False, hard_angle=None,
                          uv_method="keep")
    assert baked.summary["uv_method"] == "keep" and baked.summary["charts"] == 1
    np.testing.assert_array_equal(baked.mesh.faces, src_mesh.faces)
    np.testing.assert_allclose(baked.mesh.uv, src_mesh.uv, atol=1e-6)
    np.testing.assert_array_equal(baked.mesh.vertex_ids, np.arange(len(src_mesh.vertices)))
    # Texels away from the checker's cell edges and the poles hold the checker's colour.
    texels = atlas.rasterize(baked.mesh.uv, baked.mesh.faces, 256)
    rows, cols = np.divmod(texels.pixel, 256)
    u, v = (cols + 0.5) / 256, 1.0 - (rows + 0.5) / 256
    cell = np.stack([u, v], axis=1) * 8 % 1.0
    central = (np.abs(cell - 0.5) < 0.3).all(axis=1) & (np.abs(v - 0.5) < 0.4)
    want = pixels[((1.0 - v[central]) * pixels.shape[0]).astype(int), (u[central] * pixels.shape[1]).astype(int)]
    got = baked.base_color[rows[central], cols[central]]
    assert central.sum() > 10_000
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 8


@pytest.mark.parametrize("uv, words", [
    (None, "has no UVs to keep"),
    ("outside", "outside the 0..1 square"),
    ("collapsed", "no area"),
])
def test_keep_refuses_uvs_it_cannot_bake_into_with_a_sentence(uv, words):
    v, f = meshes.uv_sphere(6, 12)
    if uv == "outside":
        uv = np.c_[v[:, 0], v[:, 1]] + 1.5                # a second UDIM tile
    elif uv == "collapsed":
        uv = np.full((len(v), 2), 0.5)
    source = ColourSource(v * 1.01, f, np.zeros(len(f), dtype=np.int64),
                          [ColourPart("grey", np.array([0.5, 0.5, 0.5, 1.0]))])
    with pytest.raises(ValueError, match=words):
        bake_textures(Mesh(v, f, uv=uv), source=source, texture_size=64, uv_method="keep")


def test_a_rough_surface_gives_up_padding_before_it_gives_up_and_then_says_what_to_change():
    """Regression: a rippled reconstruction cut into ~600 charts, which did not fit a 128 px texture
    with 4 px padding: the job failed as an internal error (a bare ValueError)."""
    from backend.errors import BadParams
    from backend.mesh.texture.uv import unwrap
    from backend.mesh.types import Mesh
    from tests import meshes

    vertices, faces = meshes.uv_sphere(40, 80)
    rng = np.random.default_rng(0)
    vertices = vertices * (1 + 0.04 * rng.standard_normal((len(vertices), 1)))   # rough: ~600 charts
    mesh = Mesh(vertices, faces)
    fitted = unwrap(mesh, texture_size=128, padding=4, method="project")        # fits at a smaller padding
    assert fitted.mesh.uv is not None and fitted.charts > 400
    with pytest.raises(BadParams, match="Choose a larger texture size"):
        unwrap(mesh, texture_size=64, padding=4, method="project")
