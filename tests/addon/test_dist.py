"""The self-contained extension zips of ``make dist``, as an artist gets them.

``make dist`` (``scripts/build_extension.py --dist``) writes them to ``dist/``; these tests read
what is there. Without zips they skip, unless ``MESHSMITH_EXPECT_DIST=1`` (CI builds them first)
says they must be there; only then must every platform's be there (``--platforms`` may build
fewer).

- Every zip: its manifest names one platform and the Blender range of its Python; every wheel
  it lists is in it, and every wheel's tags fit that platform and Python; every pin of
  ``requirements-extension.txt`` that applies is there, and that file itself (Install Model
  Support's pip constraints); the bundled backend is there; it is under 100 MB.
- In a fresh environment that holds only ``bpy`` (this test's Blender version), the Linux zip
  installs, Start Backend runs the backend it carries on Blender's Python, and Watertight,
  Artist, Texture and From Views (visual hull) bring results into the scene
  (``scripts/field_test.py --zip``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from addon.model_support import CONSTRAINTS_NAME

from .conftest import REPO

DIST = REPO / "dist"
EXPECT_DIST = os.environ.get("MESHSMITH_EXPECT_DIST") == "1"
ZIP_NAME = re.compile(r"meshsmith-(?P<version>[\d.]+)-(?P<platform>[a-z0-9_]+)-(?P<label>blender[\d.+-]+)\.zip")
#: Blender range and Python per zip label (scripts/build_extension.py's PYTHONS).
LABELS = {"blender4.2-5.0": ("3.11", "4.2.0", "5.1.0"), "blender5.1": ("3.13", "5.1.0", None)}
PLATFORM_TAGS = {
    "linux-x64": re.compile(r"(many)?linux(_\d+_\d+|1|2010|2014)?_x86_64"),
    "windows-x64": re.compile(r"win_amd64"),
    "macos-arm64": re.compile(r"macosx_\d+_\d+_(arm64|universal2)"),
    "macos-x64": re.compile(r"macosx_\d+_\d+_(x86_64|universal2)"),
}
MAX_BYTES = 100 * 10**6


def _zips() -> list[Path]:
    found = sorted(p for p in DIST.glob("meshsmith-*.zip") if ZIP_NAME.fullmatch(p.name))
    if not found:
        if EXPECT_DIST:
            pytest.fail("MESHSMITH_EXPECT_DIST=1 but dist/ has no zips: run `make dist` first")
        pytest.skip("no zips in dist/ (make dist builds them)")
    return found


def _wheel_tags(filename: str) -> tuple[str, str, set[str], set[str], set[str]]:
    """(name, version, python tags, abi tags, platform tags) of a wheel's file name (PEP 427)."""
    parts = filename[: -len(".whl")].split("-")
    assert len(parts) in (5, 6), filename
    name, version, python, abi, plat = parts[0], parts[1], parts[-3], parts[-2], parts[-1]
    return name, version, set(python.split(".")), set(abi.split(".")), set(plat.split("."))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pins(platform: str, python: str) -> dict[str, str]:
    """requirements-extension.txt's pins whose markers hold for the target, by normalized name."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    try:
        pins = build_extension.wheel_requirements(build_extension.PLATFORMS[platform], python)
    except ModuleNotFoundError as exc:        # `packaging` parses the markers; .venv has it
        pytest.skip(f"cannot read the markers here: {exc}")
    return {_normal(p.split("==")[0]): p.split("==")[1] for p in pins}


def test_make_dist_built_a_zip_for_every_platform_of_every_blender_python():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    version = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]
    expected = {f"meshsmith-{version}-{platform.replace('-', '_')}-{python.label}.zip"
                for python in build_extension.PYTHONS.values() for platform in python.platforms}
    assert len(expected) == 7                     # 4 platforms for Blender 4.2-5.0, 3 for 5.1+ (no Intel Macs)
    found = {p.name for p in _zips()}
    assert found <= expected, f"zips of another version or platform in dist/: {sorted(found - expected)}"
    if not EXPECT_DIST and found != expected:
        pytest.skip(f"dist/ holds {len(found)} of the {len(expected)} zips (MESHSMITH_EXPECT_DIST=1 demands all)")
    assert found == expected


@pytest.mark.parametrize("zip_path", _zips() if DIST.is_dir() and any(DIST.glob("meshsmith-*.zip")) else [None],
                         ids=lambda p: p.name if p else "none")
def test_each_zip_carries_what_its_platform_and_python_need(zip_path):
    if zip_path is None:
        _zips()                               # skips, or fails under MESHSMITH_EXPECT_DIST=1
    match = ZIP_NAME.fullmatch(zip_path.name)
    platform = match["platform"].replace("_", "-")
    python, blender_min, blender_max = LABELS[match["label"]]
    cp = "cp" + python.replace(".", "")
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode("utf-8"))
        constraints = z.read(CONSTRAINTS_NAME).decode("utf-8") if CONSTRAINTS_NAME in names else None
    size = zip_path.stat().st_size
    print(f"{zip_path.name}: {size / 1e6:.1f} MB, {len(manifest['wheels'])} wheels")
    assert size < MAX_BYTES
    assert manifest["platforms"] == [platform]
    assert manifest["blender_version_min"] == blender_min
    assert manifest.get("blender_version_max") == blender_max
    assert "bundled/backend/__main__.py" in names and "__init__.py" in names
    # Next to __init__.py, where addon/model_support.py looks for the pins it holds pip to.
    assert constraints == (REPO / "requirements-extension.txt").read_text(encoding="utf-8")
    carried = {}
    for entry in manifest["wheels"]:
        path = entry.removeprefix("./")
        assert path in names, f"{entry} is listed but not in the zip"
        name, version, pythons, abis, plats = _wheel_tags(Path(path).name)
        assert pythons & {cp, "py3", "py2"}, f"{path}: not for Python {python}"
        assert abis & {cp, "abi3", "none"}, f"{path}: ABI not for Python {python}"
        assert plats == {"any"} or any(PLATFORM_TAGS[platform].fullmatch(t) for t in plats), \
            f"{path}: not for {platform}"
        carried[_normal(name)] = version
    assert carried == _pins(platform, python)
    assert "numpy" not in carried                # Blender's own numpy is used
    kernels = [n for n in names if re.fullmatch(r"bundled/backend/mesh/_native\..*(\.so|\.pyd)", n)]
    if platform == "linux-x64":
        assert kernels == [f"bundled/backend/mesh/_native.cpython-{cp[2:]}-x86_64-linux-gnu.so"]
    else:
        assert kernels == []


# -- scripts/build_extension.py's own steps (no zips needed) ------------------------------------


def _build_extension():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    return build_extension


def test_pip_gets_the_platform_tags_best_first(tmp_path, monkeypatch):
    build_extension = _build_extension()
    pytest.importorskip("packaging")
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", "no network here")

    monkeypatch.setattr(build_extension.subprocess, "run", run)
    platform = build_extension.PLATFORMS["linux-x64"]
    with pytest.raises(SystemExit):
        build_extension.download_wheels(platform, "3.11", cache=tmp_path)
    command = commands[0]
    assert tuple(command[i + 1] for i, arg in enumerate(command) if arg == "--platform") == platform.pip_tags


def test_a_failed_dist_build_leaves_the_previous_zips_and_a_good_one_replaces_them(tmp_path, monkeypatch):
    build_extension = _build_extension()
    out = tmp_path / "dist"
    out.mkdir()
    previous = {"meshsmith-0.1.0-linux_x64-blender5.1.zip": b"previous", "meshsmith-0.0.9-macos_x64-blender4.2-5.0.zip": b"old"}
    for name, data in previous.items():
        (out / name).write_bytes(data)
    built = []

    def build_one(blender_ext, python, platform, output_dir):
        if fail and built:
            raise SystemExit("error: blender_ext build failed")
        path = output_dir / f"meshsmith-0.1.0-{platform.name.replace('-', '_')}-{python.label}.zip"
        path.write_bytes(b"new")
        built.append(path)
        return path

    monkeypatch.setattr(build_extension, "_build_one", build_one)
    fail = True
    with pytest.raises(SystemExit):
        build_extension.build_dist(out, Path("blender_ext.py"), ["linux-x64", "windows-x64"], ["3.13"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]          # the building folder is gone
    fail = False
    placed = build_extension.build_dist(out, Path("blender_ext.py"), ["linux-x64", "windows-x64"], ["3.13"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in placed) == [
        "meshsmith-0.1.0-linux_x64-blender5.1.zip", "meshsmith-0.1.0-windows_x64-blender5.1.zip"]
    assert all(p.read_bytes() == b"new" for p in placed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]


def test_the_kernels_are_compiled_with_the_flags_setup_py_uses(monkeypatch):
    import runpy
    import types

    build_extension = _build_extension()
    given = {}
    # A stand-in for setuptools (not in every environment) that records what setup.py asks for.
    fake = types.ModuleType("setuptools")
    fake.Extension = lambda name, **options: options
    fake.setup = lambda **kwargs: given.update(kwargs)
    monkeypatch.setitem(sys.modules, "setuptools", fake)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    (extension,) = given["ext_modules"]
    assert extension["extra_compile_args"] == build_extension.native_compile_args()
    assert "-O3" in extension["extra_compile_args"]


def _fresh_python() -> Path:
    """A venv of this Python holding only bpy (this version) and the numpy bpy runs on: made once
    under build/ and reused."""
    bpy_version = importlib.metadata.version("bpy")
    numpy_version = importlib.metadata.version("numpy")
    folder = REPO / "build" / f"fresh-bpy-{bpy_version}"
    python = folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    marker = folder / ".complete"
    if not marker.is_file():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", f"bpy=={bpy_version}",
                        f"numpy=={numpy_version}"], check=True)
        marker.write_text(f"bpy {bpy_version}, numpy {numpy_version}\n")
    return python


def test_the_linux_zip_installs_and_generates_in_a_python_that_has_only_bpy(tmp_path):
    if sys.platform != "linux":
        pytest.skip("the Linux zip is tested on Linux")
    label = "blender5.1" if sys.version_info >= (3, 13) else "blender4.2-5.0"
    zips = [p for p in _zips() if p.name.endswith(f"-linux_x64-{label}.zip")]
    assert zips, f"dist/ has no linux_x64 zip for {label}"
    python = _fresh_python()
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    present = {_normal(line.split("==")[0]) for line in listing.stdout.split()}
    assert not present & {"fastapi", "scipy", "trimesh", "uvicorn"}, present   # nothing of the backend's
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESHSMITH_", "BLENDER_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    out = tmp_path / "field"
    done = subprocess.run([str(python), str(REPO / "scripts" / "field_test.py"), str(REPO / "assets"),
                           "--zip", str(zips[-1]), "--modes", "watertight", "artist", "texture-object", "views-hull",
                           "--made", "--no-render", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "field.json").read_text())
    assert report["backend"]["executable"] == str(python) or Path(report["backend"]["executable"]).resolve() \
        == python.resolve(), report["backend"]
    unavailable = report["backend"]["unavailable"]
    assert not {"watertight", "artist", "texture"} & set(unavailable), unavailable
    # No torch in the zip: the model-backed mode says what it needs instead of failing in a job.
    assert "torch" in unavailable["points_to_mesh"], unavailable
    ran = {(r["mode"], r["mesh"]): r for r in report["rows"]}
    assert all(r["status"] == "ok" for k, r in ran.items() if k[1] == "painted_suzanne.ply"), ran
    assert ran[("texture-object", "painted_suzanne.ply")]["texture"]
    assert ran[("watertight", "spot_broken.obj")]["closed"] and ran[("artist", "spot_broken.obj")]["quads"] > 0
    # From Views by the visual hull needs no torch: it runs from the zip too.
    assert ran[("views-hull", "spot_broken.obj")]["status"] == "ok" and ran[("views-hull", "spot_broken.obj")]["closed"]


def test_install_model_support_then_from_views_by_the_model(tmp_path):
    """Preferences > Install Model Support in that same fresh environment: pip puts PyTorch into
    the extension's user folder, the restarted backend finds it, and From Views runs the model."""
    if sys.platform != "linux":
        pytest.skip("the Linux zip is tested on Linux")
    python = _fresh_python()
    # Only where pip finds a CPU build of torch without an index (this machine's wheel folder):
    # the test must not pull PyPI's multi-GB CUDA build.
    probe = subprocess.run([str(python), "-m", "pip", "download", "--no-index", "--no-deps", "--only-binary=:all:",
                            "--dest", str(tmp_path / "probe"), "torch==2.13.0"], capture_output=True, text=True)
    if probe.returncode != 0 or not any("+cpu" in p.name for p in (tmp_path / "probe").glob("torch-*.whl")):
        pytest.skip(f"no local CPU build of torch 2.13.0 for Python {sys.version_info.major}.{sys.version_info.minor}")
    label = "blender5.1" if sys.version_info >= (3, 13) else "blender4.2-5.0"
    zips = [p for p in _zips() if p.name.endswith(f"-linux_x64-{label}.zip")]
    assert zips, f"dist/ has no linux_x64 zip for {label}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESHSMITH_", "BLENDER_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    out = tmp_path / "field"
    done = subprocess.run([str(python), str(REPO / "scripts" / "field_test.py"), str(REPO / "assets"),
                           "--zip", str(zips[-1]), "--model-support", "--torch-index", "", "--modes", "views-model",
                           "--no-render", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "model support: done" in done.stdout
    report = json.loads((out / "field.json").read_text())
    assert "points_to_mesh" not in report["backend"]["unavailable"], report["backend"]
    (row,) = report["rows"]
    assert row["mode"] == "views-model" and row["status"] == "ok" and row["closed"] and row["texture"], row
