"""A real backend process on loopback for tests: start, wait until healthy, stop, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


class BackendProcess:
    def __init__(self, state_dir: Path, data_dir: Path, *extra_args: str, python_path: tuple[str, ...] = ()):
        """``python_path``: folders put on the server's PYTHONPATH before the checkout."""
        self.state_dir, self.data_dir, self.extra_args = state_dir, data_dir, extra_args
        self.python_path = python_path
        self.proc: subprocess.Popen | None = None
        self.url = self.token = ""

    @property
    def state_file(self) -> Path:
        return self.state_dir / "backend.json"

    def start(self, timeout: float = 60.0) -> "BackendProcess":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*self.python_path, str(REPO)])}
        env = {k: v for k, v in env.items() if not k.startswith("MESHSMITH_")}
        self.log = open(self.state_dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", "0",
             "--state-dir", str(self.state_dir), "--data-dir", str(self.data_dir), *self.extra_args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited with {self.proc.returncode}: {self.read_log()}")
            if self.state_file.exists():
                state = json.loads(self.state_file.read_text())
                self.url, self.token = state["url"], state["token"]
                try:
                    if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"backend did not become healthy in {timeout} s: {self.read_log()}")

    def read_log(self) -> str:
        return (self.state_dir / "server.log").read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def client(self, token: str | None = None) -> httpx.Client:
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
