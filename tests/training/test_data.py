"""training/data.py: corpora, Sweet Home 3D catalogues, licences and seeded splits (no downloads)."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile

import pytest

from training import data

CUBE_OBJ = b"mtllib cube.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\nusemtl wood\n" \
           b"f 1 4 3 2\nf 5 6 7 8\nf 1 2 6 5\nf 2 3 7 6\nf 3 4 8 7\nf 4 1 5 8\n"

PROPERTIES = """# PluginFurnitureCatalog.properties
#
# A catalogue made for this test.
id=Test#Catalogue
name=Test catalogue
license=Public domain
provider=example.org

id#1=Test#chair
name#1=Chair \\u00e0 bascule
tags#1=Seat, \\
    Wood
category#1=Living room
creator#1=Ada
model#1=/test/chair/chair.obj

id#2=Test#table
name#2=Table
category#2=Kitchen
creator#2=Grace
model#2=/test/table/table.obj

id#3=Test#missing
name#3=Missing
model#3=/test/missing/missing.obj
"""


def make_catalogue(path, extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(data.CATALOG_FILE, PROPERTIES)
        for name in ("chair", "table"):
            z.writestr(f"test/{name}/{name}.obj", CUBE_OBJ)
            z.writestr(f"test/{name}/cube.mtl", b"newmtl wood\nKd 0.6 0.4 0.2\n")
        z.writestr("test/table/LICENSE.txt", b"by Grace")
        for name, payload in (extra or {}).items():
            z.writestr(name, payload)


def test_properties_follow_javas_rules():
    props = data.parse_properties("a=1\nb : two words\nc three\n! note\n# note\nd=line \\\n  continued\n"
                                  "e=caf\\u00e9\\tx\nkey\\=with\\:seps=v\n")
    assert props == {"a": "1", "b": "two words", "c": "three", "d": "line continued", "e": "caf\u00e9\tx",
                     "key=with:seps": "v"}


def test_splits_are_fixed_by_a_seeded_hash_of_the_id():
    ids = [f"asset-{k}" for k in range(4000)]
    splits = [data.split_of(i) for i in ids]
    assert splits == [data.split_of(i) for i in ids]                    # stable
    shares = {name: splits.count(name) / len(ids) for name, _ in data.SPLITS}
    assert abs(shares["train"] - 0.90) < 0.02 and abs(shares["val"] - 0.05) < 0.015
    assert [data.split_of(i, seed=1) for i in ids] != splits            # the seed matters


def test_a_catalogue_folder_becomes_a_corpus_with_credit_licence_and_splits(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    make_catalogue(source / "Testing.sh3f", {"../evil.txt": b"x", "/abs.txt": b"x", "test/chair/../../../up.txt": b"x"})
    (source / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                      "Files: Testing/*\nCopyright: someone\nLicense: CC-BY-3.0\n")
    out = tmp_path / "corpus"
    assets = data.furniture(source, out)
    assert [a.name for a in assets] == ["Chair \u00e0 bascule", "Table"]   # the missing model is left out
    chair = assets[0]
    assert chair.licence == "CC-BY-3.0"                                  # Debian's file beats the property
    assert chair.credit == "Ada, via example.org" and chair.tags == ["Seat", "Wood"]
    assert chair.category == "Living room" and chair.split in ("train", "val", "test")
    assert (out / chair.path).read_bytes() == CUBE_OBJ and (out / chair.path).with_name("cube.mtl").is_file()
    assert (out / "assets" / "Testing" / "test" / "table" / "LICENSE.txt").is_file()
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("up.txt"))
    assert not (out.parent / "abs.txt").exists()
    assert data.read_manifest(out) == sorted(assets, key=lambda a: a.id)
    assert [a.id for a in data.read_manifest(out, chair.split)].count(chair.id) == 1
    # Without Debian's file, the catalogue's own licence property.
    (source / "copyright").unlink()
    again = data.furniture(source, tmp_path / "corpus2")
    assert {a.licence for a in again} == {"Public domain"}


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_the_deb_itself_is_read(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: test-furniture\nVersion: 1.0\nArchitecture: all\n"
                                              "Maintainer: t <t@example.org>\nDescription: test\n")
    catalogues = root / "usr" / "share" / "sweethome3d" / "furniture"
    catalogues.mkdir(parents=True)
    make_catalogue(catalogues / "Testing.sh3f")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(tmp_path / "t.deb")], check=True,
                   capture_output=True)
    assert len(data.furniture(tmp_path / "t.deb", tmp_path / "corpus")) == 2


def test_a_folder_of_meshes_is_a_corpus(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "a.obj").write_bytes(CUBE_OBJ)
    (tmp_path / "m" / "sub" / "b.obj").write_bytes(CUBE_OBJ)
    (tmp_path / "m" / "notes.txt").write_text("not a mesh")
    assets = data.from_folder(tmp_path / "m", tmp_path / "corpus", licence="CC0-1.0")
    assert sorted(a.id for a in assets) == ["m/a.obj", "m/sub/b.obj"]
    assert all((tmp_path / "corpus" / a.path).is_file() and a.licence == "CC0-1.0" for a in assets)
    assert data.main(["folder", str(tmp_path / "m"), "--out", str(tmp_path / "c2")]) == 0
