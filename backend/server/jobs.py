"""``/v1/jobs``: submit, inspect, fetch results of and cancel jobs."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from backend.errors import BadParams, TooLarge
from backend.jobs import RESULT_NAME, Job
from backend.mesh.io import load_mesh_bytes, sniff_format
from backend.pipelines import get_pipeline
from backend.server.auth import require_token

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])

_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


async def _read_capped(upload: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"The upload is larger than this backend's limit of {limit / 2**20:.0f} MB. "
                "Decimate the mesh first, or start the backend with a higher --max-upload-mb."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _job_or_404(request: Request, job_id: str) -> Job:
    job = request.app.state.store.get(job_id)
    if job is None:
        raise HTTPException(404, {"code": "not_found", "message": f"There is no job {job_id!r} on this backend."})
    return job


@router.post("", status_code=201)
async def submit_job(request: Request, params: str = Form(...), mesh: UploadFile = File(...)) -> dict:
    settings = request.app.state.settings
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + _CHUNK:
        raise TooLarge(
            f"The upload ({int(length) / 2**20:.0f} MB) is larger than this backend's limit of "
            f"{settings.max_upload_mb:.0f} MB. Decimate the mesh first, or raise --max-upload-mb."
        )
    try:
        spec = json.loads(params)
    except ValueError as exc:
        raise BadParams(f"The 'params' field must be JSON ({exc}).") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("pipeline"), str):
        raise BadParams('The \'params\' field must be a JSON object like {"pipeline": "watertight", "params": {...}}.')
    unknown = set(spec) - {"pipeline", "params"}
    if unknown:
        raise BadParams(f"Unknown keys in 'params': {', '.join(sorted(unknown))}.")
    pipeline = get_pipeline(spec["pipeline"])
    raw_params = spec.get("params", {})
    if not isinstance(raw_params, dict):
        raise BadParams("'params.params' must be a JSON object of the pipeline's parameters.")
    checked = pipeline.parse_params(raw_params)
    data = await _read_capped(mesh, settings.max_upload_bytes)
    # Reject a broken file now, with a message, rather than as a failed job later.
    await run_in_threadpool(load_mesh_bytes, data, name=f"The uploaded file {mesh.filename or ''}".rstrip())
    job = request.app.state.store.create(pipeline.name, checked.model_dump(), data, sniff_format(data))
    request.app.state.runner.submit(job)
    return job.to_json()


@router.get("")
def list_jobs(request: Request) -> dict:
    return {"jobs": [job.to_json() for job in request.app.state.store.list()]}


@router.get("/{job_id}")
def get_job(request: Request, job_id: str) -> dict:
    return _job_or_404(request, job_id).to_json()


@router.get("/{job_id}/result")
def get_result(request: Request, job_id: str, name: str = RESULT_NAME) -> FileResponse:
    job = _job_or_404(request, job_id)
    if job.state != "done":
        raise HTTPException(
            409, {"code": "not_ready", "message": f"Job {job_id} is {job.state}; its result exists once it is done."}
        )
    files = job.result["files"] if job.result else []
    if name not in files or not _SAFE_NAME.match(name):
        raise HTTPException(
            404, {"code": "not_found", "message": f"Job {job_id} has no file {name!r}; it has: {', '.join(files)}."}
        )
    media = "model/gltf-binary" if name.endswith(".glb") else None
    return FileResponse(request.app.state.store.dir(job_id) / name, media_type=media, filename=name)


@router.delete("/{job_id}")
def cancel_job(request: Request, job_id: str) -> dict:
    _job_or_404(request, job_id)
    return request.app.state.runner.cancel(job_id).to_json()
