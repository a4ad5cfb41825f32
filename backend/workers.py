"""Worker processes: every pipeline runs in one, never in the server's process.

A pipeline holds the GIL for seconds at a time inside numpy and compiled kernels; run in a
thread of the server it kept the API from answering (``/v1/health`` silent for minutes during
an Instant Meshes run). Here the server's :class:`backend.jobs.JobRunner` keeps one worker
process per slot (``job_workers``, default 1), hands it one job at a time over a pipe and
relays what comes back into the job store, so the event loop only ever reads and writes
small records.

Messages (tuples over a :func:`multiprocessing.Pipe`):

- server -> worker: ``("run", job_id, pipeline, params, files, folder)``, ``("cancel",)``,
  ``("stop",)``;
- worker -> server: ``("ready", pid)``, ``("progress", fraction, stage)``, ``("partial", file, faces)``
  (a pipeline's result so far, written to the job folder), then one of
  ``("done", files, summary)``, ``("failed", code, message)``, ``("cancelled",)``.

Cancel is checked at every progress point; a worker that does not stop within the runner's
grace (inside a long compiled call) is killed and replaced, as is one that passes the job's
time limit. A worker runs under a hard memory limit where the platform has one
(``RLIMIT_DATA`` on Linux, ``RLIMIT_AS`` elsewhere on POSIX): an allocation past it fails
the job with a message naming the limit, not the machine. A worker whose server disappears
exits (the pipe breaks; on Linux the kernel also sends it SIGKILL).

Each worker has a temporary folder of its own (``meshsmith-worker-<server pid>-*`` in the
system's), its ``TMPDIR`` and :mod:`tempfile`'s default: what a killed job leaves there
(Instant Meshes' input, a bake's scratch files) goes with the worker, and a server's start
removes the folders of servers no longer running.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

log = logging.getLogger(__name__)

#: How much lower a worker's CPU priority is than the server's (POSIX ``nice``).
WORKER_NICENESS = 10
#: Progress is sent to the server at most this often (a change of stage is sent at once).
PROGRESS_INTERVAL = 0.1
RESULT_NAME = "result.glb"
#: Workers' temporary folders: this, the server's pid, a dash and a random tail.
TMP_PREFIX = "meshsmith-worker-"
#: A growing result (:func:`backend.progress.report_partial`), replaced at most this often.
PARTIAL_NAME = "partial.glb"
PARTIAL_INTERVAL = 1.0


class Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, memory_limit_bytes: int | None = None):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        self.process = context.Process(target=worker_main, args=(child, memory_limit_bytes, os.getpid(), self.tmp),
                                       name="meshsmith-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the worker's imports to finish; False if it died or is not ready."""
        if self.ready:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            try:
                if self.conn.poll(0.05):
                    message = self.conn.recv()
                    self.ready = message[0] == "ready"
                    return self.ready
            except (EOFError, OSError):
                return False
        return False

    def kill(self) -> None:
        """End the process now (SIGKILL), reap it and remove its temporary folder."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.process.join(timeout)
        self.kill()

    def exit_description(self) -> str:
        """How the process ended, for a message: a signal by name or the exit code."""
        code = self.process.exitcode
        if code is None:
            return "it is still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
            return f"it was killed by {name}{hint}"
        return f"it exited with code {code}"


# -- inside the worker process -------------------------------------------------------------------


def remove_stale_folders() -> int:
    """Remove the temporary folders of workers whose server is no longer running (one killed
    outright leaves them); returns how many went."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        pid = folder.name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += not folder.exists()
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True                         # someone else's: leave it
    return True


def worker_main(conn: Connection, memory_limit_bytes: int | None, server_pid: int, tmp: str | None = None) -> None:
    """The worker process: import the pipelines once, then run jobs until told to stop."""
    if tmp is not None:
        os.environ["TMPDIR"] = tmp
        tempfile.tempdir = tmp
    # The server decides when a worker stops: a Ctrl-C in its terminal reaches the whole
    # process group, and must not kill a job halfway (the server requeues it on a clean stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(server_pid)
    # Below the server (and Blender) in CPU priority: on a busy machine the API still answers
    # at once and the job takes the time that is left.
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass
    _limit_memory(memory_limit_bytes)
    from backend.memory import keep_freed_memory, release_freed_memory

    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import backend.pipelines  # noqa: F401  - the imports take seconds: pay them before the first job

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return                          # the server is gone
        if message[0] == "stop":
            return
        if message[0] != "run":
            continue                        # a cancel for a job that has ended already
        _, job_id, pipeline, params, files, folder = message
        try:
            outcome = run_job(conn, job_id, pipeline, params, files, Path(folder), memory_limit_bytes)
        except _ServerGone:
            return
        finally:
            release_freed_memory()
        try:
            conn.send(outcome)
        except OSError:
            return


class _ServerGone(Exception):
    """The pipe to the server broke: the worker has no one to report to."""


def run_job(conn: Connection, job_id: str, pipeline_name: str, params: dict, files: dict[str, str], folder: Path,
            memory_limit_bytes: int | None) -> tuple:
    """Run one job in this process; its log goes to ``folder/log.txt``. Returns the final message."""
    from backend.errors import MeshsmithError
    from backend.inputs import INPUT_KINDS
    from backend.mesh.io import mesh_to_bytes, write_atomic
    from backend.pipelines import get_pipeline
    from backend.progress import Cancelled

    handler = logging.FileHandler(folder / "log.txt", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    sent = {"at": 0.0, "stage": None}

    def progress(fraction: float, stage: str) -> None:
        try:
            while conn.poll():
                if conn.recv()[0] == "cancel":
                    raise Cancelled(job_id)
            now = time.monotonic()
            if stage != sent["stage"] or now - sent["at"] >= PROGRESS_INTERVAL:
                conn.send(("progress", round(float(fraction), 4), stage))
                sent["at"], sent["stage"] = now, stage
        except (EOFError, OSError) as exc:
            raise _ServerGone() from exc

    def partial(make_mesh, faces: int) -> None:
        now = time.monotonic()
        if now - sent.get("partial_at", -PARTIAL_INTERVAL) < PARTIAL_INTERVAL:
            return
        mesh = make_mesh()
        if mesh is None or len(mesh.faces) == 0:
            return
        write_atomic(folder / PARTIAL_NAME, mesh_to_bytes(mesh, "glb"))
        sent["partial_at"] = now
        try:
            conn.send(("partial", PARTIAL_NAME, int(faces)))
        except (EOFError, OSError) as exc:
            raise _ServerGone() from exc

    progress.partial = partial

    try:
        log.info("job %s: %s %s (worker %d)", job_id, pipeline_name, params, os.getpid())
        pipeline = get_pipeline(pipeline_name)
        checked = pipeline.parse_params(params)
        pipeline.check_inputs(files)
        progress(0.0, "loading input")
        inputs = {name: INPUT_KINDS[name].load(folder / file) for name, file in files.items()}
        progress(0.0, "starting")
        result = pipeline.run(inputs, checked, progress)
        progress(1.0, "writing result")
        (folder / PARTIAL_NAME).unlink(missing_ok=True)
        write_atomic(folder / RESULT_NAME, mesh_to_bytes(result.mesh, "glb"))
        for name, data in result.extras.items():
            write_atomic(folder / name, data)
        log.info("job %s done: %s", job_id, result.summary)
        return ("done", [RESULT_NAME, *result.extras], result.summary)
    except Cancelled:
        log.info("job %s cancelled", job_id)
        return ("cancelled",)
    except MeshsmithError as exc:
        log.info("job %s failed: %s", job_id, exc.message)
        return ("failed", exc.code, exc.message)
    except MemoryError:
        log.exception("job %s ran out of memory", job_id)
        limit = f"this backend's limit of {memory_limit_bytes / 2**30:.1f} GB per job" if memory_limit_bytes \
            else "the memory this machine has"
        return ("failed", "out_of_memory",
                f"The {pipeline_name} job needed more memory than {limit}. Lower the resolution, the face count or "
                "the texture size, or start the backend with a higher --max-job-memory-gb.")
    except Exception as exc:  # a bug in a pipeline fails its job, not the worker
        log.exception("job %s crashed", job_id)
        return ("failed", "internal", f"The {pipeline_name} pipeline hit an internal error (a bug, not your input's "
                                      "fault as far as it can tell). The job's log.txt has the details; please report it.")
    finally:
        root.removeHandler(handler)
        handler.close()


def _limit_memory(limit: int | None) -> None:
    """A hard limit on this process's memory, where the platform offers one."""
    if not limit:
        return
    try:
        import resource
    except ImportError:          # Windows: no rlimits; the budget check at submit time still applies
        return
    # RLIMIT_DATA counts private writable mappings on Linux >= 4.7 (what numpy allocates),
    # not the address space that thread stacks and shared libraries reserve.
    kind = resource.RLIMIT_DATA if sys.platform.startswith("linux") else resource.RLIMIT_AS
    soft, hard = resource.getrlimit(kind)
    value = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(kind, (value, hard))


def _die_with_parent(server_pid: int) -> None:
    """On Linux, have the kernel SIGKILL this process when the server dies (even by SIGKILL).

    (Strictly: when the server thread that started it ends; the runner's slot threads live
    as long as the server.)
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:   # the server died before the call above
            os._exit(1)
    except (OSError, AttributeError):
        pass
