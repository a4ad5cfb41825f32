"""What an artist sees around a click on Generate (field test, issue 14, defect 7), in the real ``bpy``.

Each test names the surprise it guards against: a Generate button greyed out without a
reason, objects Blender could convert refused, other selected objects ignored, a second
click while a job runs, a result that lands unselected on top of its still-visible source,
a result imported into the file opened after the click, stale lines in a failed start's
message.
"""

from __future__ import annotations

import time

import pytest

from .conftest import ADDON_MODULE

import bpy  # first: bmesh exists only once bpy is imported
import bmesh  # isort: skip

JOB_TIMEOUT = 180.0


@pytest.fixture
def scene(runtime, backend):
    """An empty scene in Watertight mode at a small resolution, restored afterwards."""
    bpy.ops.wm.read_homefile(use_empty=True)
    settings = bpy.context.scene.meshsmith
    settings.mode, settings.resolution, settings.hide_source = "WATERTIGHT", 48, True
    bpy.context.preferences.addons[ADDON_MODULE].preferences.backend_address = backend.url
    yield bpy.context.scene
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    bpy.context.preferences.addons[ADDON_MODULE].preferences.backend_address = ""


def cube(name: str, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def select(active, *others) -> None:
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    for obj in (active, *others):
        obj.select_set(True)
    bpy.context.view_layer.objects.active = active


def test_generate_says_why_it_is_greyed_out(scene, runtime):
    bpy.context.view_layer.objects.active = None
    assert not bpy.ops.meshsmith.generate.poll()
    assert "Select an object" in runtime.cannot_generate(bpy.context)
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(camera)
    select(camera)
    assert not bpy.ops.meshsmith.generate.poll()
    assert "is a camera" in runtime.cannot_generate(bpy.context)
    with pytest.raises(RuntimeError, match="is a camera"):       # Blender shows the same sentence
        bpy.ops.meshsmith.generate()


def test_text_and_curves_are_generated_from_as_their_meshes(scene, runtime):
    text = bpy.data.objects.new("Word", bpy.data.curves.new("Word", "FONT"))
    text.data.body = "Hi"
    text.data.extrude = 0.1
    scene.collection.objects.link(text)
    select(text)
    assert bpy.ops.meshsmith.generate.poll(), runtime.cannot_generate(bpy.context)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(scene.meshsmith.job_id)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert job.phase.value == "imported", job.message
    assert len(bpy.data.objects["Word_watertight"].data.polygons) > 100


def test_every_selected_object_is_generated_and_the_button_waits_for_the_jobs(scene, runtime):
    a, b = cube("BoxA"), cube("BoxB", location=(3.0, 0.0, 0.0))
    select(a, b)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    # Two jobs run; a second click would only make copies: Generate waits, and says so.
    assert not bpy.ops.meshsmith.generate.poll()
    assert "running" in runtime.cannot_generate(bpy.context)
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert {"BoxA_watertight", "BoxB_watertight"} <= set(bpy.data.objects.keys())
    assert "BoxA_watertight.001" not in bpy.data.objects
    assert bpy.ops.meshsmith.generate.poll()


def test_the_result_is_selected_and_active_and_the_source_hidden(scene, runtime):
    source = cube("Shown")
    select(source)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    result = bpy.data.objects["Shown_watertight"]
    assert bpy.context.view_layer.objects.active == result and result.select_get()
    assert not source.select_get() and source.hide_get()
    # Shaded smooth, not flat (a remesh looks crinkly flat); the cube's own edges stay sharp.
    assert all(p.use_smooth for p in result.data.polygons)
    assert any(e.use_edge_sharp for e in result.data.edges)

    scene.meshsmith.hide_source = False
    kept = cube("Kept", location=(3.0, 0.0, 0.0))
    select(kept)
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    runtime.run_until_idle(timeout=JOB_TIMEOUT)
    assert not kept.hide_get() and bpy.context.view_layer.objects.active.name == "Kept_watertight"


def test_a_job_of_a_closed_file_is_not_imported_into_the_next(scene, runtime):
    select(cube("Closed"))
    scene.meshsmith.resolution = 1024                       # long enough to be running at File > New
    assert bpy.ops.meshsmith.generate() == {"FINISHED"}
    job = runtime.get_job(scene.meshsmith.job_id)
    bpy.ops.wm.read_homefile(use_empty=True)                # File > New: a new scene named "Scene" too
    assert job.phase.value == "cancelled" and "closed" in job.message
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:                      # a late answer must not bring it back
        runtime.poll_jobs()
        time.sleep(0.05)
    assert "Closed_watertight" not in bpy.data.objects and job.imported_name is None


def test_a_failed_start_shows_only_its_own_log_lines(tmp_path):
    from importlib import import_module

    backend_process = import_module(ADDON_MODULE + ".backend_process")
    log = tmp_path / "backend.log"
    log.write_text("".join(f"an earlier backend's line {i}\n" for i in range(20)))
    process = backend_process.BackendProcess("/bin/false", log_path=log, backend_dir=str(tmp_path / "nowhere"))
    (tmp_path / "nowhere" / "backend").mkdir(parents=True)
    process.start()
    with pytest.raises(Exception) as failed:
        process.wait_until_healthy(timeout=10)
    assert "earlier backend" not in str(failed.value)
