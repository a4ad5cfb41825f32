"""The server's one typed configuration: defaults, then environment, then command line.

Environment variables: ``MESHSMITH_HOST``, ``MESHSMITH_PORT``, ``MESHSMITH_DATA_DIR``,
``MESHSMITH_STATE_DIR``, ``MESHSMITH_TOKEN``, ``MESHSMITH_MAX_UPLOAD_MB``,
``MESHSMITH_UPLOAD_STALL_SECONDS``, ``MESHSMITH_MAX_FACES``, ``MESHSMITH_MAX_QUEUED_JOBS``, ``MESHSMITH_KEEP_JOBS_DAYS``,
``MESHSMITH_MAX_JOBS_DISK_GB``, ``MESHSMITH_JOB_WORKERS``, ``MESHSMITH_MAX_JOB_MEMORY_GB``,
``MESHSMITH_MAX_JOB_MINUTES``. Unknown
``MESHSMITH_*`` variables are errors, so a typo is not silently ignored.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

ENV_PREFIX = "MESHSMITH_"
#: Variables read elsewhere, which the server's settings ignore: by other Meshsmith programs
#: (the add-on, tests) and by the mesh core (backend.mesh.parallel, .native, .gpu, backend.memory).
_OTHER_PROGRAMS_ENV = {"MESHSMITH_BACKEND_PYTHON", "MESHSMITH_EXPECT_BPY", "MESHSMITH_EXPECT_NATIVE",
                       "MESHSMITH_EXPECT_DIST", "MESHSMITH_WORKERS", "MESHSMITH_NATIVE", "MESHSMITH_DEVICE",
                       "MESHSMITH_KEEP_MEMORY"}
STATE_FILE_NAME = "backend.json"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _user_dir(xdg_var: str, fallback: str, windows_var: str = "LOCALAPPDATA") -> Path:
    if sys.platform == "win32" and os.environ.get(windows_var):
        return Path(os.environ[windows_var]) / "meshsmith"
    base = os.environ.get(xdg_var)
    return (Path(base) if base else Path.home() / fallback) / "meshsmith"


def default_state_dir() -> Path:
    """Where ``backend.json`` lives; the add-on looks in the same place (see docs/api.md)."""
    env = os.environ.get("MESHSMITH_STATE_DIR")
    return Path(env) if env else _user_dir("XDG_STATE_HOME", ".local/state")


def default_data_dir() -> Path:
    env = os.environ.get("MESHSMITH_DATA_DIR")
    return Path(env) if env else _user_dir("XDG_DATA_HOME", ".local/share")


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=default_data_dir)
    state_dir: Path = field(default_factory=default_state_dir)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    max_upload_mb: float = 200.0
    #: An upload whose body stops arriving for this many seconds is answered 408.
    upload_stall_seconds: float = 30.0
    #: Most faces an uploaded mesh (or colour source) may have, beside the byte cap.
    max_faces: int = 5_000_000
    #: Jobs waiting to run, at most; more are refused (429) until some have run.
    max_queued_jobs: int = 100
    #: Finished jobs are removed after this many days (0: kept until the disk budget needs the room).
    keep_jobs_days: float = 7.0
    #: All job folders together are kept under this many GB by removing the oldest finished jobs (0: no budget).
    max_jobs_disk_gb: float = 20.0
    #: Worker processes, i.e. jobs that run at once.
    job_workers: int = 1
    #: Hard memory limit of each worker process; 0: none. Default: 3/4 of this machine's RAM.
    max_job_memory_gb: float = field(default_factory=lambda: round(0.75 * total_memory_bytes() / 2**30, 1))
    #: Wall-clock limit of one job, in minutes; 0: none.
    max_job_minutes: float = 60.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def job_memory_bytes(self) -> int | None:
        return int(self.max_job_memory_gb * 2**30) if self.max_job_memory_gb > 0 else None

    @property
    def job_time_limit(self) -> float | None:
        return 60.0 * self.max_job_minutes if self.max_job_minutes > 0 else None

    @property
    def job_max_age(self) -> float | None:
        return 86400.0 * self.keep_jobs_days if self.keep_jobs_days > 0 else None

    @property
    def jobs_disk_bytes(self) -> int | None:
        return int(self.max_jobs_disk_gb * 2**30) if self.max_jobs_disk_gb > 0 else None

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE_NAME

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "ServerSettings":
        """Defaults, then ``MESHSMITH_*`` variables, then ``overrides`` that are not None."""
        environ = dict(os.environ if environ is None else environ)
        known = {f.name: f for f in fields(cls)}
        values: dict = {}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX) or key in _OTHER_PROGRAMS_ENV:
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in known:
                raise ValueError(f"unknown setting {key}; known: {', '.join(ENV_PREFIX + k.upper() for k in known)}")
            values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = cls(**{k: _coerce(known[k].type, k, v) for k, v in values.items()})
        if settings.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be positive, got {settings.max_upload_mb}")
        if not 0 <= settings.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {settings.port}")
        if settings.upload_stall_seconds <= 0:
            raise ValueError(f"upload_stall_seconds must be positive, got {settings.upload_stall_seconds}")
        if settings.max_queued_jobs < 1:
            raise ValueError(f"max_queued_jobs must be positive, got {settings.max_queued_jobs}")
        if settings.keep_jobs_days < 0 or settings.max_jobs_disk_gb < 0:
            raise ValueError("keep_jobs_days and max_jobs_disk_gb must be >= 0 (0: no limit)")
        if settings.max_faces < 1:
            raise ValueError(f"max_faces must be positive, got {settings.max_faces}")
        if settings.job_workers < 1:
            raise ValueError(f"job_workers must be at least 1, got {settings.job_workers}")
        if settings.max_job_memory_gb < 0 or settings.max_job_minutes < 0:
            raise ValueError("max_job_memory_gb and max_job_minutes must be >= 0 (0: no limit)")
        return settings


def _coerce(kind, name: str, value):
    kind = str(kind)
    try:
        if "int" in kind:
            return int(value)
        if "float" in kind:
            return float(value)
        if "Path" in kind:
            return Path(value).expanduser()
    except ValueError:
        raise ValueError(f"setting {name} must be a {kind}, got {value!r}") from None
    return str(value)


def total_memory_bytes() -> int:
    """This machine's physical memory (8 GB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    if sys.platform == "win32":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                        ("avail", ctypes.c_ulonglong), ("page_total", ctypes.c_ulonglong),
                        ("page_avail", ctypes.c_ulonglong), ("virtual_total", ctypes.c_ulonglong),
                        ("virtual_avail", ctypes.c_ulonglong), ("extended", ctypes.c_ulonglong)]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.total)
    return 8 * 2**30


def write_state_file(settings: ServerSettings, port: int, version: str) -> Path:
    """Tell local clients where the server is and its token, readable by this user only."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    payload = {
        "url": f"http://{host}:{port}",
        "host": settings.host,
        "port": port,
        "token": settings.token,
        "pid": os.getpid(),
        "version": version,
    }
    path = settings.state_file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_state_file(settings: ServerSettings) -> None:
    """Remove the state file if it still describes this process."""
    try:
        if json.loads(settings.state_file.read_text()).get("pid") == os.getpid():
            settings.state_file.unlink()
    except (OSError, ValueError):
        pass
