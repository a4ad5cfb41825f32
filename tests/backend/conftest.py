"""Fixtures shared by the backend tests."""

from __future__ import annotations

import pytest

from backend.mesh import native


@pytest.fixture(params=["numpy", "native"])
def kernels(request, monkeypatch) -> str:
    """Run a test once on the numpy kernels and once on the compiled ones (``backend.mesh.native``).

    The compiled run is skipped where the extension is not built (no C compiler at install
    time); ``test_native.py`` fails instead when ``MESHSMITH_EXPECT_NATIVE=1`` says it must be.
    """
    monkeypatch.setenv("MESHSMITH_NATIVE", "1" if request.param == "native" else "0")
    if request.param == "native" and not native.available():
        pytest.skip(native.why_unavailable())
    return request.param
