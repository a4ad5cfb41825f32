"""The add-on's session: job tracker, backend process and the poll function the timer calls.

Operators, the panel and headless scripts all go through the functions here:

- :func:`generate` submits the active object (and, for the texture modes, its colour source)
  and returns at once; a mode of several steps is one tracked job (see :mod:`.jobs`);
- :func:`poll_jobs` advances every job by one step (a ``bpy.app.timers`` function calls it in
  Blender; the pip ``bpy`` module has no event loop, so scripts and tests call it, or
  :func:`run_until_idle`, themselves);
- :func:`cancel_job`, :func:`start_backend`, :func:`stop_backend`, :func:`check_backend`.

Errors leave as :class:`~.errors.MeshsmithError` with a message for a person.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy.app.handlers import persistent
from mathutils import Matrix

from . import backend_process, glb, model_support, modes, scene_io, views
from .backend_process import BackendProcess, resolve_python, start_backend as spawn_backend
from .client import Client
from .connection import resolve_connection
from .errors import START_HINT, BackendError, BackendStartError, BackendUnavailable, MeshsmithError
from .jobs import ChainStep, JobTracker, ThreadCourier, TrackedJob

log = logging.getLogger(__name__)

#: Seconds between two polls of the backend while jobs run.
POLL_INTERVAL = 0.5
UNDO_MESSAGE = "Meshsmith: Generate"
#: Seconds a status check may block the UI.
HEALTH_TIMEOUT = 2.0


@dataclass
class BackendStatus:
    """What the panel shows about the backend; refreshed by :func:`check_backend` and by polling."""

    #: Short state, e.g. "running (cpu)" or "not running".
    text: str = "unknown"
    #: What to do about it, or which backend it is.
    hint: str = "Press refresh to check."
    #: Pipelines the running backend cannot run, with why.
    unavailable: dict[str, str] = field(default_factory=dict)

    def mode_unavailable(self, mode: str) -> str:
        """Why ``mode`` cannot run on this backend ("" when it can, or when that is not known)."""
        for pipeline in modes.MODE_PIPELINES.get(mode, ()):
            why = self.unavailable.get(pipeline)
            if why:
                return why
        return ""


class _Session:
    """State that lives as long as the add-on is enabled in this Blender process."""

    def __init__(self) -> None:
        self.tracker = JobTracker(courier=ThreadCourier())
        #: The backend process this add-on started; the only one it will ever stop.
        self.process: BackendProcess | None = None
        self.status = BackendStatus()
        self.status_bar_set = False
        #: The running or last install of model support (None: none this session).
        self.installer: model_support.Installer | None = None


_session = _Session()


# -- preferences and connection -----------------------------------------------------------


def preferences() -> bpy.types.AddonPreferences | None:
    """This add-on's preferences; None when the add-on is not enabled (e.g. imported directly)."""
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def _pref(name: str, default: str | bool = "") -> str | bool:
    prefs = preferences()
    return getattr(prefs, name, default) if prefs is not None else default


def make_client(**options: float) -> Client:
    """A client for the backend the preferences (or the state file) point at; ``options`` go to :class:`Client`."""
    return Client.from_connection(resolve_connection(str(_pref("backend_address"))), **options)


def wheels_site_packages() -> str:
    """Where Blender installed the extensions' wheels for this Python ("" when it has no such folder)."""
    local = bpy.utils.user_resource("EXTENSIONS", path=".local")
    folder = Path(local) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    return str(folder) if folder.is_dir() else ""


def launch_settings(python_pref: str, dir_pref: str) -> tuple[str, str, tuple[str, ...]]:
    """(python, backend folder, extra PYTHONPATH folders) Start will use for these preferences.

    With no Python named anywhere and a self-contained extension, that is Blender's own Python
    running the bundled backend on the wheels Blender installed from the zip.
    """
    python = resolve_python(python_pref)
    backend_dir = bpy.path.abspath(dir_pref) if dir_pref.strip() else ""
    if backend_process.uses_bundled(python_pref):
        support = model_support_dir()
        extra = backend_process.bundled_paths(wheels_site_packages(),
                                              str(support) if model_support.is_installed(support) else "")
        return python, backend_dir or backend_process.bundled_dir(), extra
    return python, backend_dir, ()


# -- model support ------------------------------------------------------------------------


def model_support_dir() -> Path:
    """Where model support is (or would be) installed: a folder of the extension's user directory,
    which Blender keeps across updates of the extension. Nothing is created here (the preferences
    ask on every redraw); the installer makes the folder."""
    package = __package__ or "meshsmith"
    try:
        root = bpy.utils.extension_path_user(package, path="", create=False)
    except (ValueError, AttributeError):    # not installed as an extension (a legacy add-on)
        root = bpy.utils.user_resource("SCRIPTS", path="meshsmith", create=False)
    return Path(root) / f"model-support-py{sys.version_info.major}{sys.version_info.minor}"


def model_support_state() -> tuple[str, str]:
    """(state, a line for the preferences): installing, installed, not installed, or how the last install ended."""
    installer = _session.installer
    if installer is not None and installer.running:
        return "running", f"Installing ({installer.lines_seen} lines from pip): {installer.line}"
    if installer is not None and installer.state in ("failed", "cancelled"):
        return installer.state, installer.message
    if model_support.is_installed(model_support_dir()):
        note = " Restart the backend to use it." if installer is not None and installer.state == "done" else ""
        return "installed", f"Installed in {model_support_dir()}.{note}"
    return "missing", ("Not installed: From Views by the model, From Text with Meshsmith's model and Artist "
                       "(learned) need PyTorch (a download of about 200 MB to 1 GB).")


def install_model_support(extra_index: str | None = None) -> model_support.Installer:
    """Start installing model support with Blender's Python (on a thread); the preferences show its progress."""
    if model_support_running():
        return _session.installer
    if not backend_process.bundled_dir():
        raise BackendStartError("This Meshsmith has no bundled backend (a development build): install torch into "
                                "the backend's own environment instead (pip install torch).")
    index = str(_pref("torch_index")) if extra_index is None else extra_index
    _session.installer = model_support.Installer(sys.executable, model_support_dir(), extra_index=index.strip(),
                                                 constraints=model_support.bundled_constraints())
    _session.installer.start()

    def redraw_while_running() -> float | None:
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "PREFERENCES":
                    area.tag_redraw()
        return 0.5 if _session.installer is not None and _session.installer.running else None

    bpy.app.timers.register(redraw_while_running, first_interval=0.5)
    return _session.installer


def model_support_running() -> bool:
    return _session.installer is not None and _session.installer.running


def cancel_model_support() -> None:
    if _session.installer is not None:
        _session.installer.cancel()


def python_hint(prefs: bpy.types.AddonPreferences) -> str:
    """One line saying which Python the Start button will use, and whether it has the backend.

    The check runs that Python once (:func:`backend_process.probe_python`) on a thread; until
    it answers the line says so, and the preferences redraw when it does.
    """
    try:
        python, backend_dir, extra = launch_settings(prefs.backend_python, prefs.backend_dir)
    except BackendStartError:
        return "No Python found: set Backend Python, or $MESHSMITH_BACKEND_PYTHON"
    if backend_process.uses_bundled(prefs.backend_python):
        source = "Blender's own, with the backend this extension carries"
    else:
        source = "preferences" if prefs.backend_python.strip() else "$MESHSMITH_BACKEND_PYTHON or PATH"
    probe = _probe(python, backend_dir, extra)
    if probe is None:
        return f"Start uses {python} (from {source}); checking it ..."
    if not probe.executable:
        return f"Start uses {python} (from {source}), but {probe.error}: set Backend Python"
    shown = probe.executable if os.path.realpath(probe.executable) != os.path.realpath(python) else python
    if not probe.has_backend:
        return (f"{shown} (from {source}) has no Meshsmith backend: set Backend Python to the environment "
                "where it is installed, or Backend Folder to a checkout")
    return f"Start uses {shown} (from {source})"


_probes: dict[tuple[str, str, tuple[str, ...]], backend_process.PythonProbe | None] = {}


def _probe(python: str, backend_dir: str, extra_paths: tuple[str, ...] = ()) -> backend_process.PythonProbe | None:
    """The cached probe of ``python``; None while it runs (started here on first ask)."""
    key = (python, backend_dir, extra_paths)
    if key in _probes:
        return _probes[key]
    _probes[key] = None

    def run() -> None:
        _probes[key] = backend_process.probe_python(python, backend_dir, extra_paths=extra_paths)

    def redraw_when_done() -> float | None:
        """Main-thread timer: redraw the preferences once the probe has answered."""
        if _probes.get(key) is None and key in _probes:
            return 0.25
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "PREFERENCES":
                    area.tag_redraw()
        return None

    threading.Thread(target=run, name="meshsmith-probe", daemon=True).start()
    bpy.app.timers.register(redraw_when_done, first_interval=0.25)
    return None


# -- backend process ----------------------------------------------------------------------


def backend_status() -> BackendStatus:
    return _session.status


def check_backend() -> BackendStatus:
    """Ask the backend for its health and remember the answer for the panel."""
    try:
        # Short timeout: this runs on Blender's main thread, and a hung backend must not freeze the UI.
        health = make_client(timeout=HEALTH_TIMEOUT).health()
    except BackendUnavailable as exc:
        _session.status = BackendStatus("not running", START_HINT)
        log.info("backend not running: %s", exc.reason)
    except BackendError as exc:
        _session.status = BackendStatus("not answering", exc.message)
    else:
        owner = "started by Blender" if _session.process and _session.process.running else "external"
        facts = health.describe_runtime()
        _session.status = BackendStatus(health.describe(), f"Backend {health.version}, {owner}"
                                        + (f"; {facts}." if facts else "."), health.unavailable())
    _redraw()
    return _session.status


def start_backend(timeout: float = 60.0) -> str:
    """Start a backend with the preferences' Python and wait until it answers.

    Returns a status line. Does nothing when a backend already answers. Raises
    :class:`BackendStartError` when it cannot start.
    """
    try:
        health = make_client().health()
    except (BackendUnavailable, BackendError):
        pass
    else:
        check_backend()
        return f"The backend is already running ({health.device})."
    stop_backend()  # a previous process of ours that no longer answers
    python, backend_dir, extra_paths = launch_settings(str(_pref("backend_python")), str(_pref("backend_dir")))
    process, health = spawn_backend(
        python,
        backend_dir=backend_dir,
        timeout=timeout,
        address_override=str(_pref("backend_address")),
        extra_paths=extra_paths,
    )
    _session.process = process
    check_backend()
    return f"Started the backend ({health.device}); its log is {process.log_path}."


def stop_backend() -> bool:
    """Stop the backend this add-on started; False when it started none."""
    process, _session.process = _session.process, None
    if process is None:
        return False
    was_running = process.running
    process.stop()
    _session.status = BackendStatus("not running", START_HINT)
    _redraw()
    return was_running


def owns_backend() -> bool:
    return _session.process is not None and _session.process.running


# -- jobs -----------------------------------------------------------------------------------


def get_job(job_id: str) -> TrackedJob | None:
    return _session.tracker.get(job_id) if job_id else None


def jobs() -> list[TrackedJob]:
    """Every job of this session, oldest first."""
    return _session.tracker.jobs()


#: Object types Generate takes: meshes, and what Blender turns into one (as its own Convert does).
GENERATE_TYPES = {"MESH": "mesh", "CURVE": "curve", "SURFACE": "surface", "FONT": "text", "META": "metaball"}


def cannot_generate(context: bpy.types.Context) -> str:
    """Why Generate cannot run now (the button's tooltip), or "" when it can."""
    if context.scene.meshsmith.mode in modes.NO_OBJECT_MODES:
        if any(job.scene_name == context.scene.name for job in _session.tracker.active()):
            return "A Meshsmith job of this scene is running: wait for it, or Cancel it."
        return ""
    obj = context.active_object
    if obj is None:
        return "Select an object to generate from: a mesh, curve, surface, text or metaball."
    if obj.type not in GENERATE_TYPES:
        return (f"Meshsmith works on meshes, curves, surfaces, text and metaballs; the active object "
                f"{obj.name!r} is a {obj.type.lower().replace('_', ' ')}.")
    if any(job.scene_name == context.scene.name for job in _session.tracker.active()):
        return "A Meshsmith job of this scene is running: wait for it, or Cancel it."
    return ""


def generate_targets(context: bpy.types.Context) -> list[bpy.types.Object | None]:
    """The objects one click generates from: the active one, then (except in Texture mode, whose
    other selected object is the colour source) every other selected object Generate takes."""
    if context.scene.meshsmith.mode in modes.NO_OBJECT_MODES:
        return [None]
    active = context.active_object
    if active is None:
        raise MeshsmithError("Select an object to generate from.")
    if context.scene.meshsmith.mode == "TEXTURE":
        return [active]
    others = sorted((o for o in context.selected_objects if o != active and o.type in GENERATE_TYPES),
                    key=lambda o: o.name)
    return [active, *others]


def colour_object(context: bpy.types.Context, obj: bpy.types.Object) -> bpy.types.Object | None:
    """The object whose colour the scene's mode bakes onto ``obj`` (None: the mode bakes none).

    Raises :class:`MeshsmithError` for a selection that does not fit the mode, or a source
    without colour.
    """
    settings = context.scene.meshsmith
    if settings.mode == "ARTIST_TEXTURE":
        source = obj
        if scene_io.colour_source(source) is None:
            raise MeshsmithError(scene_io.no_colour_message(source) + " Or use Artist mode for the topology alone.")
        return source
    if settings.mode != "TEXTURE" or settings.texture_source != modes.SOURCE_OBJECT:
        return None
    others = [o for o in context.view_layer.objects.selected if o != obj and o.type == "MESH"]
    if not others:
        raise MeshsmithError(
            "Texture mode bakes from a second object: select the textured source object, then Shift-click "
            f"the mesh to texture so that it is active (now only {obj.name!r} is). Or set Source to Posed Images."
        )
    if len(others) > 1:
        names = ", ".join(sorted(repr(o.name) for o in others))
        raise MeshsmithError(
            f"Texture mode bakes from one source object, but {len(others)} other meshes are selected ({names}). "
            f"Select only the source and {obj.name!r} (active)."
        )
    source = others[0]
    if scene_io.colour_source(source) is None:
        raise MeshsmithError(scene_io.no_colour_message(source))
    return source


def _shading(settings) -> dict:
    """How the result is shaded, for :func:`scene_io.import_result` (a normal map forces smooth)."""
    if settings.mode == "WATERTIGHT":
        # Smooth, with edges sharper than 30 degrees kept crisp (flat shading looks crinkly on a remesh).
        return {"smooth": True, "sharp_angle": math.radians(30.0)}
    if settings.mode == "ARTIST" and settings.keep_sharp:
        return {"smooth": True, "sharp_angle": float(settings.sharp_angle)}
    return {"smooth": True, "sharp_angle": None}


def generate(context: bpy.types.Context, obj: bpy.types.Object | None = None) -> TrackedJob:
    """Submit ``obj`` (default: the active object) with the scene's Meshsmith settings.

    Returns at once with the tracked job; the result is imported by a later :func:`poll_jobs`.
    Starts the backend first when none runs and the preferences ask for it. The selection and
    the inputs are checked before anything is sent.
    """
    if context.scene.meshsmith.mode == "TEXT":
        return generate_from_text(context)
    if context.scene.meshsmith.mode in modes.NO_OBJECT_MODES:
        return generate_from_views(context)
    obj = obj or context.active_object
    if obj is None or obj.type not in GENERATE_TYPES:
        raise MeshsmithError("Select a mesh (or a curve, surface, text or metaball) to generate from.")
    scene = context.scene
    settings = scene.meshsmith
    mode = modes.MODES[settings.mode]
    depsgraph = context.evaluated_depsgraph_get()
    # Reading the mesh is quick C copies on this thread; encoding it runs with the upload.
    keep_uvs = settings.mode == "TEXTURE" and settings.keep_uvs
    evaluated = scene_io.read_evaluated(obj, depsgraph, uvs=keep_uvs)
    if evaluated.polygon_count == 0:
        raise MeshsmithError(f"{obj.name!r} has no faces (after modifiers); Meshsmith needs a surface to work on.")
    steps = modes.plan(settings.mode, settings, source_faces=evaluated.polygon_count,
                       has_uvs=evaluated.loop_uvs is not None)
    needs = {name for step in steps for name in step.files}
    source = colour_object(context, obj)
    uploads: dict[str, tuple[str, bytes]] = {}
    if "views" in needs:
        folder = bpy.path.abspath(settings.views_dir)
        views.check_folder(folder)               # quick, now; zipping runs with the upload, off this thread
        uploads["views"] = ("views.zip", lambda: views.pack_views(folder))
    client = _client_for_generate()
    if "source" in needs:
        # The source goes into the target's object space: the result is placed with the target's matrix.
        transform = None
        if source != obj:
            try:
                transform = obj.matrix_world.inverted() @ source.matrix_world
            except ValueError:
                raise MeshsmithError(f"{obj.name!r} is scaled to zero along an axis; give it a size to bake onto.") from None
        uploads["source"] = ("source.glb", scene_io.export_textured_glb(source, depsgraph, transform=transform))
    # The upload is the job's first errand, on the courier's thread.
    job = _session.tracker.upload(
        client,
        evaluated.glb,
        [ChainStep(s.pipeline, s.params, {k: uploads[k] for k in s.files}, mesh_field=s.mesh_field) for s in steps],
        source_name=obj.name,
        scene_name=scene.name,
        result_name=obj.name + mode.suffix,
        weights=tuple(s.weight for s in steps),
        extra={"matrix_world": [list(row) for row in obj.matrix_world], **_shading(settings)},
    )
    settings.job_id = job.id
    _show(job)
    ensure_timer()
    return job


def _client_for_generate() -> Client:
    """A client of the running backend, starting one first when the preferences ask for it.

    Reads the state file, makes no request: a busy backend must not hold the click up.
    """
    try:
        return make_client()
    except BackendUnavailable:
        if not _pref("start_on_generate", False):
            raise
        start_backend()
        return make_client()


def generate_from_views(context: bpy.types.Context) -> TrackedJob:
    """From Views: send the views folder (zipped) or the grid image; the result is a new object.

    A folder written by Render Views says where its object is, and the result is placed over
    it; any other views put the result in the cameras' world (at the origin for render/'s).
    """
    scene = context.scene
    settings = scene.meshsmith
    (step,) = modes.plan("VIEWS", settings)
    if step.files == ("grid",):
        path = bpy.path.abspath(settings.grid_image)
        if not settings.grid_image.strip():
            raise MeshsmithError("Choose the grid image in the Meshsmith panel (six views, three rows of two).")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise MeshsmithError(f"The grid image {path!r} cannot be read ({exc.strerror or exc}).") from None
        upload = ("grid.png", data)
        name, placement = os.path.splitext(os.path.basename(path))[0] or "grid", None
    else:
        folder = bpy.path.abspath(settings.views_dir)
        views.check_folder(folder)               # quick, now; zipping runs with the upload, off this thread
        upload = ("views.zip", lambda: views.pack_views(folder))
        name = os.path.basename(os.path.normpath(folder)) or "views"
        placement = views.placement(folder)
    client = _client_for_generate()
    matrix = placement or [list(row) for row in Matrix.Identity(4)]
    job = _session.tracker.upload(
        client,
        None,
        [ChainStep(step.pipeline, step.params, {step.files[0]: upload})],
        source_name="",
        scene_name=scene.name,
        result_name=name + modes.MODES["VIEWS"].suffix,
        extra={"matrix_world": matrix, "smooth": True, "sharp_angle": None},
    )
    settings.job_id = job.id
    _show(job)
    ensure_timer()
    return job


def generate_from_text(context: bpy.types.Context) -> TrackedJob:
    """From Text: the prompt goes to ``text_to_mesh``; the mesh grows at the 3D cursor as it is written."""
    scene = context.scene
    settings = scene.meshsmith
    if not settings.text_prompt.strip():
        raise MeshsmithError("Type a prompt in the Meshsmith panel: what to make, e.g. 'a wooden chair'.")
    (step,) = modes.plan("TEXT", settings)
    client = _client_for_generate()
    words = "_".join(settings.text_prompt.split()[:4])[:40] or "text"
    matrix = Matrix.Translation(scene.cursor.location)
    job = _session.tracker.upload(
        client,
        None,
        [ChainStep(step.pipeline, step.params)],
        source_name="",
        scene_name=scene.name,
        result_name=words + modes.MODES["TEXT"].suffix,
        extra={"matrix_world": [list(row) for row in matrix], "smooth": False, "sharp_angle": None},
    )
    settings.job_id = job.id
    _show(job)
    ensure_timer()
    return job


def cancel_job(job_id: str) -> TrackedJob:
    """Cancel a job of this session; a cancelled job is never imported."""
    try:
        job = _session.tracker.cancel(job_id)
    except ValueError as exc:
        raise MeshsmithError(f"There is no Meshsmith job {job_id!r} to cancel.") from exc
    if job.is_final:
        _drop_preview(job)
    _show(job)
    _update_status_bar()
    return job


def poll_jobs() -> float | None:
    """Advance every active job one step and update the UI.

    This is the body of the add-on's ``bpy.app.timers`` function: it returns the seconds until
    the next call while jobs are active, else None (which also unregisters the timer).
    """
    for job in _session.tracker.poll_once(_import_result, _show_partial):
        if job.is_final:
            _drop_preview(job)
        _show(job)
    _update_status_bar()
    return POLL_INTERVAL if _session.tracker.active() else None


def run_until_idle(timeout: float = 120.0, interval: float = 0.1) -> list[TrackedJob]:
    """Call :func:`poll_jobs` until no job is active (for scripts without an event loop).

    Returns every job of the session. Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while poll_jobs() is not None:
        if time.monotonic() > deadline:
            active = ", ".join(f"{j.id} ({j.stage})" for j in _session.tracker.active())
            raise TimeoutError(f"Meshsmith jobs still running after {timeout:g} s: {active}")
        time.sleep(interval)
    return jobs()


#: Suffix of the object that shows a generating job's faces so far.
PREVIEW_SUFFIX = " (generating)"


def _show_partial(job: TrackedJob, data: bytes) -> None:
    """Show a generating job's faces so far as a preview object, replaced on every update and
    removed when the job ends (the result is imported as its own object)."""
    scene = bpy.data.scenes.get(job.scene_name)
    if scene is None:
        return
    result = glb.read_glb(data)
    mesh = scene_io.mesh_from_result(job.result_name + PREVIEW_SUFFIX, result)
    obj = bpy.data.objects.get(job.extra.get("preview", ""))
    if obj is None or obj.type != "MESH":
        obj = bpy.data.objects.new(job.result_name + PREVIEW_SUFFIX, mesh)
        scene_io.result_collection(scene).objects.link(obj)
        job.extra["preview"] = obj.name
    else:
        old, obj.data = obj.data, mesh
        if old.users == 0:
            bpy.data.meshes.remove(old)
    source = bpy.data.objects.get(job.source_name) if job.source_name else None
    obj.matrix_world = source.matrix_world.copy() if source is not None else Matrix(job.extra["matrix_world"])
    obj.display_type = "WIRE" if source is not None else "SOLID"
    _redraw()


def _drop_preview(job: TrackedJob) -> None:
    obj = bpy.data.objects.get(job.extra.pop("preview", "") or "")
    if obj is None:
        return
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)


def _import_result(job: TrackedJob, data: bytes) -> str:
    _drop_preview(job)
    scene = bpy.data.scenes.get(job.scene_name)
    if scene is None:
        raise MeshsmithError(f"The scene {job.scene_name!r} is gone; the result of job {job.id} was not imported.")
    try:
        result = glb.read_glb(data)
    except ValueError as exc:
        raise MeshsmithError(f"The backend's result could not be read: {exc}.") from exc
    for warning in result.warnings:
        log.warning("job %s: %s", job.id, warning)
    job.warnings.extend(result.warnings)
    source = bpy.data.objects.get(job.source_name) if job.source_name else None
    # Follow the source if it moved while the job ran; its submit-time matrix if it is gone.
    matrix = source.matrix_world.copy() if source is not None else Matrix(job.extra["matrix_world"])
    obj = scene_io.import_result(
        scene,
        job.result_name,
        result,
        matrix,
        smooth=bool(job.extra.get("smooth", False)),
        sharp_angle=job.extra.get("sharp_angle"),
    )
    # Blender's convention for a new object: selected and active; the source steps aside.
    layer = bpy.context.view_layer
    if scene == bpy.context.scene:
        layer.update()  # the new object joins the view layer's objects here
    if scene == bpy.context.scene and obj.name in layer.objects:
        for other in layer.objects.values():
            if other.select_get():
                other.select_set(False)
        obj.select_set(True)
        layer.objects.active = obj
        if source is not None and scene.meshsmith.hide_source and source.name in layer.objects:
            source.hide_set(True)
    _push_undo()
    return obj.name


# -- UI plumbing --------------------------------------------------------------------------------


def _windows() -> list[bpy.types.Window]:
    wm = bpy.context.window_manager
    return list(wm.windows) if wm is not None else []


def _push_undo() -> None:
    """One undo step for the import, which happens in a timer, outside any operator."""
    windows = _windows()
    if not windows:
        return
    with bpy.context.temp_override(window=windows[0]):
        if bpy.ops.ed.undo_push.poll():
            bpy.ops.ed.undo_push(message=UNDO_MESSAGE)


def _show(job: TrackedJob) -> None:
    """Mirror a job into its scene's properties when it is that scene's latest job."""
    scene = bpy.data.scenes.get(job.scene_name)
    if scene is None or scene.meshsmith.job_id != job.id:
        return
    settings = scene.meshsmith
    settings.job_state = job.phase.value
    settings.job_progress = job.progress
    settings.job_stage = job.stage
    settings.job_message = job.message
    _redraw()


def _redraw() -> None:
    for window in _windows():
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def _update_status_bar() -> None:
    active = _session.tracker.active()
    if active:
        job = active[-1]
        more = f" (+{len(active) - 1} more)" if len(active) > 1 else ""
        text: str | None = f"Meshsmith: {job.stage} {job.progress:.0%}{more}"
    elif _session.status_bar_set:
        text = None
    else:
        return
    for window in _windows():
        workspace = window.workspace
        if workspace is not None:
            workspace.status_text_set(text)
    _session.status_bar_set = text is not None


def _timer() -> float | None:
    try:
        return poll_jobs()
    except Exception:  # noqa: BLE001 - an exception would unregister the timer and freeze every job
        log.exception("Meshsmith: polling the backend failed")
        return POLL_INTERVAL * 4


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        # persistent: jobs keep running (and get imported) across File > Open.
        bpy.app.timers.register(_timer, first_interval=POLL_INTERVAL, persistent=True)


def _initial_status_check() -> None:
    check_backend()  # returns None: runs once


@persistent
def _on_load_post(*_args) -> None:
    # The file the running jobs were started in is closed (File > New or Open): a scene of the
    # same name in the new file is not theirs. Stop them; nothing will be imported.
    for job in _session.tracker.active():
        try:
            _session.tracker.cancel(job.id)
        except MeshsmithError as exc:
            log.warning("job %s: %s", job.id, exc.message)
        job._cancelled("Cancelled: the file it was started in was closed; nothing was imported.")
    # A loaded file may show a job from another session: mark it as such instead of "running".
    for scene in bpy.data.scenes:
        settings = scene.meshsmith
        if settings.job_id and get_job(settings.job_id) is None and settings.job_state not in ("imported", "failed", "cancelled"):
            settings.job_state = "failed"
            settings.job_message = "This job belongs to an earlier Blender session."


def _on_exit(*_args) -> None:
    # Blender is quitting: only stop the process; the UI may already be gone.
    process, _session.process = _session.process, None
    if process is not None:
        process.stop()


def register() -> None:
    bpy.app.handlers.load_post.append(_on_load_post)
    # exit_pre exists from Blender 4.x on newer releases only; atexit covers 4.2.
    exit_pre = getattr(bpy.app.handlers, "exit_pre", None)
    if exit_pre is not None:
        exit_pre.append(_on_exit)
    atexit.register(_on_exit)
    bpy.app.timers.register(_initial_status_check, first_interval=1.0)


def unregister() -> None:
    for timer in (_timer, _initial_status_check):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    exit_pre = getattr(bpy.app.handlers, "exit_pre", None)
    if exit_pre is not None and _on_exit in exit_pre:
        exit_pre.remove(_on_exit)
    atexit.unregister(_on_exit)
    # Disabling the add-on must not leave an orphan process behind (nor a half-done install).
    stop_backend()
    cancel_model_support()
    if _session.status_bar_set:
        for window in _windows():
            if window.workspace is not None:
                window.workspace.status_text_set(None)
    # Calls still out finish on their own threads, bounded by their socket timeouts.
    _session.tracker.courier.shutdown()
    _session.tracker = JobTracker(courier=ThreadCourier())
    _session.status_bar_set = False
