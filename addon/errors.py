"""The errors the add-on shows to a person; stdlib only.

Every failure that reaches the user is one of these, carrying a sentence they can act on,
so the Blender side turns any of them into a single ``report`` without a traceback.
"""

from __future__ import annotations

#: How to get a backend running; part of every "backend unavailable" message.
START_HINT = "Start it from Meshsmith's preferences (Start backend) or run `python -m backend serve`."


class MeshsmithError(Exception):
    """Base of the add-on's user-facing errors; ``message`` is shown as is."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BackendUnavailable(MeshsmithError):
    """No backend answers: no state file, a stale one, or the connection was refused."""

    def __init__(self, reason: str):
        super().__init__(f"The Meshsmith backend is not running ({reason}). {START_HINT}")
        self.reason = reason


class BackendError(MeshsmithError):
    """The backend answered with an error ``{code, message}`` (docs/api.md, "Errors")."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class BackendStartError(MeshsmithError):
    """The add-on could not start a backend process, or it did not become healthy."""
