"""Errors a person can act on, with the stable code the HTTP API answers with."""

from __future__ import annotations


class MeshsmithError(Exception):
    """Base of the errors the backend turns into a JSON ``{code, message}`` answer."""

    code = "internal"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadMesh(MeshsmithError, ValueError):
    """The uploaded or given mesh cannot be used (empty, NaN, bad indices, unreadable)."""

    code = "bad_mesh"
    status = 422


class UnsupportedFormat(MeshsmithError, ValueError):
    """The file is none of the mesh formats the backend reads."""

    code = "unsupported_format"
    status = 415


class TooLarge(MeshsmithError, ValueError):
    """An upload is over the configured size cap."""

    code = "too_large"
    status = 413


class BadParams(MeshsmithError, ValueError):
    """Job parameters that do not fit the pipeline's schema."""

    code = "bad_params"
    status = 422


class BadSource(MeshsmithError, ValueError):
    """A colour source (``source`` upload) that cannot be baked from: unreadable, or no colour."""

    code = "bad_source"
    status = 422


class BadViews(MeshsmithError, ValueError):
    """Posed views (``views`` upload) that cannot be used: bad ZIP, no cameras.json, bad image."""

    code = "bad_views"
    status = 422


class BadInputs(MeshsmithError, ValueError):
    """Uploaded files that do not fit the pipeline: unknown field, missing or conflicting inputs."""

    code = "bad_inputs"
    status = 422


class OverBudget(MeshsmithError, ValueError):
    """A job whose memory estimate is over the backend's budget per job."""

    code = "over_budget"
    status = 422


class UploadStalled(MeshsmithError):
    """A request body that stopped arriving."""

    code = "upload_stalled"
    status = 408


class MissingDependency(MeshsmithError):
    """A pipeline needs an optional package this backend's Python does not have (the message says how to get it)."""

    code = "missing_dependency"
    status = 501
