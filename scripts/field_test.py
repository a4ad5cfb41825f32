"""Field test: every Generate mode on every mesh of a folder, through the installed add-on, as a click runs it.

    python scripts/field_test.py MESH_DIR [--modes watertight artist ...] [--out out/field] [--zip ZIP]
    make field-test MESHES=MESH_DIR                 (both Blender versions)

Builds the extension and installs it into the real ``bpy`` module (a throw-away Blender
user folder), starts the backend from the preferences (the checkout's ``.venv`` unless
``MESHSMITH_BACKEND_PYTHON`` names another),  then for each mesh file (GLB, glTF,
OBJ, PLY, STL; the parts of one file joined into one object, as a user would) runs each
mode through ``bpy.ops.meshsmith.generate()`` and the timer function
(``runtime.poll_jobs``), exactly as Blender's event loop would call them.

Modes (``--modes``, default all):

- ``watertight``; ``artist`` (quad-dominant), ``artist-quads``, ``artist-triangles``;
- ``texture-object``: the artist result, active, baked from the source object (needs a
  source with colour: image texture, colour attribute or material colour);
- ``texture-keep``: the texture-object result baked again from the source with Keep UVs
  (the default): its UV map must come back corner for corner;
- ``texture-views``: the artist result baked from posed views that ``render.views`` renders
  of the mesh file here (in the backend's Python, which has BlenderProc's ``bpy``);
- ``artist-texture``: the Artist + Texture preset (needs colour, like texture-object);
- ``views-hull``, ``views-model``: From Views on the folder that Render Views (the add-on's
  helper) renders of the source object, by the visual hull and by the shipped model: the
  result must be closed, textured, and land over the source (its box within 15% of the
  source's size on every side);
- ``text``, ``artist-learned``: From Text ("a chair", Meshsmith's model) once, and Artist
  (learned) on each mesh, at most 300 faces, with the shipped mesh model (skipped until
  ``training/weights/mesh-lm-cpu`` holds it): the result must arrive with faces;
- ``cancel``: a watertight job at a large resolution, cancelled once it runs: it must end
  cancelled, with nothing imported.

``--million`` adds Watertight and Artist on an icosphere of 1.3 million faces made in
Blender: the main-thread stall of a Generate on a mesh that large (goal: <= 100 ms).
``--zip`` installs that zip instead, e.g. a self-contained one of ``make dist``, and starts
the backend as an artist's Blender would: nothing named, so the add-on runs the backend it
carries on Blender's own Python (run it in an environment that holds only ``bpy``; this
script then puts nothing of the checkout on ``sys.path``). ``--made`` adds a mesh made here, so that a folder without coloured meshes (CI's ``assets/``)
still runs every mode: Blender's Suzanne, subdivided once (open eyes, touching parts),
painted by position and written as a vertex-coloured PLY.

One row per run: mode, mesh, ``ok`` or the message, seconds, faces, quads, closed /
manifold (Blender's own bmesh tests), whether a baked texture arrived, and the longest
main-thread stall in ms (the longest single call of the operator or of the timer function:
while it runs Blender draws nothing). Rows that cannot apply (a texture mode on a mesh
without colour) say ``skip`` and why. Exit status 1 when any run failed. The table and
``field.json`` go to ``--out``, with ``field.blend`` (every result, laid out by mesh and
mode) and ``field.png`` (a render of it) to look at.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODES = ("watertight", "artist", "artist-quads", "artist-triangles", "texture-object", "texture-keep",
         "texture-views", "artist-texture", "views-hull", "views-model", "text", "artist-learned", "cancel")
#: The mesh model's shipped weights (From Text and Artist (learned) need them).
MESH_LM_WEIGHTS = REPO / "training" / "weights" / "mesh-lm-cpu" / "model.safetensors"
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
#: Seconds one run may take before the field test calls it failed.
RUN_TIMEOUT = 900.0


@dataclass
class Row:
    mode: str
    mesh: str
    status: str = "ok"
    seconds: float = 0.0
    faces: int = 0
    quads: int = 0
    closed: bool | None = None
    manifold: bool | None = None
    texture: bool | None = None
    stall_ms: float = 0.0

    @property
    def failed(self) -> bool:
        return not (self.status == "ok" or self.status.startswith("skip"))

    @staticmethod
    def header() -> str:
        return (f"{'mode':<17} {'mesh':<22} {'status':<10} {'s':>6} {'faces':>7} {'quads':>6} {'closed':>6} "
                f"{'manif.':>6} {'tex':>4} {'stall ms':>8}")

    def line(self) -> str:
        """The row under :meth:`header`; a long message goes on a line of its own."""
        def flag(v):
            return "-" if v is None else "yes" if v else "NO"

        status = self.status if len(self.status) <= 10 else "FAILED" if self.failed else "skip"
        line = (f"{self.mode:<17} {self.mesh:<22} {status:<10} {self.seconds:>6.1f} {self.faces:>7} {self.quads:>6} "
                f"{flag(self.closed):>6} {flag(self.manifold):>6} {flag(self.texture):>4} {self.stall_ms:>8.0f}")
        return line if status == self.status else line + f"\n    {self.status}"


#: ``render.quiet.quiet_stdout``, loaded by path so that ``--zip`` runs need nothing of the checkout importable.
blender_quiet = None


def _load_quiet():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_meshsmith_quiet", REPO / "render" / "quiet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.quiet_stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("meshes", type=Path, help="folder of mesh files (GLB, glTF, OBJ, PLY, STL)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes to run (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "field", help="output folder (default out/field)")
    parser.add_argument("--resolution", type=int, default=128, help="watertight resolution (default 128)")
    parser.add_argument("--faces", type=int, default=2000, help="artist face budget (default 2000)")
    parser.add_argument("--texture-size", default="1024", help="baked texture size (default 1024)")
    parser.add_argument("--no-render", dest="render", action="store_false", help="skip field.png")
    parser.add_argument("--million", action="store_true",
                        help="also Watertight and Artist on an icosphere of 1.3 million faces made here (the stall test)")
    parser.add_argument("--made", action="store_true",
                        help="also every mode on a painted Suzanne made here (a mesh with colour)")
    parser.add_argument("--zip", type=Path, help="install this extension zip (e.g. from make dist) and start the "
                                                 "backend it carries; default: build the add-on, use .venv's backend")
    parser.add_argument("--model-support", action="store_true",
                        help="with --zip: press Install Model Support first (pip installs PyTorch with Blender's Python)")
    parser.add_argument("--torch-index", default=None,
                        help="with --model-support: the PyTorch index preference ('' for pip's own configuration)")
    parser.add_argument("--keep-scratch", action="store_true",
                        help="keep the throw-away Blender user folder (the installed extension, model support, the "
                             "backend's state) instead of removing it at the end; its path is printed")
    args = parser.parse_args()
    paths = sorted(p for p in args.meshes.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if not paths:
        print(f"error: no mesh files ({', '.join(MESH_SUFFIXES)}) in {args.meshes}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="meshsmith-field-"))
    try:
        return _run(args, paths, out, scratch)
    finally:
        # The installed extension carries its wheels (and, with --model-support, PyTorch): about a
        # gigabyte a run, so it goes unless asked for.
        if args.keep_scratch:
            print(f"kept the scratch folder {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(args: argparse.Namespace, paths: list[Path], out: Path, scratch: Path) -> int:
    os.environ["BLENDER_USER_RESOURCES"] = str(scratch / "blender")
    os.environ["MESHSMITH_STATE_DIR"] = str(scratch / "state")
    os.environ["MESHSMITH_DATA_DIR"] = str(scratch / "data")
    global blender_quiet
    blender_quiet = _load_quiet()
    if args.zip:
        zip_path = args.zip.resolve()
        if os.environ.get("MESHSMITH_BACKEND_PYTHON"):
            print("note: MESHSMITH_BACKEND_PYTHON is set, so the add-on uses it, not the backend in the zip",
                  file=sys.stderr)
    else:
        os.environ.setdefault("MESHSMITH_BACKEND_PYTHON", str(REPO / ".venv" / "bin" / "python"))
        sys.path[:0] = [str(REPO / "scripts"), str(REPO)]
        from build_extension import build, find_blender_ext

        zip_path = build(scratch / "dist", find_blender_ext())
    import bpy

    print(f"Blender {bpy.app.version_string} (Python {platform.python_version()}), extension {zip_path.name}")
    with blender_quiet():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    import bl_ext.user_default.meshsmith.runtime as runtime
    import bl_ext.user_default.meshsmith.scene_io as scene_io

    if args.made:
        paths.append(painted_suzanne(scratch / "made" / "painted_suzanne.ply"))
    test = FieldTest(runtime, scene_io, args, scratch)
    if args.model_support:
        prefs = runtime.preferences()
        if args.torch_index is not None:
            prefs.torch_index = args.torch_index
        started = time.perf_counter()
        installer = runtime.install_model_support()
        installer.wait()
        print(f"model support: {installer.state} in {time.perf_counter() - started:.0f} s: {installer.message}")
        if installer.state != "done":
            print(installer.log_path.read_text(encoding="utf-8", errors="replace")[-3000:], file=sys.stderr)
            return 1
    with blender_quiet():
        bpy.ops.meshsmith.start_backend()
    backend = runtime.make_client().health().runtime
    print(f"backend: {runtime.check_backend().text}; Python {backend.get('python')} at {backend.get('executable')}, "
          f"{backend.get('kernels')} kernels\n")
    print(Row.header())
    rows: list[Row] = []
    try:
        for path in paths:
            for row in test.run_mesh(path, args.modes):
                print(row.line(), flush=True)
                rows.append(row)
        if args.million:
            big = big_sphere()
            for row in test.run_mesh(Path(big.name), [m for m in args.modes if m in ("watertight", "artist")], big):
                print(row.line(), flush=True)
                rows.append(row)
    finally:
        with blender_quiet():
            bpy.ops.meshsmith.stop_backend()
    test.lay_out()
    with blender_quiet():
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "field.blend"))
        if args.render:
            test.render(out / "field.png")
    (out / "field.json").write_text(json.dumps({"blender": bpy.app.version_string, "backend": backend,
                                                "rows": [asdict(r) for r in rows]}, indent=1))
    failed = [r for r in rows if r.failed]
    stall = max((r.stall_ms for r in rows if not r.status.startswith("skip")), default=0.0)
    print(f"\n{len(rows) - len(failed)} of {len(rows)} runs ok; longest main-thread stall {stall:.0f} ms; "
          f"wrote {out / 'field.json'}, {out / 'field.blend'}" + (f", {out / 'field.png'}" if args.render else ""))
    return 1 if failed else 0


class FieldTest:
    """Runs the modes on one mesh at a time in the current ``bpy`` scene."""

    def __init__(self, runtime, scene_io, args: argparse.Namespace, scratch: Path):
        self.runtime, self.scene_io, self.args, self.scratch = runtime, scene_io, args, scratch
        self.results: dict[str, dict[str, object]] = {}      # mesh -> mode -> result object

    # -- one mesh ------------------------------------------------------------------------------

    def run_mesh(self, path: Path, modes: list[str], source=None) -> list[Row]:
        """Every mode on the mesh file ``path`` (or on ``source``, an object made here, named by ``path``)."""
        import bpy

        if source is None:
            with blender_quiet():
                source = import_mesh(path)
        self.results[path.name] = {"source": source}
        has_colour = self.scene_io.colour_source(source) is not None
        rows = []
        for mode in modes:
            row = Row(mode, path.name)
            try:
                if mode in ("texture-object", "texture-keep", "artist-texture") and not has_colour:
                    row.status = "skip: the source has no colour"
                elif mode in ("texture-object", "texture-views") and "artist" not in self.results[path.name]:
                    row.status = "skip: needs the artist mode's result"
                elif mode == "texture-keep" and "texture-object" not in self.results[path.name]:
                    row.status = "skip: needs the texture-object mode's result"
                elif mode == "texture-views" and not path.is_file():
                    row.status = "skip: no file to render views of"
                elif mode in ("text", "artist-learned") and not MESH_LM_WEIGHTS.is_file():
                    row.status = "skip: no mesh model weights shipped yet (training/weights/mesh-lm-cpu)"
                elif mode == "text" and len(self.results) > 1:
                    row.status = "skip: From Text takes no object; it runs on the first mesh only"
                else:
                    self.run_mode(mode, path, source, row)
            except Exception as exc:  # noqa: BLE001 - a field test reports every failure as a row and goes on
                row.status = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            bpy.ops.object.select_all(action="DESELECT")
        return rows

    def run_mode(self, mode: str, path: Path, source, row: Row) -> None:
        import bpy

        settings = bpy.context.scene.meshsmith
        settings.resolution = self.args.resolution
        settings.artist_faces = self.args.faces
        settings.texture_size = self.args.texture_size
        settings.target_faces = 0
        settings.keep_uvs = True
        target, others = source, []
        if mode == "watertight" or mode == "cancel":
            settings.mode = "WATERTIGHT"
            if mode == "cancel":
                settings.resolution = 1024
        elif mode in ("artist", "artist-quads", "artist-triangles"):
            settings.mode = "ARTIST"
            settings.topology = {"artist": "QUAD_DOMINANT", "artist-quads": "QUADS",
                                 "artist-triangles": "TRIANGLES"}[mode]
        elif mode == "artist-texture":
            settings.mode = "ARTIST_TEXTURE"
        elif mode == "texture-object":
            settings.mode, settings.texture_source = "TEXTURE", "OBJECT"
            target, others = self.results[path.name]["artist"], [source]
        elif mode == "texture-keep":
            settings.mode, settings.texture_source = "TEXTURE", "OBJECT"
            target, others = self.results[path.name]["texture-object"], [source]
        elif mode == "texture-views":
            settings.mode, settings.texture_source = "TEXTURE", "VIEWS"
            settings.views_dir = str(self.render_views(path))
            target = self.results[path.name]["artist"]
        elif mode in ("views-hull", "views-model"):
            settings.mode, settings.views_input = "VIEWS", "FOLDER"
            settings.views_method = "HULL" if mode == "views-hull" else "MODEL"
            settings.views_resolution = 128
            settings.views_dir = self.helper_views(source)
        elif mode == "text":
            settings.mode, settings.text_model, settings.text_repair = "TEXT", "MESHSMITH", "NONE"
            settings.text_prompt, settings.text_weights, settings.learned_faces = "a chair", "", 300
        elif mode == "artist-learned":
            settings.mode, settings.learned_faces = "ARTIST_LEARNED", 300
        select(target, *others)
        job, row.seconds, row.stall_ms = self.generate(cancel=mode == "cancel")
        if mode == "cancel":
            imported = job.imported_name is not None
            row.status = "ok" if job.phase.value == "cancelled" and not imported else \
                f"the job ended {job.phase.value} ({job.message}), imported: {imported}"
            return
        if job.imported_name is None:
            row.status = job.message or f"the job ended {job.phase.value}"
            return
        result = bpy.data.objects[job.imported_name]
        self.results[path.name][mode] = result
        mesh = result.data
        row.faces = len(mesh.polygons)
        if mode in ("text", "artist-learned") and row.faces == 0:
            row.status = "the result has no faces"
        row.quads = sum(1 for p in mesh.polygons if len(p.vertices) == 4)
        row.closed, row.manifold = closed_and_manifold(result)
        row.texture = has_baked_texture(result)
        if mode == "watertight" and not (row.closed and row.manifold):
            row.status = "not closed and manifold"
        if mode in ("texture-object", "texture-keep", "texture-views", "artist-texture", "views-hull",
                    "views-model") and not row.texture:
            row.status = "no baked texture"
        if mode in ("views-hull", "views-model"):
            if not (row.closed and row.manifold):
                row.status = "not closed and manifold"
            low, high = world_box(source)
            r_low, r_high = world_box(result)
            size = max(h - lo for lo, h in zip(low, high))
            off = max(max(abs(a - b) for a, b in zip(low, r_low)), max(abs(a - b) for a, b in zip(high, r_high)))
            if off > 0.15 * size:
                row.status = f"the result is off the source by {off / size:.0%} of its size"
        if mode == "texture-keep" and not same_corner_uvs(mesh, target.data):
            row.status = "the target's UV map did not come back as it was"
        if mode in ("texture-object", "texture-keep", "texture-views"):
            # Texturing must not change the surface: what was closed and manifold stays so.
            closed, manifold = closed_and_manifold(target)
            if (closed and not row.closed) or (manifold and not row.manifold):
                row.status = (f"the texture step broke the mesh: closed {closed} -> {row.closed}, "
                              f"manifold {manifold} -> {row.manifold}")

    def generate(self, *, cancel: bool = False):
        """Click Generate and run the timer function until the job ends: (job, seconds, longest stall ms)."""
        import bpy

        runtime = self.runtime

        with blender_quiet():               # the operator's INFO report
            start = time.perf_counter()
            result = bpy.ops.meshsmith.generate()
            stall = time.perf_counter() - start
        if result != {"FINISHED"}:
            raise RuntimeError(f"Generate returned {result}: {bpy.context.scene.meshsmith.job_message or 'no message'}")
        job = runtime.get_job(bpy.context.scene.meshsmith.job_id)
        deadline = time.monotonic() + RUN_TIMEOUT
        cancelled = False
        while True:
            t = time.perf_counter()
            again = runtime.poll_jobs()
            stall = max(stall, time.perf_counter() - t)
            if cancel and not cancelled and job.phase.value == "polling" and job.progress > 0.0:
                with blender_quiet():
                    t = time.perf_counter()
                    bpy.ops.meshsmith.cancel()
                    stall = max(stall, time.perf_counter() - t)
                cancelled = True
            if again is None or job.is_final:
                break
            if time.monotonic() > deadline:
                runtime.cancel_job(job.id)
                raise TimeoutError(f"the job did not end in {RUN_TIMEOUT:g} s (at {job.stage})")
            time.sleep(0.05)
        return job, time.perf_counter() - start, 1000.0 * stall

    def helper_views(self, source) -> str:
        """The add-on's Render Views of ``source`` (once per object), as a user clicks it."""
        import bpy


        settings = bpy.context.scene.meshsmith
        folder = self.scratch / "helper-views" / source.name
        if not (folder / "cameras.json").is_file():
            select(source)
            with blender_quiet():
                result = bpy.ops.meshsmith.render_views()
            if result != {"FINISHED"}:
                raise RuntimeError(f"Render Views returned {result}")
            # The helper writes next to the .blend or in the temp folder; keep a copy per object.
            import shutil

            shutil.copytree(bpy.path.abspath(settings.views_dir), folder, dirs_exist_ok=True)
        return str(folder)

    def render_views(self, path: Path) -> Path:
        """Posed views of the mesh file, rendered by render/ in the backend's Python (once per mesh)."""
        views = self.scratch / "views" / path.stem
        if not (views / "cameras.json").is_file():
            done = subprocess.run([os.environ["MESHSMITH_BACKEND_PYTHON"], "-m", "render.views", "--input", str(path),
                                   "--out", str(views), "--resolution", "256", "--samples", "8"],
                                  cwd=REPO, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"render.views failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        return views

    # -- pictures ----------------------------------------------------------------------------

    def lay_out(self) -> None:
        """Every mesh's source and results in a row, each scaled to a unit box, for field.blend and field.png."""
        from mathutils import Matrix, Vector

        columns = ["source", *MODES]
        for r, (mesh, objects) in enumerate(self.results.items()):
            for c, name in enumerate(columns):
                obj = objects.get(name)
                if obj is None:
                    continue
                corners = [obj.matrix_world @ Vector(b) for b in obj.bound_box]
                lo = Vector([min(p[i] for p in corners) for i in range(3)])
                hi = Vector([max(p[i] for p in corners) for i in range(3)])
                scale = 1.0 / max(max(hi - lo), 1e-9)
                move = Matrix.Translation((1.4 * c, 0.0, -1.4 * r)) @ Matrix.Scale(scale, 4) @ Matrix.Translation(-(lo + hi) / 2)
                obj.matrix_world = move @ obj.matrix_world
                obj.hide_set(False)
                obj.hide_render = False

    def render(self, path: Path) -> None:
        import bpy
        from mathutils import Vector

        scene = bpy.context.scene
        rows, columns = len(self.results), 1 + len(MODES)
        cam = bpy.data.objects.new("field_camera", bpy.data.cameras.new("field_camera"))
        scene.collection.objects.link(cam)
        cam.data.type = "ORTHO"
        # The ortho scale spans the image's wider side; the grid fills it with a small margin.
        cam.data.ortho_scale = 1.4 * max(columns, rows) + 0.2
        centre = Vector((1.4 * (columns - 1) / 2, 0.0, -1.4 * (rows - 1) / 2))
        cam.location = centre + Vector((0.0, -20.0, 0.0))
        cam.rotation_euler = (1.5708, 0.0, 0.0)
        scene.camera = cam
        sun = bpy.data.objects.new("field_sun", bpy.data.lights.new("field_sun", "SUN"))
        sun.rotation_euler = (0.9, 0.2, 0.5)
        scene.collection.objects.link(sun)
        if scene.world is None:
            scene.world = bpy.data.worlds.new("field_world")
        scene.world.color = (0.35, 0.35, 0.38)
        scene.render.engine = "CYCLES"
        scene.cycles.samples = 8
        scene.render.resolution_x = 160 * columns
        scene.render.resolution_y = 160 * max(rows, 1)
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)


def import_mesh(path: Path):
    """Import a mesh file and join its mesh parts into one selected, active object."""
    import bpy

    before = set(bpy.data.objects)
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=str(path))
    elif suffix == ".obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    elif suffix == ".ply":
        bpy.ops.wm.ply_import(filepath=str(path))
    else:
        bpy.ops.wm.stl_import(filepath=str(path))
    parts = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    if not parts:
        raise RuntimeError(f"{path.name}: no mesh in the file")
    select(*parts)
    if len(parts) > 1:
        with bpy.context.temp_override(active_object=parts[0], selected_editable_objects=parts):
            bpy.ops.object.join()
    obj = parts[0]
    obj.name = path.stem
    return obj


def painted_suzanne(path: Path) -> Path:
    """Blender's Suzanne, subdivided once, coloured by position, written to ``path`` as ASCII PLY (Z up)."""
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_monkey(bm)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=1, use_grid_fill=True)
    lines = ["ply", "format ascii 1.0", "comment Meshsmith field test: Blender's Suzanne, painted",
             f"element vertex {len(bm.verts)}", *(f"property float {a}" for a in "xyz"),
             *(f"property uchar {c}" for c in ("red", "green", "blue")),
             f"element face {len(bm.faces)}", "property list uchar int vertex_indices", "end_header"]
    for v in bm.verts:
        x, y, z = v.co
        rgb = (int(127 + 120 * math.sin(3 * x)), int(127 + 120 * math.cos(3 * z)), int(127 + 120 * math.sin(2 * y + 1)))
        lines.append(f"{x:.6f} {y:.6f} {z:.6f} {rgb[0]} {rgb[1]} {rgb[2]}")
    bm.verts.index_update()
    lines += [f"{len(f.verts)} " + " ".join(str(v.index) for v in f.verts) for f in bm.faces]
    bm.free()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def big_sphere():
    """An icosphere of 1,310,720 triangles (8 subdivisions), the field test's large mesh."""
    import bmesh
    import bpy

    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=8, radius=1.0)
    mesh = bpy.data.meshes.new("icosphere_1.3M")
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new("icosphere_1.3M", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def select(active, *others) -> None:
    import bpy

    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    for obj in (*others, active):
        obj.hide_set(False)
        obj.select_set(True)
    bpy.context.view_layer.objects.active = active


def same_corner_uvs(a, b) -> bool:
    """Whether two meshes have the same corners, each with the same UV (within float32 round trips)."""
    ca, cb = corner_uvs(a), corner_uvs(b)
    return len(ca) == len(cb) > 0 and all(abs(x - y) <= 2e-4 for p, q in zip(ca, cb) for x, y in zip(p, q))


def corner_uvs(mesh) -> list[tuple]:
    """Every corner as (position, UV), rounded and sorted: equal for one surface with one UV layout."""
    layer = mesh.uv_layers.active
    if layer is None:
        return []
    co = [0.0] * (3 * len(mesh.vertices))
    mesh.vertices.foreach_get("co", co)
    uv = [0.0] * (2 * len(mesh.loops))
    layer.uv.foreach_get("vector", uv)
    return sorted((*(round(c, 4) for c in co[3 * loop.vertex_index:3 * loop.vertex_index + 3]),
                   round(uv[2 * loop.index], 4), round(uv[2 * loop.index + 1], 4)) for loop in mesh.loops)


def world_box(obj) -> tuple[list[float], list[float]]:
    points = [obj.matrix_world @ v.co for v in obj.data.vertices]
    return [min(p[i] for p in points) for i in range(3)], [max(p[i] for p in points) for i in range(3)]


def closed_and_manifold(obj) -> tuple[bool, bool]:
    """Blender's own tests: every edge in two faces; every edge manifold and contiguous, every vertex manifold."""
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(obj.data)
    try:
        closed = all(e.is_manifold for e in bm.edges)
        manifold = all((e.is_manifold or e.is_boundary) and (e.is_contiguous or e.is_boundary) for e in bm.edges) \
            and all(v.is_manifold or v.is_boundary for v in bm.verts)
        return closed, manifold
    finally:
        bm.free()


def has_baked_texture(obj) -> bool:
    material = obj.active_material
    if material is None or material.node_tree is None:
        return False
    return any(n.type == "TEX_IMAGE" and n.image is not None for n in material.node_tree.nodes)


if __name__ == "__main__":
    sys.exit(main())
