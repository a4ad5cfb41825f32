"""Find the running backend: its URL and token, from the state file or the preferences.

The state file is ``backend.json`` in the state directory (docs/api.md): ``$MESHSMITH_STATE_DIR``
when set, else ``$XDG_STATE_HOME/meshsmith``, else ``~/.local/state/meshsmith``; on Windows
``%LOCALAPPDATA%\\meshsmith``. Stdlib only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import BackendUnavailable

STATE_FILE_NAME = "backend.json"


@dataclass(frozen=True)
class Connection:
    """Where the backend listens and the bearer token it expects."""

    url: str
    token: str
    #: Where this came from, for messages: the state file's path or "preferences".
    source: str
    #: The backend's process id when known from the state file.
    pid: int | None = None


def state_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The directory that holds ``backend.json``, following docs/api.md."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if environ.get("MESHSMITH_STATE_DIR"):
        return Path(environ["MESHSMITH_STATE_DIR"])
    if platform == "win32" and environ.get("LOCALAPPDATA"):
        return Path(environ["LOCALAPPDATA"]) / "meshsmith"
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]) / "meshsmith"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "meshsmith"


def state_file(environ: Mapping[str, str] | None = None) -> Path:
    """The path of ``backend.json``."""
    return state_dir(environ) / STATE_FILE_NAME


def read_state_file(path: Path) -> dict | None:
    """The state file's content, or None when it does not exist.

    Raises :class:`BackendUnavailable` when it exists but cannot be read or parsed, so a
    torn or foreign file reads as "not running" rather than as a crash.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackendUnavailable(f"cannot read its state file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BackendUnavailable(f"its state file {path} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BackendUnavailable(f"its state file {path} is not a JSON object")
    return data


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (always True where that cannot be checked)."""
    if sys.platform == "win32":
        # os.kill(pid, 0) would terminate the process on Windows; rely on the connection instead.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def normalize_address(address: str) -> str:
    """``"127.0.0.1:8765"`` or ``"http://host:port/"`` -> ``"http://host:port"``."""
    address = address.strip()
    if not address:
        raise ValueError("address is empty; give host:port or an http:// URL")
    if "://" not in address:
        address = "http://" + address
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"address {address!r} must use http:// or https://")
    return address.rstrip("/")


def resolve_connection(address_override: str = "", environ: Mapping[str, str] | None = None) -> Connection:
    """Where to reach the backend.

    Parameters
    ----------
    address_override
        The preferences' backend address; empty means "from the state file". With an
        override, the token still comes from the state file when there is one.
    environ
        Environment to read ``MESHSMITH_STATE_DIR`` etc. from; ``os.environ`` by default.

    Raises
    ------
    BackendUnavailable
        No override and no usable state file, or the file names a process that has exited.
    """
    path = state_file(environ)
    if address_override.strip():
        try:
            url = normalize_address(address_override)
        except ValueError as exc:
            raise BackendUnavailable(f"the backend address in the preferences is not usable: {exc}") from exc
        try:
            data = read_state_file(path) or {}
        except BackendUnavailable:
            data = {}
        return Connection(url=url, token=str(data.get("token", "")), source="preferences")

    data = read_state_file(path)
    if data is None:
        raise BackendUnavailable(f"no state file at {path}")
    url, token = data.get("url"), data.get("token")
    if not isinstance(url, str) or not isinstance(token, str):
        raise BackendUnavailable(f"its state file {path} has no url or token")
    pid = data.get("pid")
    pid = pid if isinstance(pid, int) else None
    if pid is not None and not pid_alive(pid):
        raise BackendUnavailable(f"its state file {path} is left from process {pid}, which has exited")
    return Connection(url=url.rstrip("/"), token=token, source=str(path), pid=pid)
