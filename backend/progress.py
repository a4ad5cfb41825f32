"""Progress reporting and cancellation shared by every pipeline.

A pipeline receives ``progress(fraction, stage)``. Calling it both reports and is the
cancellation point: the job runner's implementation raises :class:`Cancelled` when the
job was cancelled, so a pipeline stops at its next progress call with nothing half done.

A pipeline that builds its result piece by piece (a mesh model writing faces) may also show
it as it grows: :func:`report_partial` hands the job runner a function that makes the mesh so
far; the runner calls it only when it wants a new partial result (about once a second) and
serves it as the job's ``partial.glb``.
"""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised from a progress callback when the job it reports for was cancelled."""


def null_progress(fraction: float, stage: str) -> None:
    """A progress callback that ignores everything (library use, tests)."""


def subrange(progress: ProgressFn, start: float, stop: float) -> ProgressFn:
    """Map a sub-task's progress 0..1 onto ``start..stop`` of ``progress``."""
    span = stop - start

    def report(fraction: float, stage: str) -> None:
        progress(start + span * min(max(fraction, 0.0), 1.0), stage)

    if hasattr(progress, "partial"):
        report.partial = progress.partial
    return report


def report_partial(progress: ProgressFn, make_mesh: Callable[[], object], faces: int) -> None:
    """Offer the result so far: ``make_mesh()`` returns it as a :class:`backend.mesh.types.Mesh`
    (called only if the job runner wants one now); ``faces`` is its face count, for the job record.
    Nothing happens where no one shows partial results (the command line, library use)."""
    sink = getattr(progress, "partial", None)
    if sink is not None:
        sink(make_mesh, faces)
