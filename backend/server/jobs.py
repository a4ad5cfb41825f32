"""``/v1/jobs``: submit, inspect, fetch results of and cancel jobs."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from backend.errors import BadInputs, BadParams, TooLarge
from backend.inputs import INPUT_KINDS
from backend.jobs import FINAL_STATES, RESULT_NAME, Job
from backend.workers import PARTIAL_NAME
from backend.pipelines import get_pipeline
from backend.server.auth import require_token

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])

_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


async def _read_capped(upload: UploadFile, limit: int, limit_mb: float) -> bytes:
    """The upload's bytes, or :class:`TooLarge` once the uploads so far pass ``limit`` bytes."""
    chunks, size = [], 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"The upload is larger than this backend's limit of {limit_mb:.0f} MB (all files together). "
                "Decimate the mesh or use smaller textures first, or start the backend with a higher --max-upload-mb."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _job_or_404(request: Request, job_id: str) -> Job:
    job = request.app.state.store.get(job_id)
    if job is None:
        raise HTTPException(404, {"code": "not_found", "message": f"There is no job {job_id!r} on this backend."})
    return job


@router.post("", status_code=201)
async def submit_job(request: Request) -> dict:
    """Multipart: ``params`` (JSON) plus one file field per input the pipeline takes
    (``mesh``, and for ``texture`` one of ``source`` / ``views``; see :mod:`backend.inputs`)."""
    settings = request.app.state.settings
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + _CHUNK:
        raise TooLarge(
            f"The upload ({int(length) / 2**20:.0f} MB) is larger than this backend's limit of "
            f"{settings.max_upload_mb:.0f} MB. Decimate the mesh first, or raise --max-upload-mb."
        )
    form = await request.form(max_files=len(INPUT_KINDS) + 1, max_fields=len(INPUT_KINDS) + 2)
    fields = list(form.multi_items())
    texts = [(k, v) for k, v in fields if not isinstance(v, StarletteUpload)]
    uploads = [(k, v) for k, v in fields if isinstance(v, StarletteUpload)]
    spec = _parse_spec([v for k, v in texts if k == "params"])
    others = sorted({k for k, _ in texts if k != "params"} | {k for k, _ in uploads if k == "params"})
    if others:
        raise BadInputs(f"The fields {', '.join(repr(k) for k in others)} must be files (or, for 'params', text); "
                        "send inputs as file uploads.")
    names = [k for k, _ in uploads]
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise BadInputs(f"Send each input once; got {', '.join(repr(k) for k in twice)} more than once.")
    pipeline = get_pipeline(spec["pipeline"])
    raw_params = spec.get("params", {})
    if not isinstance(raw_params, dict):
        raise BadParams("'params.params' must be a JSON object of the pipeline's parameters.")
    checked = pipeline.parse_params(raw_params)
    pipeline.check_available(checked)
    pipeline.check_inputs(names)
    contents: dict[str, bytes] = {}
    budget = settings.max_upload_bytes
    for name, upload in uploads:  # the cap is on all files together, so read them all first
        contents[name] = await _read_capped(upload, budget, settings.max_upload_mb)
        budget -= len(contents[name])
    files: dict[str, tuple[bytes, str]] = {}
    facts: dict[str, dict] = {}
    for name, upload in uploads:
        # Reject a broken file now, with a message, rather than as a failed job later.
        label = (f"The uploaded file {upload.filename or ''}".rstrip() if name == "mesh"
                 else f"The uploaded {name} file {upload.filename or ''}".rstrip())
        found = await run_in_threadpool(INPUT_KINDS[name].check, contents[name], label)
        files[name] = (contents[name], found.suffix)
        facts[name] = found.facts
        faces = int(found.facts.get("faces", 0))
        if faces > settings.max_faces:
            raise TooLarge(f"{label} has {faces:,} faces; this backend takes at most {settings.max_faces:,} "
                           "(--max-faces). Decimate it first (in Blender: the Decimate modifier).")
    # ... and a job that would not fit in a worker's memory now, rather than minutes later.
    memory = pipeline.check_budget(facts, checked, settings.job_memory_bytes)
    if request.app.state.store.count("queued") >= settings.max_queued_jobs:
        raise HTTPException(429, {"code": "queue_full", "message": (
            f"{settings.max_queued_jobs} jobs are already waiting (--max-queued-jobs). Submit this one when some "
            "have run, or cancel some.")})
    job = await run_in_threadpool(request.app.state.store.create, pipeline.name, checked.model_dump(), files,
                                  memory)
    request.app.state.runner.submit(job)
    return job.to_json()


def _parse_spec(values: list) -> dict:
    if not values:
        raise BadParams('The request needs a \'params\' field: JSON like {"pipeline": "watertight", "params": {...}}.')
    if len(values) > 1:
        raise BadParams("Send the 'params' field once.")
    try:
        spec = json.loads(values[0])
    except RecursionError:
        raise BadParams("The 'params' field is nested too deeply; parameters are a flat JSON object.") from None
    except ValueError as exc:
        where = f" (it stops being JSON at line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise BadParams(f"The 'params' field must be JSON{where}.") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("pipeline"), str):
        raise BadParams('The \'params\' field must be a JSON object like {"pipeline": "watertight", "params": {...}}.')
    unknown = set(spec) - {"pipeline", "params"}
    if unknown:
        raise BadParams(f"Unknown keys in 'params': {', '.join(sorted(unknown))}.")
    return spec


@router.get("")
async def list_jobs(request: Request) -> dict:
    return {"jobs": [job.to_json() for job in request.app.state.store.list()]}


@router.get("/{job_id}")
async def get_job(request: Request, job_id: str) -> dict:
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


@router.get("/{job_id}/partial")
def get_partial(request: Request, job_id: str) -> FileResponse:
    """The result so far of a running job whose pipeline shows one (``job.partial`` says when there
    is one and how many faces it has): GLB, replaced about once a second."""
    job = _job_or_404(request, job_id)
    path = request.app.state.store.dir(job_id) / PARTIAL_NAME
    if job.state != "running" or not job.partial or not path.is_file():
        raise HTTPException(404, {"code": "not_found", "message": (
            f"Job {job_id} has no partial result now ({job.state}); the generating pipelines show one while "
            "they run.")})
    return FileResponse(path, media_type="model/gltf-binary", filename=PARTIAL_NAME)


@router.delete("/{job_id}")
def cancel_job(request: Request, job_id: str) -> dict:
    """Cancel a queued or running job; delete a finished one (its folder too): answers the job,
    with ``"deleted": true`` for a deleted one."""
    job = _job_or_404(request, job_id)
    if job.state in FINAL_STATES:
        request.app.state.store.delete(job_id)
        return {**job.to_json(), "deleted": True}
    return request.app.state.runner.cancel(job_id).to_json()
