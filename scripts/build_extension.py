"""Build the Meshsmith Blender extension zip with Blender's own tool and validate it.

    python scripts/build_extension.py [--output-dir dist] [--blender-ext PATH]

Blender wants the add-on's ``__init__.py`` next to ``blender_manifest.toml`` at the root of
the zip, and this repository keeps the code in ``addon/``; so ``addon/`` and the manifest are
staged into a temporary folder and ``blender_ext.py build`` runs on that. ``blender_ext.py``
ships inside the ``bpy`` package (``bpy/<version>/scripts/addons_core/bl_pkg/cli/``) and runs
with plain Python. Prints the zip's path; exits non-zero when building or validating fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO / "addon"
MANIFEST = REPO / "blender_manifest.toml"
_CLI_GLOB = "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
_TAGS = Path("scripts/modules/_bpy_internal/extensions/tags.py")


def find_blender_ext() -> Path:
    """``blender_ext.py`` of the ``bpy`` package installed in this interpreter (newest version)."""
    spec = importlib.util.find_spec("bpy")  # finds the package without importing Blender
    if spec is None or spec.origin is None:
        raise SystemExit("error: the bpy package is not installed here; pass --blender-ext PATH/TO/blender_ext.py")
    found = sorted(Path(spec.origin).parent.glob(_CLI_GLOB))
    if not found:
        raise SystemExit(f"error: no {_CLI_GLOB} under {Path(spec.origin).parent}; pass --blender-ext")
    return found[-1]


def valid_tags_file(blender_ext: Path) -> Path | None:
    """Blender's tag list, which ``blender --command extension build`` enforces; None if absent."""
    version_dir = blender_ext.parents[4]  # bpy/<version>/
    tags = version_dir / _TAGS
    return tags if tags.is_file() else None


def stage(target: Path) -> None:
    """Copy the add-on package and the manifest into ``target`` (the zip's root)."""
    shutil.copytree(ADDON_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"), dirs_exist_ok=True)
    shutil.copy2(MANIFEST, target / MANIFEST.name)


def run_cli(blender_ext: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)


def build(output_dir: Path, blender_ext: Path) -> Path:
    """Build and validate the zip in ``output_dir``; return its path. Raises SystemExit on failure."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tags = valid_tags_file(blender_ext)
    tag_args = [f"--valid-tags={tags}"] if tags else []
    with tempfile.TemporaryDirectory(prefix="meshsmith-stage-") as tmp:
        source = Path(tmp) / "meshsmith"
        stage(source)
        done = run_cli(
            blender_ext, "build", "--source-dir", str(source), "--output-dir", str(output_dir), *tag_args
        )
        if done.returncode != 0:
            raise SystemExit(f"error: blender_ext build failed:\n{done.stdout}{done.stderr}")
    zips = [line.split('"')[1] for line in done.stdout.splitlines() if line.startswith("created:")]
    if not zips:
        raise SystemExit(f"error: blender_ext build did not say what it created:\n{done.stdout}")
    zip_path = Path(zips[-1]).resolve()
    checked = run_cli(blender_ext, "validate", str(zip_path), *tag_args)
    if checked.returncode != 0 or "Success" not in checked.stdout:
        raise SystemExit(f"error: {zip_path} failed validation:\n{checked.stdout}{checked.stderr}")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="where the zip goes (default: dist/)")
    parser.add_argument("--blender-ext", type=Path, help="Blender's blender_ext.py (default: from the installed bpy)")
    args = parser.parse_args(argv)
    blender_ext = args.blender_ext or find_blender_ext()
    print(build(args.output_dir.resolve(), blender_ext))
    return 0


if __name__ == "__main__":
    sys.exit(main())
