"""The installed extension in the real ``bpy`` module: registration, export/import, Generate end to end."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from array import array
from pathlib import Path

import pytest

from .conftest import ADDON_MODULE

import bpy  # first: bmesh and mathutils exist only once bpy is imported
import bmesh  # isort: skip
from mathutils import Matrix, Vector  # isort: skip

from addon import glb

START_HINT = "Start it from Meshsmith's preferences (Start backend) or run `python -m backend serve`."
JOB_TIMEOUT = 180.0


# -- helpers ------------------------------------------------------------------------------------


def link_new_object(name: str, mesh: bpy.types.Mesh) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    return obj


def broken_sphere(name: str) -> bpy.types.Object:
    """A UV sphere with holes, flipped faces and duplicated (overlapping) faces, posed off the origin."""
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=1.0)
    bm.faces.ensure_lookup_table()
    faces = list(bm.faces)
    bmesh.ops.reverse_faces(bm, faces=faces[40:60])
    bmesh.ops.duplicate(bm, geom=faces[100:120])
    bmesh.ops.delete(bm, geom=faces[200:230], context="FACES")
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    obj = link_new_object(name, mesh)
    obj.location = (1.0, -2.0, 0.5)
    obj.rotation_euler = (0.3, -0.5, 1.1)
    obj.scale = (1.5, 0.75, 1.2)
    bpy.context.view_layer.update()
    return obj


def closed_and_oriented(mesh: bpy.types.Mesh) -> tuple[bool, bool, int]:
    """(every edge manifold and without boundary, winding consistent across every edge, face count)."""
    bm = bmesh.new()
    bm.from_mesh(mesh)
    closed = all(e.is_manifold and not e.is_boundary for e in bm.edges)
    oriented = all(e.is_contiguous for e in bm.edges)
    count = len(bm.faces)
    bm.free()
    return closed, oriented, count


def signed_volume(mesh: bpy.types.Mesh) -> float:
    bm = bmesh.new()
    bm.from_mesh(mesh)
    volume = bm.calc_volume(signed=True)
    bm.free()
    return volume


def coords_fingerprint(mesh: bpy.types.Mesh) -> tuple[int, str]:
    coords = array("f", bytes(12 * len(mesh.vertices)))
    mesh.vertices.foreach_get("co", coords)
    return len(mesh.vertices), hashlib.sha256(coords.tobytes()).hexdigest()


def world_bounds(obj: bpy.types.Object) -> tuple[Vector, Vector]:
    points = [obj.matrix_world @ v.co for v in obj.data.vertices]
    low = Vector(tuple(min(p[i] for p in points) for i in range(3)))
    high = Vector(tuple(max(p[i] for p in points) for i in range(3)))
    return low, high


def matrices_equal(a: Matrix, b: Matrix, tol: float = 1e-5) -> bool:
    return all(abs(a[r][c] - b[r][c]) <= tol for r in range(4) for c in range(4))


# -- environment guard ----------------------------------------------------------------------------


def test_running_on_the_expected_blender():
    expected = os.environ.get("MESHSMITH_EXPECT_BPY")
    if not expected:
        pytest.skip("MESHSMITH_EXPECT_BPY is not set")
    assert bpy.app.version[:2] == tuple(int(p) for p in expected.split(".")[:2]), bpy.app.version_string


# -- packaging and registration -----------------------------------------------------------------


def test_extension_zip_holds_only_the_addon_and_passes_blenders_validator(extension_zip):
    names = set(zipfile.ZipFile(extension_zip).namelist())
    addon_dir = Path(__file__).resolve().parents[2] / "addon"
    assert names == {"blender_manifest.toml"} | {p.name for p in addon_dir.glob("*.py")}
    # bpy.__file__ is bpy/<version>/scripts/modules/bpy/__init__.py
    blender_ext = Path(bpy.__file__).parents[2] / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    done = subprocess.run([sys.executable, str(blender_ext), "validate", str(extension_zip)], capture_output=True, text=True)
    assert done.returncode == 0 and "Success" in done.stdout, done.stdout + done.stderr


def test_panel_props_and_operators_register(runtime):
    panel = bpy.types.VIEW3D_PT_meshsmith
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Meshsmith")
    settings = bpy.context.scene.meshsmith
    assert (settings.mode, settings.resolution) == ("WATERTIGHT", 128)
    resolution = type(settings).bl_rna.properties["resolution"]
    assert (resolution.hard_min, resolution.hard_max) == (32, 1024)
    modes = [(i.identifier, i.name) for i in type(settings).bl_rna.properties["mode"].enum_items]
    assert modes == [("WATERTIGHT", "Watertight"), ("ARTIST", "Artist"), ("TEXTURE", "Texture"),
                     ("ARTIST_TEXTURE", "Artist + Texture"), ("VIEWS", "From Views"), ("TEXT", "From Text"),
                     ("ARTIST_LEARNED", "Artist (learned)")]
    topologies = [i.name for i in type(settings).bl_rna.properties["topology"].enum_items]
    assert topologies == ["Quads Only", "Quad-Dominant", "Triangles"]
    assert (settings.artist_faces, settings.texture_size, settings.keep_sharp, settings.normal_map) == (2000, "1024", True, True)
    assert math.degrees(settings.sharp_angle) == pytest.approx(30.0)
    faces = type(settings).bl_rna.properties["artist_faces"]
    assert (faces.hard_min, faces.hard_max) == (100, 100_000)  # the artist pipeline's bounds
    for name in ("generate", "cancel", "start_backend", "stop_backend", "refresh_status"):
        assert hasattr(bpy.ops.meshsmith, name)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    assert {"backend_address", "backend_python", "backend_dir", "start_on_generate"} <= set(prefs.bl_rna.properties.keys())


def test_generate_needs_an_active_mesh(runtime):
    bpy.context.view_layer.objects.active = None
    assert not bpy.ops.meshsmith.generate.poll()
    empty = bpy.data.objects.new("JustAnEmpty", None)
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    assert not bpy.ops.meshsmith.generate.poll()


# -- export and import without a backend ------------------------------------------------------------


def test_export_applies_modifiers_in_object_space(addon):
    from importlib import import_module

    scene_io = import_module(ADDON_MODULE + ".scene_io")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=2.0)
    mesh = bpy.data.meshes.new("ModCube")
    bm.to_mesh(mesh)
    bm.free()
    obj = link_new_object("ModCube", mesh)
    obj.location = (10.0, 0.0, 0.0)
    obj.modifiers.new("Subdivide", "SUBSURF").levels = 1
    data = scene_io.export_object_glb(obj, bpy.context.evaluated_depsgraph_get())
    exported = glb.read_glb(data)
    assert exported.triangle_count == 6 * 4 * 2  # each quad split in 4 by the modifier, then triangulated
    assert max(abs(v) for v in exported.positions) <= 1.0 + 1e-6  # local space: the location is not baked in
    assert len(obj.data.polygons) == 6  # the source mesh itself keeps no modifier result


def test_blenders_gltf_importer_reads_our_glb_in_blender_axes(addon, tmp_path):
    """The axis convention in addon/glb.py agrees with Blender's own glTF importer."""
    import addon_utils

    addon_utils.enable("io_scene_gltf2", default_set=True)
    positions = [0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 4.0]
    indices = [0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3]  # an outward-facing tetrahedron
    path = tmp_path / "tetra.glb"
    path.write_bytes(glb.write_glb(positions, indices, name="Tetra"))
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=str(path))
    (imported,) = set(bpy.data.objects) - before
    world = sorted(tuple(round(c, 5) for c in imported.matrix_world @ v.co) for v in imported.data.vertices)
    assert world == sorted([(0, 0, 0), (2, 0, 0), (0, 3, 0), (0, 0, 4)])
    assert signed_volume(imported.data) * imported.matrix_world.determinant() == pytest.approx(4.0)


def test_import_result_makes_a_new_object_in_the_meshsmith_collection(addon):
    from importlib import import_module

    scene_io = import_module(ADDON_MODULE + ".scene_io")
    from tests.addon.test_glb import CUBE_POSITIONS, CUBE_TRIANGLES

    triangles = glb.read_glb(glb.write_glb(CUBE_POSITIONS, CUBE_TRIANGLES))
    matrix = Matrix.Translation((1.0, 2.0, 3.0)) @ Matrix.Rotation(0.4, 4, "Z")
    obj = scene_io.import_result(bpy.context.scene, "Imported_watertight", triangles, matrix)
    assert obj.name == obj.data.name == "Imported_watertight"
    assert [c.name for c in obj.users_collection] == ["Meshsmith"]
    assert matrices_equal(obj.matrix_world, matrix)
    assert closed_and_oriented(obj.data) == (True, True, 12)
    assert signed_volume(obj.data) == pytest.approx(8.0)


# -- end to end with the real backend ----------------------------------------------------------------


def test_generate_makes_a_closed_manifold_copy_of_a_broken_mesh(runtime, backend):
    source = broken_sphere("BrokenSphere")
    assert closed_and_oriented(source.data)[:2] == (False, False)  # the test input really is broken
    fingerprint = coords_fingerprint(source.data)
    source_matrix = source.matrix_world.copy()
    source_low, source_high = world_bounds(source)

    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    settings = bpy.context.scene.meshsmith
    job = runtime.get_job(settings.job_id)
    assert job is not None and job.result_name == "BrokenSphere_watertight"
    runtime.run_until_idle(timeout=JOB_TIMEOUT)

    assert job.phase.value == "imported", job.message
    assert (settings.job_state, settings.job_progress) == ("imported", 1.0)
    result = bpy.data.objects["BrokenSphere_watertight"]
    assert job.imported_name == result.name and result.data.name == "BrokenSphere_watertight"
    collection = bpy.data.collections["Meshsmith"]
    assert result.users_collection == (collection,) or list(result.users_collection) == [collection]
    assert collection.name in bpy.context.scene.collection.children
    assert matrices_equal(result.matrix_world, source_matrix)
    closed, oriented, faces = closed_and_oriented(result.data)
    assert closed and oriented and faces > 100
    assert signed_volume(result.data) > 0  # outward-facing
    # The source is untouched.
    assert coords_fingerprint(source.data) == fingerprint
    assert matrices_equal(source.matrix_world, source_matrix)
    # Same place and size in the world, within a few voxels of the grid.
    low, high = world_bounds(result)
    tolerance = 0.05 * (source_high - source_low).length
    assert (low - source_low).length < tolerance and (high - source_high).length < tolerance


def test_panel_options_reach_the_backend_and_shape_the_result(runtime, backend):
    broken_sphere("OptionsSphere")
    settings = bpy.context.scene.meshsmith
    settings.largest_only, settings.target_faces = True, 600
    try:
        assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    finally:
        settings.largest_only, settings.target_faces = False, 0
    job = runtime.get_job(settings.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    assert job.client.job(job.remote_id).params == {"resolution": 128, "keep": "largest", "cavities": "fill",
                                             "target_faces": 600, "sharp_features": True}
    closed, oriented, faces = closed_and_oriented(bpy.data.objects["OptionsSphere_watertight"].data)
    assert closed and oriented and 400 <= faces <= 660


def test_cancel_stops_the_job_and_imports_nothing(runtime, backend):
    source = broken_sphere("CancelSphere")
    bpy.context.scene.meshsmith.resolution = 1024  # long enough to be cancelled while it runs
    try:
        assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    finally:
        bpy.context.scene.meshsmith.resolution = 128
    job = runtime.get_job(bpy.context.scene.meshsmith.job_id)
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.phase.value != "polling":                 # the upload runs on the add-on's worker thread
        assert time.monotonic() < deadline and not job.is_final, job.message
        runtime.poll_jobs()
        time.sleep(0.05)
    assert bpy.ops.meshsmith.cancel.poll()
    assert bpy.ops.meshsmith.cancel() == {"FINISHED"}
    runtime.run_until_idle(timeout=JOB_TIMEOUT)

    assert job.phase.value == "cancelled", job.message
    assert bpy.context.scene.meshsmith.job_state == "cancelled"
    assert "CancelSphere_watertight" not in bpy.data.objects
    assert job.client.job(job.remote_id).state == "cancelled"
    assert source.name == "CancelSphere"
    assert not bpy.ops.meshsmith.cancel.poll()


def test_backend_down_reports_how_to_start_it(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("MESHSMITH_STATE_DIR", str(tmp_path))  # no backend.json here
    source = broken_sphere("NoBackendSphere")
    jobs_before = len(runtime.jobs())
    job_id_before = bpy.context.scene.meshsmith.job_id
    with pytest.raises(RuntimeError) as reported:
        bpy.ops.meshsmith.generate()
    message = str(reported.value)
    # One ERROR report with the documented message; no Python traceback leaked into it.
    assert message.startswith("Error: The Meshsmith backend is not running")
    assert message.rstrip().endswith(START_HINT)
    assert "Traceback" not in message
    assert len(runtime.jobs()) == jobs_before and bpy.context.scene.meshsmith.job_id == job_id_before
    assert "NoBackendSphere_watertight" not in bpy.data.objects
    assert source.name in bpy.data.objects
    assert runtime.check_backend().text == "not running"


def cube_object(name: str) -> bpy.types.Object:
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    return link_new_object(name, mesh)


def test_export_errors_end_the_job_with_a_sentence(runtime, backend):
    # The mesh is encoded with the upload, off the main thread: the job fails, nothing is sent.
    obj = cube_object("NaNCube")
    obj.data.vertices.foreach_set("co", [math.nan] * 3 * len(obj.data.vertices))
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(bpy.context.scene.meshsmith.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "failed" and job.remote_ids == []
    assert job.message.startswith("'NaNCube' cannot be exported: positions contain NaN")
    assert "Traceback" not in job.message


def test_backend_error_answers_end_the_job_with_the_backends_sentence(runtime, backend, monkeypatch, tmp_path):
    # The preferences point at the running backend; the state file there has a wrong token.
    # The upload runs off Blender's main thread, so the refusal arrives as the job's end.
    (tmp_path / "backend.json").write_text('{"url": "http://127.0.0.1:9", "token": "wrong", "pid": %d}' % os.getpid())
    monkeypatch.setenv("MESHSMITH_STATE_DIR", str(tmp_path))
    bpy.context.preferences.addons[ADDON_MODULE].preferences.backend_address = backend.url
    cube_object("TokenCube")
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(bpy.context.scene.meshsmith.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "failed" and job.remote_ids == []
    assert "token" in job.message.lower() and "Traceback" not in job.message   # the backend's own 401 sentence
    assert bpy.context.scene.meshsmith.job_message == job.message
    assert "TokenCube_watertight" not in bpy.data.objects


def test_start_and_stop_backend_from_the_preferences(runtime, monkeypatch, tmp_path):
    from .conftest import backend_python

    monkeypatch.setenv("MESHSMITH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MESHSMITH_DATA_DIR", str(tmp_path / "data"))
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.backend_python = backend_python()
    assert not bpy.ops.meshsmith.stop_backend.poll()
    assert bpy.ops.meshsmith.start_backend() == {"FINISHED"}
    try:
        assert runtime.owns_backend()
        assert runtime.backend_status().text.startswith("running (")
        assert (tmp_path / "state" / "backend.json").exists()
    finally:
        assert bpy.ops.meshsmith.stop_backend() == {"FINISHED"}
    assert not runtime.owns_backend()
    assert not (tmp_path / "state" / "backend.json").exists()
    assert runtime.check_backend().text == "not running"


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in interpreter is a POSIX shell script")
def test_the_python_hint_says_when_starts_python_has_no_backend(runtime, monkeypatch, tmp_path):
    import venv

    from .conftest import backend_python

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv.create(tmp_path / "bare", with_pip=False)
    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{tmp_path / "bare" / "bin" / "python"}" "$@"\n')
    shim.chmod(0o755)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    saved = prefs.backend_python

    def settled_hint() -> str:
        deadline = time.monotonic() + 30
        while "checking" in (hint := runtime.python_hint(prefs)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return hint

    try:
        prefs.backend_python = str(shim)
        assert "checking" in runtime.python_hint(prefs)       # the draw never waits for the probe
        hint = settled_hint()
        assert "has no Meshsmith backend" in hint and str(tmp_path / "bare") in hint and "shims" not in hint, hint
        prefs.backend_python = backend_python()
        assert settled_hint().startswith("Start uses "), settled_hint()
    finally:
        prefs.backend_python = saved


QUIT_SCRIPT = """
import importlib, json, os, sys
import bpy
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
prefs = bpy.context.preferences.addons["bl_ext.user_default.meshsmith"].preferences
prefs.backend_python = sys.argv[2]
assert bpy.ops.meshsmith.start_backend() == {"FINISHED"}
runtime = importlib.import_module("bl_ext.user_default.meshsmith.runtime")
print(json.dumps({"pid": runtime._session.process.pid}), flush=True)
# Quit without stopping anything: the add-on's exit hook has to.
"""


def test_quitting_blender_stops_the_backend_it_started(extension_zip, tmp_path):
    from .conftest import backend_python

    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(tmp_path / "blender"),
        "MESHSMITH_STATE_DIR": str(tmp_path / "state"),
        "MESHSMITH_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-c", QUIT_SCRIPT, str(extension_zip), backend_python()],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith('{"pid"')]
    pid = json.loads(line)["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "state" / "backend.json").exists()


def test_model_support_in_a_development_build(runtime, monkeypatch, tmp_path):
    """The add-on alone (no bundled backend): model support is not installed, and installing it
    says to put torch into the backend's own environment instead of running pip. Asking where it
    would go (the preferences do on every redraw) creates no folder."""
    import shutil

    user = Path(bpy.utils.extension_path_user(runtime.__package__, path="", create=False))
    shutil.rmtree(user, ignore_errors=True)
    state, line = runtime.model_support_state()
    assert state == "missing" and "PyTorch" in line
    assert runtime.model_support_dir().name.startswith("model-support-py")
    assert not user.exists()
    with pytest.raises(runtime.BackendStartError, match="pip install torch"):
        runtime.install_model_support()
    # Install is offered unless an install runs; Cancel only while one does.
    assert bpy.ops.meshsmith.install_model_support.poll() and not bpy.ops.meshsmith.cancel_model_support.poll()
    running = runtime.model_support.Installer(sys.executable, tmp_path / "model-support", state="running")
    monkeypatch.setattr(runtime._session, "installer", running)
    assert not bpy.ops.meshsmith.install_model_support.poll() and bpy.ops.meshsmith.cancel_model_support.poll()


def test_the_bundled_backend_finds_model_support_after_the_zips_wheels(runtime, monkeypatch, tmp_path):
    """pip's copies of shared dependencies in model support must not shadow the zip's pinned wheels."""
    bundle, site, support = tmp_path / "bundled", tmp_path / "site-packages", tmp_path / "model-support"
    (bundle / "backend").mkdir(parents=True)
    (bundle / "backend" / "__main__.py").write_text("")
    monkeypatch.setattr(runtime.backend_process, "BUNDLED", bundle)
    monkeypatch.setattr(runtime, "wheels_site_packages", lambda: str(site))
    monkeypatch.setattr(runtime, "model_support_dir", lambda: support)
    monkeypatch.delenv("MESHSMITH_BACKEND_PYTHON", raising=False)
    assert runtime.launch_settings("", "") == (sys.executable, str(bundle), (str(site),))
    (support / "torch").mkdir(parents=True)
    (support / "torch" / "__init__.py").write_text("")
    assert runtime.launch_settings("", "") == (sys.executable, str(bundle), (str(site), str(support)))
