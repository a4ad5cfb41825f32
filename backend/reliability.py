"""``python -m backend.reliability``: the backend probed as an attacker and a heavy user would.

Every part runs against real servers (``python -m backend serve``) on 127.0.0.1 with their
own state and data folders in a temporary directory, and prints one table:

- **fuzz**: generated bad uploads (mutated GLB / OBJ / PLY / STL / views ZIPs, odd params):
  each must be a 4xx answer with a ``{code, message}`` body, or a job that ends ``done`` or
  ``failed`` with a message. Counted: 500s, hangs (no answer, or a job that never ends),
  answers without a message, and messages that quote Python exceptions or server paths.
- **kill**: a stream of small jobs while the server is killed (SIGKILL) and stopped
  (SIGTERM) again and again, restarted each time: no job may be lost (unknown after a
  restart) or stuck (never final), and every ``done`` result must load as a closed mesh.
- **load**: clients polling job status and health while a heavy artist job runs: latency
  p50 / p99 / max and errors.
- **cancel**: the time from ``DELETE`` to ``cancelled`` for that heavy job.

``--smoke`` runs a small version of each (the test suite calls it); the full run takes about
ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: A message that quotes a Python exception or a server path is a defect.
RAW_TEXT = re.compile(
    r"Traceback|Error: |Exception|object has no attribute|object is not subscriptable|NoneType|"
    r"unsupported operand|invalid literal|index out of range|not iterable|/tmp/|/home/|/root/|\.py\b"
)
HEAVY = {"pipeline": "artist", "params": {"faces": 100000, "resolution": 1024}}


# -- a server ---------------------------------------------------------------------------------


class Server:
    """``python -m backend serve`` on a free port, with its own folders."""

    def __init__(self, root: Path, *args: str):
        self.root, self.args = root, args
        self.proc: subprocess.Popen | None = None
        self.url = self.token = ""

    def start(self, timeout: float = 60.0) -> "Server":
        import httpx

        state = self.root / "state"
        state.mkdir(parents=True, exist_ok=True)
        (state / "backend.json").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSMITH_")}
        env["PYTHONPATH"] = str(REPO)
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", "0", "--state-dir", str(state),
                                      "--data-dir", str(self.root / "data"), *self.args],
                                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the backend exited with {self.proc.returncode}; see {self.root / 'server.log'}")
            try:
                info = json.loads((state / "backend.json").read_text())
                self.url, self.token = info["url"], info["token"]
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            except (OSError, ValueError, KeyError, httpx.TransportError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the backend did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, timeout: float = 30.0):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)


def submit(client, spec: dict | str, files: dict[str, bytes]):
    params = spec if isinstance(spec, str) else json.dumps(spec)
    return client.post("/v1/jobs", data={"params": params},
                       files={k: (f"{k}.bin", v, "application/octet-stream") for k, v in files.items()})


def wait_final(client, job_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("state") in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    return None


# -- inputs -----------------------------------------------------------------------------------


def valid_files() -> dict[str, bytes]:
    """Small valid files of every kind the API takes."""
    import numpy as np
    import trimesh

    sphere = trimesh.creation.icosphere(2)
    box = trimesh.creation.box()
    coloured = sphere.copy()
    coloured.visual.vertex_colors = np.c_[sphere.vertices * 120 + 128, np.full(len(sphere.vertices), 255)].astype(np.uint8)
    views = io.BytesIO()
    with zipfile.ZipFile(views, "w") as z:
        from PIL import Image

        png = io.BytesIO()
        Image.new("RGBA", (32, 32), (200, 40, 40, 255)).save(png, "PNG")
        z.writestr("view_000.png", png.getvalue())
        z.writestr("cameras.json", json.dumps({"views": [{
            "intrinsics": {"width": 32, "height": 32, "fx": 40.0, "fy": 40.0, "cx": 15.5, "cy": 15.5},
            "world_to_camera": [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 3], [0, 0, 0, 1]],
            "files": {"rgb": "view_000.png"}}]}))
    return {
        "glb": sphere.export(file_type="glb"),
        "obj": box.export(file_type="obj").encode(),
        "ply": coloured.export(file_type="ply"),
        "ply_ascii": coloured.export(file_type="ply", encoding="ascii"),
        "stl": box.export(file_type="stl"),
        "stl_ascii": box.export(file_type="stl_ascii").encode(),
        "views": views.getvalue(),
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation: truncate, flip bytes, insert junk, splice numbers, repeat a slice, or empty."""
    kind = rng.randrange(7)
    if not data or kind == 0:
        return data[: rng.randrange(len(data) + 1)] if data else b""
    b = bytearray(data)
    if kind == 1:
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:
        at = rng.randrange(len(b))
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 3:
        text = bytes(b).decode("latin-1")
        for token in ("nan", "inf", "-1", "1e308", "99999999", "0", "-0", "4294967295"):
            if rng.random() < 0.3:
                text = re.sub(r"-?\d+(\.\d+)?", token, text, count=rng.randint(1, 5))
        b = bytearray(text.encode("latin-1"))
    elif kind == 4:
        start = rng.randrange(len(b))
        b[start:start] = b[start:start + rng.randint(1, 256)] * rng.randint(2, 8)
    elif kind == 5:
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(max(len(b) - 4, 1))
            b[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(b), 3 * len(b)]))
    else:
        return b""
    return bytes(b)


def mutate_glb_json(data: bytes, rng: random.Random) -> bytes:
    """A GLB whose JSON chunk has a field replaced by an odd value (null, [], "x", -1, a huge number)."""
    length = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + length])
    odd = rng.choice([None, [], {}, "x", -1, 10**12, 0.5, [None]])
    path = rng.choice([("meshes", 0, "primitives", 0, "extensions"), ("meshes", 0, "primitives", 0, "indices"),
                       ("accessors", 0, "count"), ("accessors", 0, "componentType"), ("bufferViews", 0, "byteOffset"),
                       ("nodes", 0, "mesh"), ("nodes", 0, "scale"), ("buffers", 0, "uri"), ("scene",),
                       ("meshes", 0, "primitives", 0, "attributes", "POSITION"), ("accessors", 0, "type")])
    target = doc
    try:
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = odd
    except (KeyError, IndexError, TypeError):
        pass
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + length:]
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def odd_params(rng: random.Random) -> str:
    choices = [
        '{"pipeline": "watertight", "params": {"resolution": "high"}}',
        '{"pipeline": "watertight", "params": {"resolution": 1e400}}',
        '{"pipeline": "watertight", "params": {"resolution": -5}}',
        '{"pipeline": "watertight", "params": null}',
        '{"pipeline": null}',
        '{"pipeline": "artist", "params": {"faces": 10}}',
        '{"pipeline": "artist", "params": {"faces": 1e9}}',
        '{"pipeline": "texture", "params": {"texture_size": 8192}}',
        '{"pipeline": "nope"}',
        "[" * 2000 + "]" * 2000,
        '{"pipeline": "watertight", "params": ' + '{"a":' * 1500 + "1" + "}" * 1500 + "}",
        "",
        "not json",
        '{"pipeline": "watertight", "params": {"resolution": 32}, "x": 1}',
        '{"pipeline": "watertight", "params": {"target_faces": 0}}',
    ]
    return rng.choice(choices)


# -- parts -------------------------------------------------------------------------------------


@dataclass
class Row:
    part: str
    figures: dict = field(default_factory=dict)
    ok: bool = True


def fuzz(root: Path, count: int, seed: int) -> Row:
    """``count`` bad uploads against one server; see the module docstring."""
    from tqdm import tqdm

    rng = random.Random(seed)
    files = valid_files()
    server = Server(root / "fuzz", "--max-upload-mb", "8", "--max-job-minutes", "2").start()
    counts = {"inputs": 0, "4xx": 0, "accepted": 0, "done": 0, "failed": 0, "500": 0, "hangs": 0,
              "no_message": 0, "raw_text": 0}
    examples: list[str] = []

    def check_message(body: dict, where: str) -> None:
        message = body.get("message") if isinstance(body, dict) else None
        if not message or not isinstance(body.get("code"), str):
            counts["no_message"] += 1
            examples.append(f"{where}: no code/message: {str(body)[:160]}")
        elif RAW_TEXT.search(message):
            counts["raw_text"] += 1
            examples.append(f"{where}: {message[:200]}")

    try:
        with server.client(timeout=60) as client:
            for k in tqdm(range(count), desc="fuzz", leave=False):
                kind = rng.choice(["glb", "glb_json", "obj", "ply", "ply_ascii", "stl", "stl_ascii", "views",
                                   "params", "fields"])
                spec: dict | str = {"pipeline": "watertight", "params": {"resolution": 32}}
                if kind == "glb_json":
                    upload = {"mesh": mutate_glb_json(files["glb"], rng)}
                elif kind == "views":
                    spec = {"pipeline": "texture", "params": {"texture_size": 64}}
                    upload = {"mesh": files["glb"], "views": mutate(files["views"], rng)}
                elif kind == "params":
                    spec, upload = odd_params(rng), {"mesh": files["obj"]}
                elif kind == "fields":
                    spec = {"pipeline": "texture", "params": {"texture_size": 64}}
                    upload = rng.choice([{}, {"mesh": files["glb"]}, {"views": files["views"]},
                                         {"mesh": files["glb"], "source": files["glb"], "views": files["views"]},
                                         {"mesh": files["glb"], "source": mutate(files["ply"], rng)},
                                         {"mesh": files["glb"], "other": files["glb"]}])
                else:
                    if rng.random() < 0.3:
                        spec = {"pipeline": "artist", "params": {"faces": 200}}
                    upload = {"mesh": mutate(files[kind], rng)}
                counts["inputs"] += 1
                try:
                    answer = submit(client, spec, upload)
                except Exception as exc:  # noqa: BLE001 - a transport failure is a hang or a crash here
                    counts["hangs"] += 1
                    examples.append(f"#{k} {kind}: no answer ({type(exc).__name__})")
                    continue
                body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
                if answer.status_code >= 500:
                    counts["500"] += 1
                    examples.append(f"#{k} {kind}: {answer.status_code} {answer.text[:160]}")
                elif answer.status_code >= 400:
                    counts["4xx"] += 1
                    check_message(body, f"#{k} {kind} {answer.status_code}")
                else:
                    counts["accepted"] += 1
                    job = wait_final(client, body["id"], 180)
                    if job is None:
                        counts["hangs"] += 1
                        examples.append(f"#{k} {kind}: job {body['id']} never ended")
                        client.delete(f"/v1/jobs/{body['id']}")
                    elif job["state"] == "done":
                        counts["done"] += 1
                    else:
                        counts["failed"] += 1
                        check_message(job.get("error") or {}, f"#{k} {kind} job {job['state']}")
                    client.delete(f"/v1/jobs/{body['id']}")
    finally:
        server.stop()
    ok = counts["500"] == counts["hangs"] == counts["no_message"] == counts["raw_text"] == 0
    return Row("fuzz", {**counts, "examples": examples[:10]}, ok)


def kill(root: Path, kills: int, stops: int, seed: int) -> Row:
    """Jobs keep coming while the server is killed ``kills`` times and stopped ``stops`` times."""
    import trimesh
    from tqdm import tqdm

    rng = random.Random(seed)
    mesh = trimesh.creation.icosphere(3).export(file_type="glb")
    server = Server(root / "kill")
    submitted: list[str] = []
    events = ["kill"] * kills + ["stop"] * stops
    rng.shuffle(events)
    for event in tqdm(events, desc="kill", leave=False):
        server.start()
        with server.client() as client:
            for _ in range(rng.randint(1, 4)):
                answer = submit(client, {"pipeline": "watertight", "params": {"resolution": rng.choice([64, 128, 256])}},
                                {"mesh": mesh})
                if answer.status_code == 201:
                    submitted.append(answer.json()["id"])
        time.sleep(rng.uniform(0.0, 1.5))
        server.stop(signal.SIGKILL if event == "kill" else signal.SIGTERM)
    server.start()
    lost = stuck = failed = bad_results = done = 0
    try:
        with server.client() as client:
            for job_id in submitted:
                answer = client.get(f"/v1/jobs/{job_id}")
                if answer.status_code == 404:
                    lost += 1
                    continue
                job = wait_final(client, job_id, 300)
                if job is None:
                    stuck += 1
                elif job["state"] == "done":
                    done += 1
                    result = client.get(f"/v1/jobs/{job_id}/result")
                    loaded = trimesh.load(io.BytesIO(result.content), file_type="glb", force="mesh")
                    bad_results += int(not loaded.is_watertight)
                else:
                    failed += 1
    finally:
        server.stop()
    figures = {"kills": kills, "stops": stops, "jobs": len(submitted), "done": done, "failed": failed, "lost": lost,
               "stuck": stuck, "bad results": bad_results}
    return Row("kill", figures, lost == stuck == bad_results == 0)


def load_and_cancel(root: Path, clients: int, seconds: float) -> tuple[Row, Row]:
    """``clients`` threads poll status and health while the heavy job runs; then cancel it."""
    server = Server(root / "load").start()
    data = (REPO / "assets" / "spot_broken.obj").read_bytes()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    try:
        with server.client() as c:
            job = submit(c, HEAVY, {"mesh": data}).json()
            while c.get(f"/v1/jobs/{job['id']}").json()["state"] != "running":
                time.sleep(0.05)
            stop = time.monotonic() + seconds

            def poll() -> None:
                nonlocal errors
                with server.client(timeout=10) as mine:
                    while time.monotonic() < stop:
                        t = time.perf_counter()
                        try:
                            ok = mine.get(f"/v1/jobs/{job['id']}").status_code == 200 and \
                                mine.get("/v1/health").status_code == 200
                        except Exception:  # noqa: BLE001 - counted, not raised
                            ok = False
                        with lock:
                            latencies.append((time.perf_counter() - t) / 2)
                            errors += not ok
                        time.sleep(0.05)

            threads = [threading.Thread(target=poll) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stage = c.get(f"/v1/jobs/{job['id']}").json()
            start = time.perf_counter()
            c.delete(f"/v1/jobs/{job['id']}")
            ended = wait_final(c, job["id"], 60)
            cancel_s = time.perf_counter() - start
    finally:
        server.stop()
    ms = sorted(1000 * x for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    load = Row("load", {"clients": clients, "requests": 2 * len(ms), "errors": errors,
                        "p50 ms": round(statistics.median(ms), 1) if ms else None, "p99 ms": round(p99, 1),
                        "max ms": round(ms[-1], 1) if ms else None, "job stage": stage.get("stage")},
               errors == 0 and p99 <= 50.0)
    cancel = Row("cancel", {"seconds": round(cancel_s, 2), "state": ended and ended["state"],
                            "during": stage.get("stage")},
                 bool(ended) and ended["state"] == "cancelled" and cancel_s <= 1.0)
    return load, cancel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small run of every part (seconds, for tests)")
    parser.add_argument("--fuzz", type=int, default=2000, help="bad uploads (default 2000)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    parser.add_argument("--stops", type=int, default=5, help="SIGTERMs (default 5)")
    parser.add_argument("--clients", type=int, default=30, help="polling clients (default 30)")
    parser.add_argument("--load-seconds", type=float, default=60.0,
                        help="how long they poll (default 60: into the job's Instant Meshes stage)")
    parser.add_argument("--parts", nargs="+", default=["fuzz", "kill", "load"], choices=["fuzz", "kill", "load"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.fuzz, args.kills, args.stops, args.clients, args.load_seconds = 60, 2, 1, 4, 3.0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meshsmith-reliability-") as tmp:
        root = Path(tmp)
        if "fuzz" in args.parts:
            rows.append(fuzz(root, args.fuzz, args.seed))
        if "kill" in args.parts:
            rows.append(kill(root, args.kills, args.stops, args.seed))
        if "load" in args.parts:
            rows.extend(load_and_cancel(root, args.clients, args.load_seconds))
    print(f"{'part':<7} {'ok':<4} figures")
    for row in rows:
        shown = {k: v for k, v in row.figures.items() if k != "examples"}
        print(f"{row.part:<7} {'yes' if row.ok else 'NO':<4} " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        for example in row.figures.get("examples", []):
            print(f"        {example}")
    if args.out:
        args.out.write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
