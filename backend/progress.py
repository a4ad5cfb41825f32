"""Progress reporting and cancellation shared by every pipeline.

A pipeline receives ``progress(fraction, stage)``. Calling it both reports and is the
cancellation point: the job runner's implementation raises :class:`Cancelled` when the
job was cancelled, so a pipeline stops at its next progress call with nothing half done.
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

    return report
