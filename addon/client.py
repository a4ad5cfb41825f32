"""HTTP client for the backend's job API (docs/api.md, v1); stdlib only (urllib).

Every failure leaves this module as one of the errors in :mod:`.errors`:
connection refused or unreachable -> :class:`BackendUnavailable` (whose message says how to
start the backend), an error answer ``{code, message}`` -> :class:`BackendError`.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from http.client import HTTPException
from typing import Any

from .connection import Connection
from .errors import BackendError, BackendUnavailable, MeshsmithError
from .protocol import Health, Job, ProtocolError, job_list_from_json

log = logging.getLogger(__name__)

#: Seconds to wait for small calls (health, status, cancel, list).
DEFAULT_TIMEOUT = 10.0
#: Seconds to wait for uploads and downloads, which carry whole meshes.
TRANSFER_TIMEOUT = 120.0

__all__ = ["Client", "BackendError", "BackendUnavailable", "MeshsmithError"]


def _encode_multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its content type; ``files`` maps field -> (name, data, type)."""
    boundary = f"meshsmith-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for name, (filename, data, content_type) in files.items():
        chunks.append(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


class Client:
    """Talks to one backend.

    Parameters
    ----------
    url
        Base URL, e.g. ``"http://127.0.0.1:8765"`` (no ``/v1``).
    token
        Bearer token from the state file; every call but :meth:`health` needs it.
    timeout, transfer_timeout
        Socket timeouts in seconds for small calls and for mesh uploads/downloads.
    """

    def __init__(
        self,
        url: str,
        token: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transfer_timeout: float = TRANSFER_TIMEOUT,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        # No proxy, ever: the backend is local, and an http_proxy set for the internet
        # would otherwise receive the token and the user's mesh.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_connection(cls, connection: Connection, **options: float) -> "Client":
        return cls(connection.url, connection.token, **options)

    # -- calls ---------------------------------------------------------------------------

    def health(self) -> Health:
        """``GET /v1/health``; needs no token."""
        return self._parse(Health.from_json, self._json("GET", "/v1/health", auth=False))

    def submit(
        self,
        pipeline: str,
        params: Mapping[str, Any],
        mesh: bytes | None,
        *,
        filename: str = "mesh.glb",
        files: Mapping[str, tuple[str, bytes]] | None = None,
        mesh_field: str = "mesh",
    ) -> Job:
        """``POST /v1/jobs``: upload ``mesh`` (GLB, OBJ, PLY or STL bytes) for ``pipeline``.

        ``files`` adds more uploads by field name, each ``(file name, bytes)``: e.g.
        ``{"source": ("source.glb", data)}`` or ``{"views": ("views.zip", data)}``. A pipeline
        that makes a mesh from other inputs (``views_to_mesh``) or from its parameters alone
        (``text_to_mesh``) takes no ``mesh``: pass None. ``mesh_field``: the field the mesh goes
        in (``points_to_mesh`` reads it as ``points``).
        """
        if not pipeline:
            raise ValueError("pipeline is empty; give a pipeline name such as 'watertight'")
        if mesh is not None and not mesh:
            raise ValueError("mesh is empty (0 bytes); nothing to upload")
        uploads = {mesh_field: (filename, mesh, "application/octet-stream")} if mesh is not None else {}
        for field, (name, data) in (files or {}).items():
            if field in uploads or field == "params":
                raise ValueError(f"files may not use the field name {field!r}; it is taken")
            if not data:
                raise ValueError(f"files[{field!r}] is empty (0 bytes); nothing to upload")
            content = ("application/zip" if name.endswith(".zip") else "image/png" if name.endswith(".png")
                       else "application/octet-stream")
            uploads[field] = (name, data, content)
        body, content_type = _encode_multipart(
            {"params": json.dumps({"pipeline": pipeline, "params": dict(params)})}, uploads
        )
        data = self._json("POST", "/v1/jobs", body=body, content_type=content_type, timeout=self.transfer_timeout)
        return self._parse(Job.from_json, data)

    def job(self, job_id: str) -> Job:
        """``GET /v1/jobs/{id}``."""
        return self._parse(Job.from_json, self._json("GET", f"/v1/jobs/{self._quote(job_id)}"))

    def result(self, job_id: str, name: str | None = None) -> bytes:
        """``GET /v1/jobs/{id}/result``: the result GLB, or the named extra ``name``."""
        path = f"/v1/jobs/{self._quote(job_id)}/result"
        if name:
            path += "?" + urllib.parse.urlencode({"name": name})
        return self._request("GET", path, timeout=self.transfer_timeout)

    def partial(self, job_id: str) -> bytes:
        """``GET /v1/jobs/{id}/partial``: a generating job's result so far (GLB)."""
        return self._request("GET", f"/v1/jobs/{self._quote(job_id)}/partial", timeout=self.transfer_timeout)

    def cancel(self, job_id: str) -> Job:
        """``DELETE /v1/jobs/{id}``: a running job stops at its next progress point."""
        return self._parse(Job.from_json, self._json("DELETE", f"/v1/jobs/{self._quote(job_id)}"))

    def jobs(self) -> list[Job]:
        """``GET /v1/jobs``: history, newest first."""
        return self._parse(job_list_from_json, self._json("GET", "/v1/jobs"))

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _quote(job_id: str) -> str:
        if not job_id:
            raise ValueError("job_id is empty")
        return urllib.parse.quote(job_id, safe="")

    @staticmethod
    def _parse(parse, data: Any):
        try:
            return parse(data)
        except ProtocolError as exc:
            raise BackendError("protocol", f"The backend sent an answer this add-on does not understand: {exc}.") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        raw = self._request(method, path, **kwargs)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BackendError("protocol", f"The backend answered {method} {path} with something that is not JSON.") from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> bytes:
        headers = {"Accept": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        timeout = self.timeout if timeout is None else timeout
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise self._error_from_response(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise self._timeout(method, path, timeout) from None
            if isinstance(reason, ConnectionRefusedError):
                raise BackendUnavailable(f"nothing answers at {self.url}") from None
            raise BackendUnavailable(f"cannot reach {self.url}: {reason}") from None
        except TimeoutError:
            raise self._timeout(method, path, timeout) from None
        except (ConnectionError, HTTPException) as exc:
            # The backend went away mid-call (reset, closed without an answer).
            raise BackendUnavailable(f"the connection to {self.url} broke: {exc or type(exc).__name__}") from None

    @staticmethod
    def _timeout(method: str, path: str, timeout: float) -> BackendError:
        return BackendError(
            "timeout", f"The backend did not answer {method} {path} within {timeout:g} s; it may be overloaded."
        )

    @staticmethod
    def _error_from_response(exc: urllib.error.HTTPError) -> BackendError:
        status = exc.code
        try:
            raw = exc.read()
        except (OSError, HTTPException):
            raw = b""
        finally:
            exc.close()
        try:
            data = json.loads(raw)
            code, message = data["code"], data["message"]
            if isinstance(code, str) and isinstance(message, str) and message:
                return BackendError(code, message, status)
        except (ValueError, KeyError, TypeError):
            pass
        log.debug("non-JSON error answer %s: %r", status, raw[:200])
        return BackendError(f"http_{status}", f"The backend answered HTTP {status} ({exc.reason}).", status)
