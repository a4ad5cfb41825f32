"""The main job, end to end: Blender + the Meshsmith extension + a local backend.

    python scripts/demo.py --out out      (what `make demo` runs)

Builds and installs the extension into the `bpy` module (in a throw-away Blender user
folder), starts the backend from the add-on's preferences, loads a broken mesh, selects it,
runs Generate through the operator and the timer function, and writes:

- ``out/demo.blend``: the scene, source and result (``<source>_watertight`` in ``Meshsmith``);
- ``out/result.glb``: the imported result as the add-on exports meshes (object space);
- ``out/demo.png``: a Cycles render of source (left) and result (right).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as the README shows it)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out", help="output folder (default: out/)")
    parser.add_argument("--input", type=Path, default=REPO / "assets" / "spot_broken.obj", help="OBJ to remesh")
    parser.add_argument("--resolution", type=int, default=128, help="watertight grid resolution")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples for demo.png")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    # A private Blender user folder and backend state: the demo never touches the user's own.
    scratch = Path(tempfile.mkdtemp(prefix="meshsmith-demo-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(scratch / "blender")
    os.environ["MESHSMITH_STATE_DIR"] = str(scratch / "state")
    os.environ["MESHSMITH_DATA_DIR"] = str(scratch / "data")
    os.environ.setdefault("MESHSMITH_BACKEND_PYTHON", sys.executable)

    from build_extension import build, find_blender_ext
    from render.quiet import quiet_stdout as blender_quiet

    zip_path = build(scratch / "dist", find_blender_ext())
    print(f"extension: {zip_path.name} built and accepted by Blender's validator")

    import bpy

    with blender_quiet():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    # These modules exist once the extension is installed.
    import bl_ext.user_default.meshsmith.runtime as runtime
    import bl_ext.user_default.meshsmith.scene_io as scene_io

    with blender_quiet():
        bpy.ops.meshsmith.start_backend()
    print(f"backend: {runtime.check_backend().text}")

    try:
        with blender_quiet():
            bpy.ops.wm.obj_import(filepath=str(args.input))
        source = bpy.context.selected_objects[0]
        source.location = (0.0, 0.0, 0.0)
        bpy.context.view_layer.objects.active = source
        before = len(source.data.polygons)

        scene = bpy.context.scene
        scene.meshsmith.resolution = args.resolution
        start = time.perf_counter()
        with blender_quiet():
            bpy.ops.meshsmith.generate()  # the operator a click on Generate runs
        last = ""
        deadline = time.monotonic() + 600
        while runtime.poll_jobs() is not None:  # the function Blender's timer calls
            job = runtime.jobs()[-1]
            line = f"  {job.progress:5.0%}  {job.stage}"
            if line != last:
                print(line, flush=True)
                last = line
            if time.monotonic() > deadline:
                raise SystemExit("the job did not finish in 10 minutes")
            time.sleep(0.2)
        job = runtime.jobs()[-1]
        seconds = time.perf_counter() - start
        if job.imported_name is None:
            raise SystemExit(f"Generate did not import a result: {job.message}")
        result = bpy.data.objects[job.imported_name]

        report = check_closed(result)
        with blender_quiet():
            bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
            (out / "result.glb").write_bytes(scene_io.export_object_glb(result, bpy.context.evaluated_depsgraph_get()))
            render_side_by_side(source, result, out / "demo.png", samples=args.samples)
    finally:
        with blender_quiet():
            bpy.ops.meshsmith.stop_backend()

    import trimesh

    glb = trimesh.load(out / "result.glb", force="mesh")
    print(
        f"\n{source.name}: {before} faces, broken -> {result.name} in collection "
        f"'{result.users_collection[0].name}': {len(result.data.polygons)} faces, "
        f"closed={report['closed']}, consistently oriented={report['oriented']}, "
        f"{seconds:.1f} s from click to import\n"
        f"result.glb: watertight={glb.is_watertight}, winding consistent={glb.is_winding_consistent}, "
        f"volume={glb.volume:.4f}\n"
        "wrote " + ", ".join(_shown(out / name) for name in ("demo.blend", "result.glb", "demo.png"))
    )
    return 0 if report["closed"] and report["oriented"] and glb.is_watertight else 1


def check_closed(obj) -> dict:
    """Closed and consistently oriented, in Blender's own terms (bmesh)."""
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(obj.data)
    closed = all(e.is_manifold for e in bm.edges)
    oriented = all(e.is_contiguous for e in bm.edges)
    bm.free()
    return {"closed": closed, "oriented": oriented}


def render_side_by_side(source, result, path: Path, *, samples: int) -> None:
    """Source on the left, result on the right, in a fixed studio light; the .blend is not changed."""
    import bpy
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    width = source.dimensions.x * max(source.scale) + 0.3
    # The camera looks at the model's front (+Y) from the front, so -X is screen right.
    result.matrix_world = Matrix.Translation((-width, 0, 0)) @ source.matrix_world
    for obj, colour in ((source, (0.8, 0.25, 0.2, 1)), (result, (0.25, 0.55, 0.85, 1))):
        mat = bpy.data.materials.new(f"demo_{obj.name}")
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = colour
        bsdf.inputs["Roughness"].default_value = 0.5
        obj.data.materials.clear()
        obj.data.materials.append(mat)
        # Back faces in black show where the source is open or flipped.
    bpy.context.view_layer.update()

    corners = [o.matrix_world @ Vector(c) for o in (source, result) for c in o.bound_box]
    lo = Vector([min(c[i] for c in corners) for i in range(3)])
    hi = Vector([max(c[i] for c in corners) for i in range(3)])
    centre, size = (lo + hi) / 2, (hi - lo).length

    cam = bpy.data.objects.new("demo_camera", bpy.data.cameras.new("demo_camera"))
    scene.collection.objects.link(cam)
    cam.location = centre + Vector((-0.3, 1.0, 0.35)).normalized() * size * 1.7
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    for name, rot, energy in (("key", (0.8, 0.2, 0.6), 3.0), ("fill", (1.1, -0.3, -2.2), 1.0)):
        sun = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        sun.data.energy = energy
        sun.rotation_euler = rot
        scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("demo_world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.9, 0.9, 0.92, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x, scene.render.resolution_y = 960, 480
    scene.render.film_transparent = False
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    sys.exit(main())
