"""addon/jobs.py: the bpy-free job state machine, driven by a scripted backend."""

from __future__ import annotations

import threading
import time

import pytest

from addon.errors import BackendError, BackendUnavailable
from addon.jobs import JobTracker, Phase, TrackedJob
from addon.protocol import Job


def remote(state: str, progress: float = 0.0, stage: str = "", error: dict | None = None) -> Job:
    return Job.from_json(
        {"id": "j1", "pipeline": "watertight", "state": state, "progress": progress, "stage": stage, "error": error}
    )


class ScriptedBackend:
    """Answers ``job()`` from a list (the last answer repeats); records cancel and result calls."""

    def __init__(self, answers: list, result: bytes = b"GLB", cancel_answer: Job | Exception | None = None):
        self.answers = list(answers)
        self.result_bytes = result
        self.cancel_answer = cancel_answer
        self.cancel_calls = 0
        self.result_calls = 0

    def job(self, job_id: str) -> Job:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def result(self, job_id: str, name: str | None = None) -> bytes:
        self.result_calls += 1
        return self.result_bytes

    def cancel(self, job_id: str) -> Job:
        self.cancel_calls += 1
        if isinstance(self.cancel_answer, Exception):
            raise self.cancel_answer
        return self.cancel_answer or remote("cancelled")


class Importer:
    def __init__(self, fail: Exception | None = None):
        self.calls: list[tuple[str, bytes]] = []
        self.fail = fail

    def __call__(self, job: TrackedJob, data: bytes) -> str:
        self.calls.append((job.id, data))
        if self.fail:
            raise self.fail
        return job.result_name


def track(backend: ScriptedBackend, **options) -> tuple[JobTracker, TrackedJob]:
    tracker = JobTracker(**options)
    job = tracker.add(TrackedJob(id="j1", client=backend, pipeline="watertight", result_name="Cube_watertight"))
    return tracker, job


def run(tracker: JobTracker, importer: Importer, max_steps: int = 50) -> list[tuple[Phase, float, str]]:
    history = []
    for _ in range(max_steps):
        if not tracker.active():
            return history
        for job in tracker.poll_once(importer):
            history.append((job.phase, job.progress, job.stage))
    raise AssertionError("jobs never ended")


def test_happy_path_goes_through_every_phase_and_imports_once():
    backend = ScriptedBackend([remote("queued"), remote("running", 0.4, "flood fill"), remote("done", 1.0, "done")])
    tracker, job = track(backend)
    importer = Importer()
    assert job.phase is Phase.SUBMITTED
    history = run(tracker, importer)
    assert history == [
        (Phase.POLLING, 0.0, "queued"),
        (Phase.POLLING, 0.4, "flood fill"),
        (Phase.IMPORTED, 1.0, "imported"),
    ]
    assert importer.calls == [("j1", b"GLB")]
    assert job.imported_name == "Cube_watertight" and job.message == "Imported Cube_watertight."
    assert tracker.poll_once(importer) == [] and backend.result_calls == 1


def test_backend_failure_ends_failed_with_its_message():
    error = {"code": "bad_mesh", "message": "The mesh has no faces."}
    tracker, job = track(ScriptedBackend([remote("running"), remote("failed", 0.2, "failed", error)]))
    importer = Importer()
    run(tracker, importer)
    assert (job.phase, job.message) == (Phase.FAILED, "The mesh has no faces.")
    assert importer.calls == []


def test_cancel_while_running_waits_for_the_backend_then_never_imports():
    backend = ScriptedBackend(
        [remote("running", 0.1), remote("running", 0.2), remote("cancelled", 0.2)],
        cancel_answer=remote("running", 0.1),
    )
    tracker, job = track(backend)
    importer = Importer()
    tracker.poll_once(importer)
    tracker.cancel("j1")
    assert (job.phase, job.stage, job.cancel_requested) == (Phase.POLLING, "cancelling", True)
    run(tracker, importer)
    assert job.phase is Phase.CANCELLED and importer.calls == [] and backend.cancel_calls == 1


def test_cancel_of_a_job_the_backend_already_finished_does_not_import():
    tracker, job = track(ScriptedBackend([remote("running")], cancel_answer=remote("done", 1.0)))
    importer = Importer()
    tracker.poll_once(importer)
    tracker.cancel("j1")
    assert job.phase is Phase.CANCELLED and "nothing was imported" in job.message
    assert tracker.poll_once(importer) == [] and importer.calls == []


def test_cancel_when_the_backend_is_gone_cancels_locally():
    tracker, job = track(ScriptedBackend([remote("running")], cancel_answer=BackendUnavailable("nothing answers")))
    tracker.cancel("j1")
    assert job.phase is Phase.CANCELLED


def test_cancel_unknown_job_is_a_value_error():
    tracker, _ = track(ScriptedBackend([remote("running")]))
    with pytest.raises(ValueError, match="nope"):
        tracker.cancel("nope")


def test_unreachable_backend_fails_the_job_after_the_allowed_number_of_polls():
    down = BackendUnavailable("nothing answers at http://127.0.0.1:1")
    tracker, job = track(ScriptedBackend([remote("running"), down]), max_poll_failures=3)
    importer = Importer()
    tracker.poll_once(importer)
    tracker.poll_once(importer)
    tracker.poll_once(importer)
    assert job.phase is Phase.POLLING and job.poll_failures == 2
    tracker.poll_once(importer)
    assert job.phase is Phase.FAILED and "python -m backend serve" in job.message


def test_a_transient_outage_does_not_fail_the_job():
    down = BackendUnavailable("nothing answers")
    tracker, job = track(ScriptedBackend([down, down, remote("done", 1.0)]), max_poll_failures=3)
    run(tracker, Importer())
    assert job.phase is Phase.IMPORTED


def test_error_answer_while_polling_fails_with_its_message():
    tracker, job = track(ScriptedBackend([BackendError("not_found", "No job j1.", 404)]))
    run(tracker, Importer())
    assert (job.phase, job.message) == (Phase.FAILED, "No job j1.")


def test_importer_errors_end_the_job_failed_instead_of_raising():
    tracker, job = track(ScriptedBackend([remote("done", 1.0)]))
    run(tracker, Importer(fail=RuntimeError("Blender said no")))
    assert job.phase is Phase.FAILED and "Blender said no" in job.message


def test_tracker_options_are_checked():
    with pytest.raises(ValueError, match="max_poll_failures"):
        JobTracker(max_poll_failures=0)


# -- chains: one tracked job over several backend jobs ------------------------------------------

from addon.jobs import ChainStep  # noqa: E402


def remote_of(job_id: str, pipeline: str, state: str, progress: float = 0.0, stage: str = "", error=None) -> Job:
    return Job.from_json(
        {"id": job_id, "pipeline": pipeline, "state": state, "progress": progress, "stage": stage, "error": error}
    )


class ChainBackend:
    """Answers per job id from scripts (the last answer repeats); ``submit`` starts the next scripted id."""

    def __init__(self, scripts: dict[str, list], results: dict[str, bytes], submit_errors: list | None = None):
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.results = results
        self.submitted: list[tuple[str, dict, bytes, dict]] = []
        self.submit_errors = list(submit_errors or [])
        self.cancelled: list[str] = []
        self.polled: list[str] = []

    def job(self, job_id: str) -> Job:
        self.polled.append(job_id)
        answers = self.scripts[job_id]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def result(self, job_id: str, name: str | None = None) -> bytes:
        return self.results[job_id]

    def cancel(self, job_id: str) -> Job:
        self.cancelled.append(job_id)
        return remote_of(job_id, "", "cancelled")

    def submit(self, pipeline, params, mesh, *, filename="mesh.glb", files=None) -> Job:
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        self.submitted.append((pipeline, dict(params), mesh, dict(files or {})))
        return remote_of("j2", pipeline, "queued")


SOURCE = {"source": ("source.glb", b"DENSE-TEXTURED")}


def chain(backend: ChainBackend) -> tuple[JobTracker, TrackedJob]:
    tracker = JobTracker(max_poll_failures=3)
    job = tracker.add(
        TrackedJob(
            id="j1", client=backend, pipeline="artist", result_name="Dense_artist_textured",
            next_steps=[ChainStep("texture", {"texture_size": 512}, SOURCE)], weights=(1.0, 1.0),
        )
    )  # fmt: skip
    return tracker, job


def artist_then_texture(**texture_script) -> ChainBackend:
    return ChainBackend(
        {
            "j1": [remote_of("j1", "artist", "running", 0.5, "remeshing"), remote_of("j1", "artist", "done", 1.0)],
            "j2": texture_script.get("j2")
            or [remote_of("j2", "texture", "running", 0.5, "baking"), remote_of("j2", "texture", "done", 1.0)],
        },
        {"j1": b"ARTIST-RESULT", "j2": b"TEXTURED-RESULT"},
    )


def test_a_chain_sends_each_result_on_and_imports_only_the_last():
    backend = artist_then_texture()
    tracker, job = chain(backend)
    importer = Importer()
    history = run(tracker, importer)
    # The second step got the first result as its mesh, and its own extra files.
    assert backend.submitted == [("texture", {"texture_size": 512}, b"ARTIST-RESULT", SOURCE)]
    assert importer.calls == [("j1", b"TEXTURED-RESULT")]
    assert (job.id, job.remote_id, job.step, job.phase) == ("j1", "j2", 1, Phase.IMPORTED)
    assert job.intermediate is None and job.next_steps == []
    # Progress covers the whole chain: half per step, never going back.
    progress = [p for _, p, _ in history]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert (Phase.POLLING, 0.25, "artist 1/2: remeshing") in history
    assert (Phase.POLLING, 0.75, "texture 2/2: baking") in history
    assert backend.polled[:2] == ["j1", "j1"] and set(backend.polled[2:]) == {"j2"}


def test_cancel_in_the_first_step_never_starts_the_second():
    backend = artist_then_texture()
    tracker, job = chain(backend)
    importer = Importer()
    tracker.poll_once(importer)
    tracker.cancel("j1")
    run(tracker, importer)
    assert job.phase is Phase.CANCELLED and backend.cancelled == ["j1"]
    assert backend.submitted == [] and importer.calls == []


def test_cancel_in_the_second_step_cancels_the_second_backend_job():
    backend = artist_then_texture(j2=[remote_of("j2", "texture", "running", 0.3, "baking")])
    tracker, job = chain(backend)
    importer = Importer()
    for _ in range(3):
        tracker.poll_once(importer)
    assert job.remote_id == "j2" and job.phase is Phase.POLLING
    backend.scripts["j2"] = [remote_of("j2", "texture", "cancelled")]
    tracker.cancel("j1")  # the user only knows the chain by its first id
    run(tracker, importer)
    assert job.phase is Phase.CANCELLED and backend.cancelled == ["j2"] and importer.calls == []


def test_cancel_while_the_next_step_waits_to_be_submitted_sends_nothing():
    backend = artist_then_texture()
    backend.submit_errors = [BackendUnavailable("nothing answers")]
    tracker, job = chain(backend)
    importer = Importer()
    tracker.poll_once(importer)
    tracker.poll_once(importer)  # artist done, downloaded, the submit finds no backend
    assert job.phase is Phase.SUBMITTING and job.intermediate == b"ARTIST-RESULT"
    tracker.cancel("j1")
    assert job.phase is Phase.CANCELLED and job.intermediate is None
    assert tracker.poll_once(importer) == [] and backend.submitted == [] and backend.cancelled == []


def test_a_submit_that_finds_no_backend_is_retried():
    backend = artist_then_texture()
    backend.submit_errors = [BackendUnavailable("nothing answers")]
    tracker, job = chain(backend)
    run(tracker, Importer())
    assert job.phase is Phase.IMPORTED and len(backend.submitted) == 1


def test_a_refused_second_step_fails_the_chain_with_the_backends_reason():
    backend = artist_then_texture()
    backend.submit_errors = [BackendError("bad_params", "Unknown pipeline 'texture'; this backend offers: artist.", 400)]
    tracker, job = chain(backend)
    importer = Importer()
    run(tracker, importer)
    assert job.phase is Phase.FAILED and importer.calls == []
    assert job.message == "The texture step could not start: Unknown pipeline 'texture'; this backend offers: artist."


def test_a_failed_second_step_says_which_step_failed():
    error = {"code": "bad_input", "message": "The source has no colour."}
    backend = artist_then_texture(j2=[remote_of("j2", "texture", "failed", 0.1, "failed", error)])
    tracker, job = chain(backend)
    run(tracker, Importer())
    assert (job.phase, job.message) == (Phase.FAILED, "The texture step failed: The source has no colour.")


def test_weights_must_match_the_steps():
    with pytest.raises(ValueError, match="one positive share per step"):
        TrackedJob(id="j", client=None, pipeline="artist", next_steps=[ChainStep("texture", {})], weights=(1.0,))


def test_import_warnings_reach_the_final_message():
    tracker, job = track(ScriptedBackend([remote("done", 1.0, "done")]))

    def importer(job, data):
        job.warnings.append("mesh 0: polygon 3 is marked a quad but ...; imported as triangles")
        return "Cube_artist"

    run(tracker, importer)
    assert job.phase is Phase.IMPORTED
    assert job.message == "Imported Cube_artist. Note: mesh 0: polygon 3 is marked a quad but ...; imported as triangles."


@pytest.mark.parametrize(("seen", "noted"), [(0.25, True), (0.95, False)])
def test_a_texture_from_views_that_saw_little_of_the_surface_says_so(seen, noted):
    # Regression (field test, issue 14): posed images that saw ~25% of a bottle gave a green
    # smear and no word about it.
    done = Job.from_json({"id": "j1", "pipeline": "texture", "state": "done", "progress": 1.0,
                          "result": {"files": ["result.glb"], "summary": {"texels_seen_share": seen}}})
    tracker, job = track(ScriptedBackend([done]))
    run(tracker, lambda job, data: "Bottle_textured")
    assert job.phase is Phase.IMPORTED
    assert ("the views saw 25% of the surface" in job.message) is noted, job.message


# -- off the main thread: the courier ------------------------------------------------------------


class GatedBackend:
    """A backend whose calls wait at a gate until the test opens it, as a busy backend would.

    ``job()`` answers ``timeout`` (the client's error for a backend that did not answer in time)
    while ``busy`` is set, then ``done``.
    """

    def __init__(self):
        self.gate = threading.Event()
        self.busy = True
        self.submitted: list[str] = []
        self.cancelled: list[str] = []

    def submit(self, pipeline, params, mesh, *, filename="mesh.glb", files=None) -> Job:
        assert self.gate.wait(10), "the test never opened the gate"
        self.submitted.append(pipeline)
        return remote("queued")

    def job(self, job_id: str) -> Job:
        assert self.gate.wait(10), "the test never opened the gate"
        if self.busy:
            raise BackendError("timeout", "The backend did not answer GET /v1/jobs/j1 within 10 s; it may be overloaded.")
        return remote("done", 1.0, "done")

    def result(self, job_id: str, name: str | None = None) -> bytes:
        return b"GLB"

    def cancel(self, job_id: str) -> Job:
        self.cancelled.append(job_id)
        return remote("cancelled")


def settle(job: TrackedJob) -> None:
    """Wait until the job's errand is back (the courier's thread has answered)."""
    if job.errand is not None:
        job.errand.future.exception(timeout=10)


def test_the_upload_and_polls_never_hold_the_caller_and_a_busy_backend_is_not_a_failure():
    from addon.jobs import ChainStep, ThreadCourier

    backend = GatedBackend()
    tracker = JobTracker(courier=ThreadCourier())
    job = tracker.upload(backend, b"MESH", [ChainStep("watertight", {})], result_name="Cube_watertight")
    importer = Importer()
    # The gate is shut: were the upload on this thread, this call would not return.
    tracker.poll_once(importer)
    assert job.phase is Phase.SUBMITTING and job.remote_ids == [] and backend.submitted == []
    backend.gate.set()
    settle(job)
    tracker.poll_once(importer)                       # the upload came back; a poll goes out
    assert job.remote_ids == ["j1"] and job.phase is Phase.POLLING
    for _ in range(3):                                 # three polls time out: busy, not gone
        settle(job)
        tracker.poll_once(importer)
        assert job.phase is Phase.POLLING and not job.is_final
    assert "waiting for the backend" in job.stage
    backend.busy = False
    while not job.is_final:
        settle(job)
        tracker.poll_once(importer)
    assert job.phase is Phase.IMPORTED and importer.calls == [(job.id, b"GLB")]


def test_cancel_during_the_upload_cancels_the_job_the_upload_starts():
    from addon.jobs import ChainStep, ThreadCourier

    backend = GatedBackend()
    tracker = JobTracker(courier=ThreadCourier())
    job = tracker.upload(backend, b"MESH", [ChainStep("watertight", {})], result_name="Cube_watertight")
    tracker.poll_once(Importer())
    upload = job.errand.future
    tracker.cancel(job.id)
    assert job.phase is Phase.CANCELLED                # at once, while the upload is still out
    backend.gate.set()
    upload.result(timeout=10)
    for _ in range(100):                               # the callback runs on the courier's thread
        if backend.cancelled:
            break
        time.sleep(0.01)
    assert backend.cancelled == ["j1"] and tracker.poll_once(Importer()) == []


def _partial(state: str, faces: int | None, progress: float = 0.5) -> Job:
    data = {"id": "j1", "pipeline": "text_to_mesh", "state": state, "progress": progress, "stage": "generating"}
    if faces is not None:
        data["partial"] = {"file": "partial.glb", "faces": faces, "at": 0.0}
    return Job.from_json(data)


class PartialBackend(ScriptedBackend):
    def __init__(self, answers, partials):
        super().__init__(answers)
        self.partials = list(partials)
        self.partial_calls = 0

    def partial(self, job_id: str) -> bytes:
        self.partial_calls += 1
        answer = self.partials.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_partial_results_are_fetched_once_per_new_face_count_and_a_vanished_one_is_skipped():
    backend = PartialBackend(
        [_partial("running", 3), _partial("running", 3), _partial("running", 9), _partial("running", 12),
         _partial("done", None, 1.0)],
        [b"P3", b"P9", BackendError("not_found", "Job j1 has no partial result now (done).")])
    tracker, job = track(backend)
    shown = []
    for _ in range(30):
        if not tracker.active():
            break
        tracker.poll_once(Importer(), lambda j, data: shown.append(data))
    assert job.phase is Phase.IMPORTED
    assert shown == [b"P3", b"P9"]                      # 3 once (the repeat is not fetched again), then 9
    assert backend.partial_calls == 3                   # 12's download found the job finished: skipped, not failed


def test_without_a_partial_handler_nothing_extra_is_fetched():
    backend = PartialBackend([_partial("running", 5), _partial("done", None, 1.0)], [])
    tracker, job = track(backend)
    run(tracker, Importer())
    assert job.phase is Phase.IMPORTED and backend.partial_calls == 0
