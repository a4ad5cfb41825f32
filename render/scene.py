"""The Blender side of a render: load an asset, normalize it, light it, set up Cycles, render colour.

Everything here drives ``bpy`` (through BlenderProc where it has the function); what it
hands back is numpy arrays and plain dicts, writing files is :mod:`render.views`' job.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.conventions import BLENDER_FROM_GLTF, CANONICAL_EXTENT, Normalization
from render import _blenderproc
from render.layouts import View

log = logging.getLogger(__name__)

#: Asset formats render/ reads, by lower-case suffix.
ASSET_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")

#: Blender's importers read OBJ and glTF as Y-up and turn them Z-up; PLY and STL as Z-up.
_Y_UP_SUFFIXES = (".glb", ".gltf", ".obj")

#: The fixed light rig, in the world frame (so every view of an asset sees the same lighting):
#: three sun lamps ``(name, azimuth deg, elevation deg, strength W/m^2, angle deg)`` with the
#: azimuth / elevation of the direction they shine *from* (conventions of
#: :func:`backend.conventions.camera_position`), plus a uniform white world of strength
#: ``AMBIENT`` that lights from every side but stays invisible (transparent film).
SUNS = (
    ("key", -35.0, 50.0, 2.0, 3.0),
    ("fill", 70.0, 20.0, 0.6, 3.0),
    ("rim", 180.0, 35.0, 1.0, 3.0),
)
AMBIENT = 0.25

#: OpenImageDenoise qualities Blender 4.2 offers.
DENOISE_QUALITIES = ("fast", "balanced", "high")


@dataclass(frozen=True)
class ColourSettings:
    """Cycles settings of the colour pass (light bounces are BlenderProc's defaults).

    ``samples`` per pixel, fixed (adaptive sampling off, so time and noise do not depend on
    the asset); ``denoise`` is None or OpenImageDenoise's quality (``"fast"``, ``"balanced"``,
    ``"high"``), guided by albedo and normal; ``seed`` is Cycles' sampling seed, the same for
    every view.
    """

    samples: int = 16
    denoise: str | None = None
    seed: int = 0
    threads: int = 0  # 0: all cores

    def to_dict(self) -> dict:
        return {"engine": "CYCLES", "device": "CPU", "samples": self.samples, "adaptive_sampling": False,
                "light_tree": True,
                "denoiser": f"OPENIMAGEDENOISE ({self.denoise})" if self.denoise else None, "seed": self.seed,
                "view_transform": "Standard", "film_transparent": True}


def reset() -> None:
    """An empty scene with BlenderProc's default renderer settings."""
    _blenderproc.init()


def load_asset(path: Path) -> list:
    """Import ``path`` (GLB / glTF, OBJ + MTL, PLY, STL) into the scene; returns the new objects.

    BlenderProc's loader runs Blender's importers and gives PLY vertex colours and STL a
    material. Raises ``ValueError`` for a file it cannot read or one without faces.
    """
    import bpy

    path = Path(path)
    check_asset_path(path)
    suffix = path.suffix.lower()
    before = set(bpy.data.objects)
    loader = _blenderproc.api().loader
    try:
        if path.suffix in (".obj", ".ply") or suffix in (".stl", ".glb", ".gltf"):
            loader.load_obj(str(path))
        elif suffix == ".obj":  # BlenderProc dispatches on case-sensitive suffixes for these two
            bpy.ops.wm.obj_import(filepath=str(path), validate_meshes=False)
        else:
            bpy.ops.wm.ply_import(filepath=str(path))
    except RuntimeError as exc:  # what Blender's operators raise for a file they cannot read
        reason = str(exc).strip().removeprefix("Error:").strip()
        raise ValueError(f"{path.name}: Blender cannot import it ({reason}); re-export the file") from exc
    new = [o for o in bpy.data.objects if o not in before]
    meshes = [o for o in new if o.type == "MESH" and len(o.data.polygons) > 0]
    _drop_missing_colour_attributes(meshes)
    if not meshes:
        raise ValueError(f"{path.name}: no mesh with faces was imported (Blender's importer read nothing usable)")
    return new


def _drop_missing_colour_attributes(meshes: list) -> None:
    """BlenderProc wires a PLY's vertex colours ("Col") into its material even when the file has
    none, which renders black; unwire attribute nodes whose attribute the mesh lacks."""
    for obj in meshes:
        names = {a.name for a in obj.data.attributes}
        for slot in obj.material_slots:
            mat = slot.material
            if mat is None or not mat.use_nodes:
                continue
            for node in list(mat.node_tree.nodes):
                if node.bl_idname == "ShaderNodeAttribute" and node.attribute_name not in names:
                    mat.node_tree.nodes.remove(node)


def check_asset_path(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a file with a suffix render/ reads."""
    if Path(path).suffix.lower() not in ASSET_SUFFIXES:
        raise ValueError(f"input must end in one of {', '.join(ASSET_SUFFIXES)}, got {Path(path).name!r}")
    if not Path(path).is_file():
        raise ValueError(f"input {str(path)!r} is not a file")


def file_to_blender(suffix: str) -> np.ndarray:
    """(4, 4) matrix from a file's coordinates to Blender's world, as Blender's importer applies it."""
    m = np.eye(4)
    if suffix.lower() in _Y_UP_SUFFIXES:
        m[:3, :3] = BLENDER_FROM_GLTF
    return m


def normalize(objects: list, *, extent: float = CANONICAL_EXTENT) -> Normalization:
    """Centre and scale ``objects`` (all imported objects) into the canonical box, in place.

    The bounding box is that of the evaluated mesh vertices in the world frame. Roots of the
    imported hierarchy are re-placed, so parented parts follow.
    """
    import bpy

    bpy.context.view_layer.update()
    points = [tri.reshape(-1, 3) for tri, _ in _object_triangles(objects)]
    if not points:
        raise ValueError("no triangles to normalize")
    norm = Normalization.fit(np.concatenate(points), extent=extent)
    from mathutils import Matrix

    to_canonical = Matrix(_normalization_matrix(norm).tolist())
    for obj in objects:
        if obj.parent is None:
            obj.matrix_world = to_canonical @ obj.matrix_world
    bpy.context.view_layer.update()
    return norm


def _normalization_matrix(norm: Normalization) -> np.ndarray:
    m = np.eye(4) * norm.scale
    m[3, 3] = 1.0
    m[:3, 3] = -np.asarray(norm.center) * norm.scale
    return m


def normalization_record(norm: Normalization, suffix: str) -> dict:
    """What ``cameras.json`` says about the transform: centre and scale in Blender's world, and
    ``file_to_world``, the (4, 4) matrix from the asset file's own coordinates to the canonical box."""
    return {
        **norm.to_dict(),
        "extent": CANONICAL_EXTENT,
        "file_up_axis": "Y" if suffix.lower() in _Y_UP_SUFFIXES else "Z",
        "file_to_world": (_normalization_matrix(norm) @ file_to_blender(suffix)).tolist(),
    }


def _object_triangles(objects: list):
    """Per mesh object: world triangles (m, 3, 3) and their corner normals (m, 3, 3) as Blender shades them."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    for obj in objects:
        if obj.type != "MESH" or obj.hide_render:
            continue
        ev = obj.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        try:
            mesh.calc_loop_triangles()
            n_tri = len(mesh.loop_triangles)
            if n_tri == 0:
                continue
            co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
            mesh.vertices.foreach_get("co", co)
            tri_verts = np.empty(n_tri * 3, dtype=np.int64)
            mesh.loop_triangles.foreach_get("vertices", tri_verts)
            tri_loops = np.empty(n_tri * 3, dtype=np.int64)
            mesh.loop_triangles.foreach_get("loops", tri_loops)
            corner_n = np.empty(len(mesh.loops) * 3, dtype=np.float64)
            mesh.corner_normals.foreach_get("vector", corner_n)
            mw = np.array(ev.matrix_world, dtype=np.float64)
            co = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
            normal_mat = np.linalg.inv(mw[:3, :3]).T
            nrm = corner_n.reshape(-1, 3) @ normal_mat.T
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-30)
            yield co[tri_verts.reshape(-1, 3)], nrm[tri_loops.reshape(-1, 3)]
        finally:
            ev.to_mesh_clear()


def scene_triangles(objects: list) -> tuple[np.ndarray, np.ndarray]:
    """All triangles of ``objects`` in the world frame, (m, 3, 3), and their corner normals (m, 3, 3)."""
    parts = list(_object_triangles(objects))
    tris = np.concatenate([p[0] for p in parts])
    normals = np.concatenate([p[1] for p in parts])
    return tris, normals


def add_light_rig() -> None:
    """The fixed light rig of :data:`SUNS` and :data:`AMBIENT`."""
    import bpy
    from mathutils import Vector

    from backend.conventions import camera_position

    scene = bpy.context.scene
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:  # Blender 4.x; 5.x worlds always have their node tree
        world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    for link in list(bg.inputs["Color"].links):
        world.node_tree.links.remove(link)
    bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bg.inputs["Strength"].default_value = AMBIENT
    # A uniform world is sampled best by the surfaces' own (cosine) directions alone: lamp-style
    # importance sampling of it only adds noise. The image it converges to is the same.
    world.cycles.sampling_method = "NONE"
    for name, azimuth, elevation, strength, angle in SUNS:
        data = bpy.data.lights.new(f"meshsmith_{name}", "SUN")
        data.energy = strength
        data.angle = math.radians(angle)
        obj = bpy.data.objects.new(f"meshsmith_{name}", data)
        scene.collection.objects.link(obj)
        towards = Vector((-camera_position(azimuth, elevation, 1.0)).tolist())
        # A sun shines down its local -Z.
        obj.rotation_euler = towards.to_track_quat("-Z", "Y").to_euler()


def light_rig_record() -> dict:
    return {"suns": [{"name": n, "azimuth": a, "elevation": e, "strength": s, "angle": g}
                     for n, a, e, s, g in SUNS],
            "ambient": {"color": [1.0, 1.0, 1.0], "strength": AMBIENT}, "frame": "world"}


def set_cameras(views: list[View], width: int, height: int) -> None:
    """One keyframed camera pose per view (BlenderProc's camera API), clip range for the canonical box."""
    import bpy

    bp = _blenderproc.api()
    fovs = {v.fov for v in views}
    if len(fovs) != 1:
        # BlenderProc keyframes poses, not lenses: one field of view per render call.
        raise ValueError(f"all views of one render must share a field of view, got {sorted(fovs)}")
    radius = max(v.radius for v in views)
    bp.camera.set_intrinsics_from_blender_params(
        lens=math.radians(views[0].fov), image_width=width, image_height=height,
        clip_start=0.01, clip_end=max(100.0, 4.0 * radius), lens_unit="FOV")
    bpy.context.scene.camera.data.sensor_fit = "AUTO"
    for v in views:
        bp.camera.add_camera_pose(v.matrix_world)


def configure_colour(settings: ColourSettings) -> None:
    """Cycles for the colour pass: fixed samples, optional OIDN, transparent film, Standard view."""
    import bpy

    bp = _blenderproc.api()
    scene = bpy.context.scene
    bp.renderer.set_denoiser(None)
    bp.renderer.set_max_amount_of_samples(settings.samples)
    bp.renderer.set_noise_threshold(0.0)  # 0 switches adaptive sampling off
    bp.renderer.set_output_format(file_format="PNG", color_depth=8, enable_transparency=True,
                                  view_transform="Standard")
    bp.renderer.set_cpu_threads(settings.threads)
    scene.view_settings.look = "None"
    # BlenderProc switches the light tree off; for this rig (three suns + a world) it picks
    # lights better: +3.5 dB PSNR at 16 samples for the same time (render.bench).
    scene.cycles.use_light_tree = True
    scene.cycles.seed = settings.seed
    scene.cycles.use_animated_seed = False
    if settings.denoise:
        if settings.denoise not in DENOISE_QUALITIES:
            raise ValueError(f"denoise must be one of {DENOISE_QUALITIES} or None, got {settings.denoise!r}")
        scene.cycles.use_denoising = True
        bpy.context.view_layer.cycles.use_denoising = True
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
        scene.cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        scene.cycles.denoising_prefilter = "ACCURATE"
        scene.cycles.denoising_quality = settings.denoise.upper()


def render_colour(n_views: int, *, verbose: bool = False) -> np.ndarray:
    """Render every keyframed view; (V, H, W, 4) float32 RGBA in [0, 1], straight alpha, sRGB.

    Colour of fully transparent pixels is zeroed (Cycles leaves the world's colour there).
    """
    from PIL import Image

    bp = _blenderproc.api()
    with tempfile.TemporaryDirectory(prefix="meshsmith-render-") as tmp:
        bp.renderer.render(output_dir=tmp, file_prefix="rgb_", output_key=None, return_data=False,
                           verbose=verbose)
        frames = []
        for k in range(n_views):
            with Image.open(Path(tmp) / f"rgb_{k:04d}.png") as im:
                frames.append(np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0)
    rgba = np.stack(frames)
    rgba[..., :3] *= (rgba[..., 3:] > 0)
    return rgba
