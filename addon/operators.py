"""Operators: Generate, Cancel, Start/Stop backend, Refresh status. Each calls one function in
:mod:`.runtime` and turns a :class:`~.errors.MeshsmithError` into one report."""

from __future__ import annotations

import bpy

from . import runtime
from .errors import MeshsmithError


class MESHSMITH_OT_generate(bpy.types.Operator):
    """Send the active object (modifiers applied; curves, text and metaballs as their meshes) to the backend; the result arrives as a new object. Watertight, Artist and Artist + Texture also take every other selected object, one job each"""

    bl_idname = "meshsmith.generate"
    bl_label = "Generate"
    # No UNDO flag: nothing changes in the scene now. The import, seconds or minutes later in
    # the poll timer, pushes its own undo step.
    bl_options = {"REGISTER"}

    _job_id: str = ""
    _timer: bpy.types.Timer | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        why = runtime.cannot_generate(context)
        if why:
            cls.poll_message_set(why)
        return not why

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs = []
        try:
            for obj in runtime.generate_targets(context):
                jobs.append(runtime.generate(context, obj))
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            if not jobs:
                return {"CANCELLED"}
        job = jobs[-1]
        self._job_id = job.id
        names = ", ".join(j.result_name for j in jobs)
        self.report({"INFO"}, f"Meshsmith: {names} {'is' if len(jobs) == 1 else 'are'} being generated; press Esc to cancel.")
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        result = self.execute(context)
        if "FINISHED" not in result or context.window is None:
            return result
        # Watch for Esc while the job runs. The modal ends with the job: a modal operator that
        # stays running would postpone Blender's autosave.
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job = runtime.get_job(self._job_id)
        if job is None or job.is_final:
            self._end(context)
            if job is not None and job.phase.value == "failed":
                # The upload and the backend's answers arrive off the main thread: a refusal
                # (bad parameters, a wrong token, a failed pipeline) is reported here, once.
                self.report({"ERROR"}, job.message)
            return {"FINISHED", "PASS_THROUGH"}
        if event.type == "ESC" and event.value == "PRESS":
            self._end(context)
            try:
                runtime.cancel_job(self._job_id)
            except MeshsmithError as exc:
                self.report({"ERROR"}, exc.message)
                return {"CANCELLED"}
            self.report({"INFO"}, "Meshsmith: cancelling the job.")
            return {"CANCELLED"}
        return {"PASS_THROUGH"}

    def _end(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


class MESHSMITH_OT_cancel(bpy.types.Operator):
    """Cancel this scene's running Meshsmith job; nothing will be imported"""

    bl_idname = "meshsmith.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = runtime.get_job(context.scene.meshsmith.job_id)
        return job is not None and not job.is_final

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            job = runtime.cancel_job(context.scene.meshsmith.job_id)
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Meshsmith: job {job.stage}.")
        return {"FINISHED"}


class MESHSMITH_OT_start_backend(bpy.types.Operator):
    """Start the Meshsmith backend with the Python set in the preferences and wait until it answers"""

    bl_idname = "meshsmith.start_backend"
    bl_label = "Start Backend"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            message = runtime.start_backend()
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        return {"FINISHED"}


class MESHSMITH_OT_install_model_support(bpy.types.Operator):
    """Install PyTorch and the hub client for the learned modes, with Blender's Python, into the
    extension's user folder (a download of about 200 MB to 1 GB; runs in the background)"""

    bl_idname = "meshsmith.install_model_support"
    bl_label = "Install Model Support"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if runtime.model_support_running():
            cls.poll_message_set("Model support is being installed.")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            installer = runtime.install_model_support()
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Meshsmith: installing model support; pip's output goes to {installer.log_path}.")
        return {"FINISHED"}


class MESHSMITH_OT_cancel_model_support(bpy.types.Operator):
    """Stop installing model support (nothing is changed)"""

    bl_idname = "meshsmith.cancel_model_support"
    bl_label = "Cancel Install"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.model_support_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.cancel_model_support()
        return {"FINISHED"}


class MESHSMITH_OT_stop_backend(bpy.types.Operator):
    """Stop the backend that Blender started (a backend started elsewhere keeps running)"""

    bl_idname = "meshsmith.stop_backend"
    bl_label = "Stop Backend"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.owns_backend()

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.stop_backend()
        self.report({"INFO"}, "Meshsmith: backend stopped.")
        return {"FINISHED"}


class MESHSMITH_OT_refresh_status(bpy.types.Operator):
    """Check whether the Meshsmith backend is running"""

    bl_idname = "meshsmith.refresh_status"
    bl_label = "Refresh Backend Status"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        status = runtime.check_backend()
        self.report({"INFO"}, f"Meshsmith backend: {status.text}.")
        return {"FINISHED"}


class MESHSMITH_OT_render_views(bpy.types.Operator):
    """Render the active object's six Zero123++ views (colour and normal maps) into a folder and use it as From Views' input, to try From Views on any object"""

    bl_idname = "meshsmith.render_views"
    bl_label = "Render Views of Active Object"
    bl_options = {"REGISTER"}

    _steps = None
    _timer: bpy.types.Timer | None = None
    _folder: str = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        if obj is None or obj.type not in runtime.GENERATE_TYPES:
            cls.poll_message_set("Select the object whose views to render.")
            return False
        return True

    def _start(self, context: bpy.types.Context) -> None:
        from . import capture

        obj = context.active_object
        self._folder = capture.default_folder(obj)
        self._steps = capture.render_views(context, obj, self._folder)

    def _finish(self, context: bpy.types.Context) -> None:
        settings = context.scene.meshsmith
        settings.views_dir = self._folder
        settings.views_input = "FOLDER"
        self.report({"INFO"}, f"Meshsmith: six views rendered into {self._folder}; Generate makes a mesh from them.")

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Everything at once (scripts, background mode)."""
        try:
            self._start(context)
            for _ in self._steps:
                pass
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        self._finish(context)
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:
            return self.execute(context)
        try:
            self._start(context)
        except MeshsmithError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, 6)
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            self._steps.close()  # the generator's cleanup removes the temporary scene
            self._end(context)
            self.report({"INFO"}, "Meshsmith: rendering views cancelled.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total = next(self._steps)
        except StopIteration:
            self._end(context)
            self._finish(context)
            return {"FINISHED"}
        except MeshsmithError as exc:
            self._end(context)
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        context.window_manager.progress_update(done)
        context.workspace.status_text_set(f"Meshsmith: rendering views {done}/{total} (Esc cancels)")
        return {"RUNNING_MODAL"}

    def _end(self, context: bpy.types.Context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        context.workspace.status_text_set(None)
