"""The reliability suite's smoke run: fuzz, kills, load and cancel against real servers."""

from __future__ import annotations

import pytest

from backend import reliability

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("message", [
    "TypeError: 'NoneType' object is not subscriptable",
    "The file could not be read (AttributeError: 'str' object has no attribute 'items').",
    "cannot open /tmp/meshsmith-x/jobs/1/input.glb",
])
def test_the_scan_catches_raw_exception_texts_and_paths(message):
    assert reliability.RAW_TEXT.search(message)


def test_a_sentence_passes_the_scan():
    assert not reliability.RAW_TEXT.search(
        "The uploaded file mesh.glb has no surface: all its 12 triangles have zero area. Check the object's scale.")


def test_smoke_run_passes_every_part(capsys):
    assert reliability.main(["--smoke"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    for part in ("fuzz", "kill", "load", "cancel"):
        assert f"\n{part}" in out or out.startswith(part)
