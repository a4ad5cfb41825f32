"""Build Meshsmith's Blender extension zips with Blender's own tool and validate them.

    python scripts/build_extension.py [--output-dir DIR]        # the add-on alone (development)
    python scripts/build_extension.py --dist [--output-dir dist] [--platforms linux-x64 ...] [--pythons 3.11 3.13]

**The add-on alone** is what the tests, the demo and the field test install: it talks to a
backend run from a checkout's environment (``MESHSMITH_BACKEND_PYTHON`` or the preferences).

**``--dist``** (``make dist``) builds what an artist downloads: one zip per platform and
Blender Python, self-contained. Each holds the add-on, the backend with ``render/`` and
``training/`` (code and shipped weights) under ``bundled/``, the compiled kernels where they
can be built here (Linux, with the flags of pyproject.toml's ``[tool.meshsmith]``, as
``setup.py``), and the wheels of ``requirements-extension.txt`` for its platform and Python,
which Blender installs from the zip; that file itself goes next to the manifest, as the pins
Install Model Support holds pip to (``addon/model_support.py``). The backend then runs on
Blender's own Python. Blender 4.2-5.0 run Python 3.11 and 5.1 on 3.13, so each Python gets its own zips
with that Blender range in the manifest (Blender refuses a zip outside its range, instead of
installing wheels that cannot load). Each (platform, Python) pair is staged and built on its
own, which is what ``blender_ext.py build --split-platforms`` does with wheels, and also keeps
the compiled kernels out of the other platforms' zips. Wheels are downloaded by pip (``--only-binary``, the
exact pins) into ``build/wheels/`` and reused. The zips are built in a temporary folder next to
the output folder and replace the previous ones there only when every one is built.

Blender wants the add-on's ``__init__.py`` next to ``blender_manifest.toml`` at the root of
the zip, and this repository keeps the code in ``addon/``; so everything is staged into a
temporary folder and ``blender_ext.py build`` runs on that; every zip is then checked by ``blender_ext.py validate``. ``blender_ext.py`` ships inside
the ``bpy`` package (``bpy/<version>/scripts/addons_core/bl_pkg/cli/``) and runs with plain
Python. Prints each zip's path (and, for ``--dist``, its size); exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO / "addon"
MANIFEST = REPO / "blender_manifest.toml"
PYPROJECT = REPO / "pyproject.toml"
WHEEL_REQUIREMENTS = REPO / "requirements-extension.txt"
WHEEL_CACHE = REPO / "build" / "wheels"
_CLI_GLOB = "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
_TAGS = Path("scripts/modules/_bpy_internal/extensions/tags.py")

#: Packages of this repository the bundled backend imports, and what of them is left out.
BUNDLED_PACKAGES = ("backend", "render", "training")
BUNDLE_IGNORE = ("__pycache__", "*.pyc", ".*", "*.so", "*.pyd", "checkpoints", "_native.c")
#: What ``--dist`` writes (and replaces) in the output folder.
DIST_GLOB = "meshsmith-*-blender*.zip"


@dataclass(frozen=True)
class Platform:
    """A Blender platform name and what pip and ``packaging`` markers call it."""

    name: str                       # Blender's: linux-x64, windows-x64, macos-arm64, macos-x64
    pip_tags: tuple[str, ...]       # pip download --platform values, best first
    system: str                     # platform.system()
    machine: str                    # platform.machine()
    sys_platform: str


PLATFORMS = {
    p.name: p for p in (
        Platform("linux-x64", ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                               "manylinux2014_x86_64"), "Linux", "x86_64", "linux"),
        Platform("windows-x64", ("win_amd64",), "Windows", "AMD64", "win32"),
        Platform("macos-arm64", ("macosx_12_0_arm64", "macosx_11_0_arm64", "macosx_10_9_universal2"),
                 "Darwin", "arm64", "darwin"),
        Platform("macos-x64", ("macosx_11_0_x86_64", "macosx_10_13_x86_64", "macosx_10_9_x86_64",
                               "macosx_10_9_universal2"), "Darwin", "x86_64", "darwin"),
    )
}


@dataclass(frozen=True)
class BlenderPython:
    """A Python version Blender bundles, and the Blender versions that bundle it."""

    version: str                    # "3.11"
    blender_min: str                # first Blender with it
    blender_max: str | None         # first Blender without it (manifest's exclusive maximum)
    label: str                      # in the zip's name
    platforms: tuple[str, ...]      # where those Blenders are built


PYTHONS = {
    "3.11": BlenderPython("3.11", "4.2.0", "5.1.0", "blender4.2-5.0", tuple(PLATFORMS)),
    # Blender 5 is built for Apple silicon only: no Intel Mac zip.
    "3.13": BlenderPython("3.13", "5.1.0", None, "blender5.1", ("linux-x64", "windows-x64", "macos-arm64")),
}


# -- Blender's tool ---------------------------------------------------------------------------


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


def run_cli(blender_ext: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)


def _build_and_validate(blender_ext: Path, source: Path, output_dir: Path) -> Path:
    """The one zip ``blender_ext.py build`` makes of ``source``, validated."""
    tags = valid_tags_file(blender_ext)
    tag_args = [f"--valid-tags={tags}"] if tags else []
    done = run_cli(blender_ext, "build", "--source-dir", str(source), "--output-dir", str(output_dir), *tag_args)
    if done.returncode != 0:
        raise SystemExit(f"error: blender_ext build failed:\n{done.stdout}{done.stderr}")
    zips = [Path(line.split('"')[1]).resolve() for line in done.stdout.splitlines() if line.startswith("created:")]
    if len(zips) != 1:
        raise SystemExit(f"error: blender_ext build did not say it created one zip:\n{done.stdout}")
    checked = run_cli(blender_ext, "validate", str(zips[0]), *tag_args)
    if checked.returncode != 0 or "Success" not in checked.stdout:
        raise SystemExit(f"error: {zips[0]} failed validation:\n{checked.stdout}{checked.stderr}")
    return zips[0]


# -- the add-on alone -------------------------------------------------------------------------


def stage(target: Path, manifest: str | None = None) -> None:
    """Copy the add-on package and the manifest into ``target`` (the zip's root)."""
    shutil.copytree(ADDON_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"), dirs_exist_ok=True)
    (target / MANIFEST.name).write_text(manifest if manifest is not None else MANIFEST.read_text(encoding="utf-8"),
                                        encoding="utf-8")


def build(output_dir: Path, blender_ext: Path) -> Path:
    """Build and validate the add-on-only zip in ``output_dir``; return its path. Raises SystemExit on failure."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshsmith-stage-") as tmp:
        source = Path(tmp) / "meshsmith"
        stage(source)
        return _build_and_validate(blender_ext, source, output_dir)


# -- self-contained zips ----------------------------------------------------------------------


def wheel_requirements(platform: Platform, python: str) -> list[str]:
    """The ``name==version`` pins of requirements-extension.txt whose markers hold for the target."""
    from packaging.requirements import Requirement

    environment = {"platform_system": platform.system, "platform_machine": platform.machine,
                   "sys_platform": platform.sys_platform, "python_version": python,
                   "python_full_version": python + ".0", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "nt" if platform.system == "Windows" else "posix"}
    pins = []
    for line in WHEEL_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            pins.append(f"{requirement.name}{requirement.specifier}")
    return pins


def download_wheels(platform: Platform, python: str, cache: Path = WHEEL_CACHE) -> list[Path]:
    """The wheels of the target (downloaded by pip once, then reused from ``cache``)."""
    folder = cache / f"{platform.name}-py{python}"
    folder.mkdir(parents=True, exist_ok=True)
    # pip ranks the --platform tags in the order given: best first, as pip_tags lists them.
    options = ["--quiet", "--no-deps", "--only-binary=:all:",
               *(arg for tag in platform.pip_tags for arg in ("--platform", tag)),
               "--python-version", python, "--implementation", "cp",
               "--abi", "cp" + python.replace(".", ""), "--abi", "abi3", "--abi", "none", "--dest", str(folder)]
    wheels = []
    for pin in wheel_requirements(platform, python):
        name, version = pin.split("==")
        found = _cached_wheel(folder, name, version)
        if found is None:
            done = subprocess.run([sys.executable, "-m", "pip", "download", *options, pin], capture_output=True,
                                  text=True)
            found = _cached_wheel(folder, name, version)
            if done.returncode != 0 or found is None:
                raise SystemExit(f"error: no wheel of {pin} for {platform.name} / Python {python}:\n"
                                 f"{done.stdout}{done.stderr}")
        wheels.append(found)
    return wheels


def _cached_wheel(folder: Path, name: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    for path in sorted(folder.glob("*.whl")):
        parts = path.name.split("-")
        if re.sub(r"[-_.]+", "_", parts[0]).lower() == stem and parts[1] == version:
            return path
    return None


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` that runs (this one, then PATH, then pyenv's), for compiling kernels."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python3"))]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += [str(p) for p in sorted(Path(root).glob(f"versions/{version}.*/bin/python3"))] if root else []
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def native_compile_args() -> list[str]:
    """The kernels' compile flags: ``[tool.meshsmith] native-compile-args`` of pyproject.toml, which setup.py uses too."""
    return list(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["meshsmith"]["native-compile-args"])


def build_native(python: str, out_dir: Path) -> Path | None:
    """``backend/mesh/_native.c`` compiled for the interpreter ``python`` (this machine's platform);
    None, with the reason printed, when it cannot be (no such Python, no compiler, no headers)."""
    query = ("import sysconfig, json; print(json.dumps([sysconfig.get_paths()['include'], "
             "sysconfig.get_config_var('EXT_SUFFIX')]))")
    info = subprocess.run([python, "-c", query], capture_output=True, text=True)
    if info.returncode != 0:
        print(f"note: {python} did not run; no compiled kernels for it", file=sys.stderr)
        return None
    include, suffix = json.loads(info.stdout)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not (Path(include) / "Python.h").is_file():
        print(f"note: no C compiler or no Python.h for {python}; its zips run the numpy kernels", file=sys.stderr)
        return None
    target = out_dir / f"_native{suffix}"
    done = subprocess.run([compiler, *native_compile_args(), "-fPIC", "-shared", f"-I{include}",
                           str(REPO / "backend" / "mesh" / "_native.c"), "-o", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"note: compiling the kernels for {python} failed; its zips run the numpy kernels:\n{done.stderr}",
              file=sys.stderr)
        return None
    return target


def dist_manifest(python: BlenderPython, platform: str, wheels: list[str]) -> str:
    """The repository's manifest with this build's Blender range, platform and wheels."""
    text = MANIFEST.read_text(encoding="utf-8")
    extra = f'blender_version_min = "{python.blender_min}"\n'
    if python.blender_max:
        extra += f'blender_version_max = "{python.blender_max}"\n'
    extra += f'platforms = ["{platform}"]\n'
    extra += "wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]\n"
    text, count = re.subn(r'^blender_version_min = "[^"]*"\n', extra, text, flags=re.M)
    if count != 1:
        raise SystemExit("error: blender_manifest.toml has no blender_version_min line to replace")
    return text


def stage_bundle(target: Path, python: BlenderPython, platform: Platform, native: Path | None) -> None:
    """The zip's root for one (platform, Python): add-on, bundled packages, kernels, wheels, and
    the pins those wheels come from (Install Model Support's pip constraints)."""
    wheels = download_wheels(platform, python.version)
    stage(target, dist_manifest(python, platform.name, sorted(w.name for w in wheels)))
    shutil.copy2(WHEEL_REQUIREMENTS, target / WHEEL_REQUIREMENTS.name)
    bundled = target / "bundled"
    for package in BUNDLED_PACKAGES:
        shutil.copytree(REPO / package, bundled / package, ignore=shutil.ignore_patterns(*BUNDLE_IGNORE))
    if native is not None:
        shutil.copy2(native, bundled / "backend" / "mesh" / native.name)
    (target / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, target / "wheels" / wheel.name)


def build_dist(output_dir: Path, blender_ext: Path, platforms: list[str], pythons: list[str]) -> list[Path]:
    """Every (platform, Python) zip into ``output_dir``; returns their paths.

    Each is staged and built on its own (``platforms`` in its manifest names one platform), so
    the Linux kernels and each platform's wheels go into that platform's zips only. They are
    built into a temporary folder next to ``output_dir``; only when all are built do they
    replace the zips of a previous ``--dist`` there (maybe of other pins or platforms), so a
    failed build leaves ``output_dir`` as it was.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-building-", dir=output_dir.parent))
    try:
        built = []
        for version in pythons:
            python = PYTHONS[version]
            for name in (p for p in platforms if p in python.platforms):
                built.append(_build_one(blender_ext, python, PLATFORMS[name], building))
        output_dir.mkdir(exist_ok=True)
        placed = []
        for path in built:
            placed.append(output_dir / path.name)
            os.replace(path, placed[-1])
        for old in set(output_dir.glob(DIST_GLOB)) - set(placed):
            old.unlink()
        return placed
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _build_one(blender_ext: Path, python: BlenderPython, platform: Platform, output_dir: Path) -> Path:
    """The zip of one (platform, Python), staged and built in a temporary folder, moved to ``output_dir``."""
    with tempfile.TemporaryDirectory(prefix="meshsmith-dist-") as tmp:
        native = None
        if platform.name == "linux-x64" and sys.platform == "linux":
            interpreter = find_python(python.version)
            native = build_native(interpreter, Path(tmp)) if interpreter else None
            if interpreter is None:
                print(f"note: no Python {python.version} here; its linux zip runs the numpy kernels", file=sys.stderr)
        source = Path(tmp) / "meshsmith"
        stage_bundle(source, python, platform, native)
        (Path(tmp) / "out").mkdir()
        zip_path = _build_and_validate(blender_ext, source, Path(tmp) / "out")
        named = output_dir / zip_path.name.replace(".zip", f"-{platform.name.replace('-', '_')}-{python.label}.zip")
        shutil.move(zip_path, named)
        return named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="where the zips go (default: dist/)")
    parser.add_argument("--blender-ext", type=Path, help="Blender's blender_ext.py (default: from the installed bpy)")
    parser.add_argument("--dist", action="store_true", help="self-contained zips per platform and Blender Python")
    parser.add_argument("--platforms", nargs="+", default=list(PLATFORMS), choices=list(PLATFORMS))
    parser.add_argument("--pythons", nargs="+", default=list(PYTHONS), choices=list(PYTHONS))
    args = parser.parse_args(argv)
    blender_ext = args.blender_ext or find_blender_ext()
    if not args.dist:
        print(build(args.output_dir.resolve(), blender_ext))
        return 0
    for path in build_dist(args.output_dir.resolve(), blender_ext, args.platforms, args.pythons):
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
