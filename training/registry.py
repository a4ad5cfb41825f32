"""Where weights come from: one registry for every learned pipeline.

A *spec* names a checkpoint folder (``config.json`` + ``model.safetensors``, as
:mod:`training.train` writes them):

- ``None`` or ``"default"``: the weights shipped in this repository for that model
  (:data:`SHIPPED`), when present;
- a local path to such a folder;
- a Hugging Face Hub repo id, ``owner/name`` or ``owner/name@revision``: downloaded once by
  ``huggingface_hub`` into its cache, then used from there, offline included
  (``HF_HUB_OFFLINE=1`` never touches the network).

    python -m training.registry show SPEC
    python -m training.registry push FOLDER --repo owner/name [--private]   # needs a token; never run by tests
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: Weights shipped in the repository, by model kind.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"views": WEIGHTS_DIR / "views-cpu", "mesh_lm": WEIGHTS_DIR / "mesh-lm-cpu"}
#: Files a checkpoint folder needs, and what a hub download fetches.
FILES = ("config.json", "model.safetensors")
HUB_PATTERNS = ["config.json", "model.safetensors", "README.md", "*.png"]


class WeightsNotFound(ValueError):
    """No weights where the spec points; the message says what to do."""


def resolve(spec: str | os.PathLike | None, kind: str = "views") -> Path:
    """The local checkpoint folder of ``spec`` (downloading a hub repo into the cache if needed)."""
    if spec in (None, "", "default"):
        folder = SHIPPED.get(kind)
        if folder is None or not _complete(folder):
            raise WeightsNotFound(f"no {kind} weights are shipped with this copy of Meshsmith (looked in "
                                  f"{folder}); train them (python -m training.train) or name a folder or hub repo")
        return folder
    path = Path(os.path.expanduser(str(spec)))
    if path.exists():
        if not _complete(path):
            raise WeightsNotFound(f"{path} is not a checkpoint folder: it needs {' and '.join(FILES)}")
        return path
    text = str(spec)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise WeightsNotFound(f"weights {text!r}: no such folder, and not a hub repo id (owner/name)")
    return _from_hub(text)


def _complete(folder: Path) -> bool:
    return all((Path(folder) / f).is_file() for f in FILES)


def _from_hub(text: str) -> Path:
    from huggingface_hub import snapshot_download

    repo, _, revision = text.partition("@")
    try:   # the cache first: works offline and costs no request
        return Path(snapshot_download(repo, revision=revision or None, allow_patterns=HUB_PATTERNS,
                                      local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise WeightsNotFound(f"weights {text!r} are not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                              f"download them once while online")
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        raise WeightsNotFound(f"could not fetch weights {text!r} from the Hugging Face Hub: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not _complete(folder):
        raise WeightsNotFound(f"hub repo {text!r} has no {' and '.join(FILES)} at its top level")
    return folder


_LOADED: dict[tuple[str, str], object] = {}


def load_views_model(spec: str | os.PathLike | None = None, device: str = "cpu"):
    """The views-to-mesh model of ``spec`` (cached per process) and its checkpoint record."""
    from training.train import load_model

    folder = resolve(spec, "views").resolve()
    key = (str(folder), device)
    if key not in _LOADED:
        _LOADED[key] = load_model(folder, device, architecture="ViewsToSDF")
    return _LOADED[key]


def load_mesh_lm(spec: str | os.PathLike | None = None, device: str = "cpu"):
    """The mesh language model of ``spec`` (cached per process) and its checkpoint record."""
    from training.train import load_model

    folder = resolve(spec, "mesh_lm").resolve()
    key = (str(folder), device)
    if key not in _LOADED:
        _LOADED[key] = load_model(folder, device, architecture="MeshLM")
    return _LOADED[key]


def push(folder: Path, repo: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a checkpoint folder (weights, config, model card, pictures) to the hub; returns the repo URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not _complete(folder):
        raise WeightsNotFound(f"{folder} is not a checkpoint folder: it needs {' and '.join(FILES)}")
    api = HfApi(token=token)
    url = api.create_repo(repo, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(folder), allow_patterns=HUB_PATTERNS,
                      commit_message="Meshsmith weights")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.registry", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="where a spec's weights are, and what they are")
    s.add_argument("spec", nargs="?", default=None)
    p = sub.add_parser("push", help="upload a checkpoint folder to the Hugging Face Hub")
    p.add_argument("folder", type=Path)
    p.add_argument("--repo", required=True)
    p.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            import json

            folder = resolve(args.spec)
            record = json.loads((folder / "config.json").read_text())
            print(f"{folder}\n  architecture {record.get('architecture')}, step {record.get('step')}, "
                  f"model {json.dumps(record.get('model'))}")
        else:
            print(push(args.folder, args.repo, private=args.private))
    except WeightsNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
