"""``GET /v1/health``: open to all, so a client can tell the backend is up before it has a token."""

from __future__ import annotations

import json
import platform
import sys

from fastapi import APIRouter, Request, Response

from backend import __version__
from backend.pipelines import registry

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> Response:
    # The answer never changes while the server runs: built once, then served as bytes (it is
    # what clients poll; pydantic's schemas took a few ms per call).
    body = getattr(request.app.state, "health_body", None)
    if body is None:
        body = request.app.state.health_body = json.dumps({
            "status": "ok",
            "version": __version__,
            "device": request.app.state.device,
            "pipelines": {name: p.params.model_json_schema() for name, p in registry().items()},
            "pipeline_inputs": {name: p.describe_inputs() for name, p in registry().items()},
            "models": [],
            "runtime": runtime_facts(),
        }).encode()
    return Response(body, media_type="application/json")


def runtime_facts() -> dict:
    """Which Python runs the backend and which of its optional parts it has (for the add-on's panel)."""
    from backend.mesh import native

    why = {name: p.unavailable() for name, p in registry().items()}
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "kernels": "compiled" if native.available() else "numpy",
        "kernels_note": native.why_unavailable(),
        "unavailable": {name: reason for name, reason in why.items() if reason},
    }
