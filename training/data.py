"""Asset corpora for training: a manifest of meshes with credit, licence and a fixed split.

    python -m training.data furniture --deb sweethome3d-furniture_1.8-1_all.deb --out data/furniture
    python -m training.data folder DIR --out data/mine
    python -m training.data shapes --count 240 --out data/shapes     (procedural shapes: training.shapes)
    python -m training.data views data/furniture --out data/furniture-views [--workers 2]
    python -m training.data samples data/furniture --views data/furniture-views --out data/furniture-train

After a corpus, two resumable steps make the training examples of the views-to-mesh model:
``views`` renders every asset with ``render.dataset`` (six ``zero123pp`` views at 320 px:
RGBA, normals, depth, masks, cameras; local processes or ``--ray-address``), and ``samples``
runs ``backend preprocess`` on each render's ``mesh.glb`` (watertight remesh, exact SDF
samples) and packs inputs and supervision per asset (:mod:`training.dataset`), in a pool of
local processes. ``samples`` writes ``index.jsonl``: one line per packed asset with its render
name, split and manifest record; failures go to ``failures.jsonl`` and the run goes on.

A corpus is a folder holding ``manifest.jsonl`` (one asset per line) and the assets' files.
Each record: ``id`` (stable, unique), ``path`` (the mesh file, relative to the corpus),
``name``, ``category``, ``tags``, ``credit`` (who made it), ``licence`` (SPDX-like id),
``source`` (where it came from) and ``split`` (``train``, ``val`` or ``test``).

Splits are by asset and fixed by a seeded hash of the asset's id (:func:`split_of`): an
asset keeps its split whatever else is in the corpus, so corpora can grow without moving
assets between splits. The test split is never used for training or model selection.

Sweet Home 3D furniture
    Debian's ``sweethome3d-furniture`` package (get it offline-friendly with ``apt-get download
    sweethome3d-furniture``) holds five ``.sh3f`` catalogues: zip files of OBJ + MTL + texture
    models, described in ``PluginFurnitureCatalog.properties`` (Java properties: ``name#N``,
    ``category#N``, ``tags#N``, ``creator#N``, ``model#N`` per model). Licences are per
    catalogue; they are read from the package's machine-readable ``copyright`` file
    (``Files: Scopia/*`` -> ``License: CC-BY-3.0``), else from the catalogue's own
    ``license`` property. Each model's folder is unpacked under ``assets/<catalogue>/``; paths
    that would leave it are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

#: Shares of the assets in the train and val splits; the rest is test.
SPLITS = (("train", 0.90), ("val", 0.05), ("test", 0.05))
DEFAULT_SEED = 0
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
CATALOG_FILE = "PluginFurnitureCatalog.properties"


@dataclass
class Asset:
    """One asset of a corpus (a line of ``manifest.jsonl``)."""

    id: str
    path: str
    name: str
    split: str
    category: str = ""
    tags: list[str] = field(default_factory=list)
    credit: str = ""
    licence: str = ""
    source: str = ""


def split_of(asset_id: str, seed: int = DEFAULT_SEED) -> str:
    """The split of an asset: a seeded hash of its id into [0, 1), cut at :data:`SPLITS`' shares."""
    digest = hashlib.sha256(f"{seed}:{asset_id}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if value < edge:
            return name
    return SPLITS[-1][0]


def write_manifest(assets: list[Asset], out: Path) -> Path:
    """Write ``out/manifest.jsonl`` (sorted by id) atomically; returns its path."""
    ids = [a.id for a in assets]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"asset ids must be unique; repeated: {', '.join(twice[:5])}")
    path = out / "manifest.jsonl"
    part = path.with_suffix(".jsonl.part")
    part.write_text("".join(json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in sorted(assets, key=lambda a: a.id)),
                    encoding="utf-8")
    part.replace(path)
    return path


def read_manifest(corpus: Path, split: str | None = None) -> list[Asset]:
    """The assets of a corpus (optionally of one split)."""
    lines = (Path(corpus) / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assets = [Asset(**json.loads(line)) for line in lines if line.strip()]
    return [a for a in assets if split is None or a.split == split]


# -- any folder of meshes ----------------------------------------------------------------------


def from_folder(folder: Path, out: Path, *, licence: str = "", credit: str = "", seed: int = DEFAULT_SEED) -> list[Asset]:
    """A corpus over the mesh files under ``folder`` (kept where they are; paths relative to ``out``)."""
    folder, out = Path(folder).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    assets = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and p.is_file()):
        rel = path.relative_to(folder).as_posix()
        asset_id = f"{folder.name}/{rel}"
        assets.append(Asset(id=asset_id, path=_relative(path, out), name=path.stem, split=split_of(asset_id, seed),
                            credit=credit, licence=licence, source=str(folder)))
    write_manifest(assets, out)
    return assets


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path, start)).as_posix()


# -- Sweet Home 3D furniture -------------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value`` / ``key: value`` / ``key value`` lines, ``#`` and ``!``
    comments, backslash line continuations and escapes (``\\uXXXX``, ``\\t``, ``\\n``, ...)."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        line = line.lstrip()
        if not line or line[0] in "#!":
            continue
        while _continues(line):
            line = line[:-1] + next(lines, "").lstrip()
        match = re.match(r"((?:\\.|[^=:\s\\])*)\s*[=:\s]?\s*(.*)", line, re.S)
        key, value = match.group(1), match.group(2)
        out[_unescape(key)] = _unescape(value)
    return out


def _continues(line: str) -> bool:
    backslashes = len(line) - len(line.rstrip("\\"))
    return backslashes % 2 == 1


def _unescape(text: str) -> str:
    def one(m: re.Match) -> str:
        c = m.group(1)
        if c.startswith("u"):
            return chr(int(c[1:], 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(c, c)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def debian_licences(copyright_text: str) -> dict[str, str]:
    """``Files: <dir>/*`` -> ``License: <id>`` from a machine-readable Debian copyright file."""
    licences, files = {}, None
    for line in copyright_text.splitlines():
        if line.startswith("Files:"):
            files = line.split(":", 1)[1].strip()
        elif line.startswith("License:") and files:
            for pattern in files.split():
                licences[pattern.split("/")[0]] = line.split(":", 1)[1].strip()
            files = None
    return licences


def catalogue_assets(catalogue: Path, out: Path, licence: str, seed: int = DEFAULT_SEED) -> list[Asset]:
    """Unpack one ``.sh3f`` catalogue's models under ``out/assets/<catalogue>/`` and describe them."""
    stem = catalogue.stem
    target = out / "assets" / stem
    with zipfile.ZipFile(catalogue) as archive:
        props = parse_properties(archive.read(CATALOG_FILE).decode("utf-8", "replace"))
        licence = licence or props.get("license", "")
        provider = props.get("provider", "")
        names = archive.namelist()
        assets = []
        indices = sorted({int(k.split("#", 1)[1]) for k in props if k.startswith("model#") and k[6:].isdigit()})
        for n in indices:
            model = props[f"model#{n}"].lstrip("/")
            folder = PurePosixPath(model).parent
            members = [m for m in names if PurePosixPath(m).parent == folder or folder in PurePosixPath(m).parents]
            for member in members:
                dest = _safe_destination(target, member)
                if dest is None or member.endswith("/"):
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not dest.exists():
                    dest.write_bytes(archive.read(member))
            mesh = _safe_destination(target, model)
            if mesh is None or not mesh.is_file():
                continue
            asset_id = f"{stem}/{props.get(f'id#{n}', model)}"
            creator = props.get(f"creator#{n}", "")
            assets.append(Asset(
                id=asset_id,
                path=mesh.relative_to(out).as_posix(),
                name=props.get(f"name#{n}", PurePosixPath(model).stem),
                split=split_of(asset_id, seed),
                category=props.get(f"category#{n}", ""),
                tags=[t.strip() for t in props.get(f"tags#{n}", "").split(",") if t.strip()],
                credit=", ".join(x for x in (creator, provider and f"via {provider}") if x),
                licence=licence,
                source=f"sweethome3d-furniture:{catalogue.name}",
            ))
    return assets


def _safe_destination(root: Path, member: str) -> Path | None:
    """``root / member`` unless the member is absolute or climbs out of ``root``."""
    parts = PurePosixPath(member.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
        return None
    return root.joinpath(*parts)


def furniture(source: Path, out: Path, *, seed: int = DEFAULT_SEED) -> list[Asset]:
    """Build the furniture corpus from the ``.deb`` file or from a folder holding ``.sh3f`` catalogues."""
    from tqdm import tqdm

    source, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshsmith-furniture-") as tmp:
        root = source
        if source.suffix == ".deb":
            subprocess.run(["dpkg-deb", "-x", str(source), tmp], check=True)
            root = Path(tmp)
        catalogues = sorted(root.rglob("*.sh3f"))
        if not catalogues:
            raise FileNotFoundError(f"no .sh3f catalogues in {source}")
        copyright_files = sorted(root.rglob("copyright"))
        licences = debian_licences(copyright_files[0].read_text(errors="replace")) if copyright_files else {}
        assets = []
        for catalogue in tqdm(catalogues, desc="catalogues", leave=False):
            assets += catalogue_assets(catalogue, out, licences.get(catalogue.stem, ""), seed)
    write_manifest(assets, out)
    return assets


def summary(assets: list[Asset]) -> str:
    counts = {name: sum(a.split == name for a in assets) for name, _ in SPLITS}
    licences: dict[str, int] = {}
    for a in assets:
        licences[a.licence or "unknown"] = licences.get(a.licence or "unknown", 0) + 1
    return (f"{len(assets)} assets ({', '.join(f'{k} {v}' for k, v in counts.items())}); licences: "
            + ", ".join(f"{k} {v}" for k, v in sorted(licences.items())))


# -- training examples: renders, SDF samples, packs ---------------------------------------------


def asset_root(corpus: Path, assets: list[Asset]) -> Path:
    """The folder that holds every asset file of a corpus (render.dataset's ``--input-dir``)."""
    import os

    paths = [str((Path(corpus) / a.path).resolve().parent) for a in assets]
    return Path(os.path.commonpath(paths))


def render_names(corpus: Path, assets: list[Asset]) -> dict[str, Asset]:
    """Assets by the folder name render.dataset gives their renders (path under :func:`asset_root`)."""
    from render.dataset import find_assets

    root = asset_root(corpus, assets)
    by_path = {(Path(corpus) / a.path).resolve(): a for a in assets}
    return {name: by_path[p.resolve()] for name, p in find_assets(root).items() if p.resolve() in by_path}


def render_views(corpus: Path, out: Path, *, workers: int = 1, ray_address: str | None = None,
                 samples: int = 8) -> dict:
    """Render every asset of the corpus into ``out`` (resumable; see :mod:`render.dataset`)."""
    from render.dataset import run
    from render.views import RenderConfig

    assets = read_manifest(corpus)
    config = RenderConfig(samples=samples, threads=1 if workers > 1 else 0)
    return run(asset_root(corpus, assets), Path(out), config, workers=workers, ray_address=ray_address)


#: What ``samples`` asks of ``backend preprocess`` per asset (SDF only: no salient edges).
PREPROCESS = {"resolution": 192, "n_surface": 0, "n_sdf_uniform": 8000, "n_sdf_near": 24000,
              "sigmas": (0.005, 0.03), "n_salient": 0}


def sample_one(name: str, views: str, out: str, image_size: int, seed: int, preprocess: dict | None = None) -> dict:
    """Preprocess and pack one asset; never raises (a failure comes back as a record)."""
    import time
    import traceback

    from backend.preprocess import preprocess_mesh
    from training.dataset import pack_asset

    t = time.perf_counter()
    try:
        sdf_dir = Path(out) / "sdf"
        sdf = sdf_dir / f"{name}.npz"
        if not sdf.is_file():
            preprocess_mesh(Path(views) / name / "mesh.glb", sdf_dir, name=name, seed=seed,
                            **(PREPROCESS if preprocess is None else preprocess))
        sizes = pack_asset(Path(views) / name, sdf, Path(out) / f"packs-{image_size}" / f"{name}.npz",
                           image_size=image_size, seed=seed)
        return {"name": name, "ok": True, "seconds": round(time.perf_counter() - t, 2), **sizes}
    except Exception as exc:  # one broken asset must not stop the run
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=-3)}


def make_samples(corpus: Path, views: Path, out: Path, *, workers: int = 1, image_size: int = 128,
                 seed: int = 0, preprocess: dict | None = None) -> dict:
    """SDF samples and packs for every rendered asset of the corpus (resumable); writes ``index.jsonl``."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    corpus, views, out = Path(corpus), Path(views), Path(out)
    named = render_names(corpus, read_manifest(corpus))
    rendered = {n: a for n, a in named.items() if (views / n / "cameras.json").is_file()}
    packs = out / f"packs-{image_size}"
    from training.dataset import PACK_VERSION, pack_version

    # Missing packs, and packs of an older version (made again from the kept SDF samples).
    todo = [n for n in sorted(rendered) if pack_version(packs / f"{n}.npz") < PACK_VERSION]
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    with tqdm(total=len(rendered), initial=len(rendered) - len(todo), unit="asset", desc="samples") as bar:
        if workers <= 1:
            results = (sample_one(n, str(views), str(out), image_size, seed, preprocess) for n in todo)
            for rec in results:
                bar.update(1)
                failures += [] if rec["ok"] else [rec]
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(sample_one, n, str(views), str(out), image_size, seed, preprocess) for n in todo]
                for fut in as_completed(futures):
                    rec = fut.result()
                    bar.update(1)
                    if not rec["ok"]:
                        failures.append(rec)
                        bar.write(f"failed: {rec['name']}: {rec['error']}")
    lines = [json.dumps({"name": n, "split": a.split, "asset": asdict(a)}, ensure_ascii=False)
             for n, a in sorted(rendered.items()) if (packs / f"{n}.npz").is_file()]
    (out / "index.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (out / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures), encoding="utf-8")
    return {"rendered": len(rendered), "corpus": len(named), "packed": len(lines), "failed": len(failures)}


def meshlm_one(name: str, path: str, out: str, caption: str, max_faces: int, mode: str, seed: int) -> dict:
    """One asset's mesh-LM pack; never raises (a failure comes back as a record)."""
    import time
    import traceback

    from training.mesh_corpus import make_pack

    t = time.perf_counter()
    try:
        facts = make_pack(Path(path), Path(out) / "packs" / f"{name}.npz", caption=caption, max_faces=max_faces,
                          mode=mode, seed=seed)
        return {"name": name, "ok": True, "seconds": round(time.perf_counter() - t, 2), **facts}
    except Exception as exc:  # one broken asset must not stop the run
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=-3)}


def make_meshlm(corpus: Path, out: Path, *, workers: int = 1, max_faces: int = 800, mode: str = "triangles",
                seed: int = 0) -> dict:
    """Mesh-LM packs (:func:`training.mesh_corpus.make_pack`) of every asset of a corpus (resumable);
    writes ``index.jsonl`` (name, split, caption, faces, tokens, whether the artist topology was kept)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    from training.mesh_corpus import caption_of

    corpus, out = Path(corpus), Path(out)
    assets = {a.id.replace("/", "__"): a for a in read_manifest(corpus)}
    out.mkdir(parents=True, exist_ok=True)
    facts_file = out / "facts.jsonl"
    done = {}
    if facts_file.is_file():
        for line in facts_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if (out / "packs" / f"{rec['name']}.npz").is_file():
                    done[rec["name"]] = rec
    todo = [n for n in sorted(assets) if n not in done]
    jobs = [(n, str(corpus / assets[n].path), str(out), caption_of(assets[n]), max_faces, mode, seed) for n in todo]
    failures = []
    with tqdm(total=len(assets), initial=len(done), unit="asset", desc="meshlm") as bar, \
            open(facts_file, "a", encoding="utf-8") as facts:
        def record(rec):
            bar.update(1)
            if rec["ok"]:
                done[rec["name"]] = rec
                facts.write(json.dumps(rec) + "\n")
                facts.flush()
            else:
                failures.append(rec)
                bar.write(f"failed: {rec['name']}: {rec['error']}")

        if workers <= 1:
            for job in jobs:
                record(meshlm_one(*job))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for fut in as_completed([pool.submit(meshlm_one, *job) for job in jobs]):
                    record(fut.result())
    rows = [{"name": n, "split": assets[n].split, "caption": caption_of(assets[n]),
             **{k: done[n][k] for k in ("faces", "quads", "tokens", "kept_topology", "source_faces")}}
            for n in sorted(done) if n in assets]
    (out / "index.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (out / "failures.jsonl").write_text("".join(json.dumps(f) + "\n" for f in failures), encoding="utf-8")
    return {"assets": len(assets), "packed": len(rows), "failed": len(failures),
            "kept_topology": sum(r["kept_topology"] for r in rows)}


def read_index(train_dir: Path, split: str | None = None) -> list[dict]:
    """The packed assets of a ``samples`` folder (optionally of one split)."""
    lines = (Path(train_dir) / "index.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("furniture", help="Sweet Home 3D's furniture catalogues (Debian's sweethome3d-furniture)")
    f.add_argument("--deb", type=Path, required=True, help="the .deb file, or a folder holding .sh3f catalogues")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed (default 0)")
    d = sub.add_parser("folder", help="any folder of meshes")
    d.add_argument("folder", type=Path)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--licence", default="", help="licence of every mesh in it")
    d.add_argument("--credit", default="", help="who made them")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p = sub.add_parser("shapes", help="procedural shapes (training.shapes) as a corpus")
    p.add_argument("--count", type=int, default=240)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    v = sub.add_parser("views", help="render every asset of a corpus (render.dataset; resumable)")
    v.add_argument("corpus", type=Path)
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--workers", type=int, default=1)
    v.add_argument("--ray-address", default=None)
    v.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (default 8)")
    s = sub.add_parser("samples", help="SDF samples (backend preprocess) and packs of the rendered assets")
    s.add_argument("corpus", type=Path)
    s.add_argument("--views", type=Path, required=True, help="the folder `views` rendered into")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--image-size", type=int, default=128, help="pixels a side of the packed views (default 128)")
    s.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("meshlm", help="mesh-LM packs: tokens of each asset at a face budget, points, caption")
    m.add_argument("corpus", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--workers", type=int, default=1)
    m.add_argument("--max-faces", type=int, default=800, help="face budget; larger meshes are reduced (default 800)")
    m.add_argument("--mode", default="triangles", choices=("triangles", "quad_dominant"),
                   help="how a mesh over budget is reduced (default triangles: edge collapses)")
    m.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "meshlm":
        result = make_meshlm(args.corpus, args.out, workers=args.workers, max_faces=args.max_faces, mode=args.mode,
                             seed=args.seed)
        print(f"{result['packed']} of {result['assets']} assets packed ({result['kept_topology']} kept their own "
              f"topology at <= {args.max_faces} faces; {result['failed']} failed); {args.out / 'index.jsonl'}")
        return 3 if result["failed"] else 0
    if args.command == "views":
        result = render_views(args.corpus, args.out, workers=args.workers, ray_address=args.ray_address,
                              samples=args.samples)
        print(f"{result['assets']} assets: {result['rendered']} rendered, {result['skipped']} already done, "
              f"{result['failed']} failed; {args.out / 'manifest.jsonl'}")
        return 3 if result["failed"] else 0
    if args.command == "samples":
        result = make_samples(args.corpus, args.views, args.out, workers=args.workers, image_size=args.image_size,
                              seed=args.seed)
        print(f"{result['packed']} of {result['corpus']} assets packed ({result['rendered']} rendered, "
              f"{result['failed']} failed); {args.out / 'index.jsonl'}")
        return 3 if result["failed"] else 0
    if args.command == "shapes":
        from training.shapes import make_shapes

        make_shapes(args.out, args.count, seed=args.seed)
        assets = from_folder(args.out / "meshes", args.out, licence="CC0", credit="Meshsmith procedural shapes",
                             seed=args.seed)
        print(f"{args.out / 'manifest.jsonl'}: {summary(assets)}")
        return 0
    if args.command == "furniture":
        assets = furniture(args.deb, args.out, seed=args.seed)
    else:
        assets = from_folder(args.folder, args.out, licence=args.licence, credit=args.credit, seed=args.seed)
    print(f"{args.out / 'manifest.jsonl'}: {summary(assets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
