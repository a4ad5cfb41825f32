"""``GET /v1/health``: open to all, so a client can tell the backend is up before it has a token."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend import __version__
from backend.pipelines import registry

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict:
    return {
        "status": "ok",
        "version": __version__,
        "device": request.app.state.device,
        "pipelines": {name: p.params.model_json_schema() for name, p in registry().items()},
        "pipeline_inputs": {name: p.describe_inputs() for name, p in registry().items()},
        "models": [],
    }
