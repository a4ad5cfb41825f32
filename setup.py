"""Build of the compiled kernels; everything else about the package is in pyproject.toml.

``backend/mesh/_native.c`` is plain C against Python's stable buffer API (no numpy
headers). ``make setup`` builds it through ``pip install -e .``; without a C compiler the
backend still runs, on its numpy kernels (``backend.mesh.native``). Its compile flags are
``[tool.meshsmith] native-compile-args`` of pyproject.toml, which the extension build uses too.
"""

import tomllib
from pathlib import Path

from setuptools import Extension, setup

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent / "pyproject.toml").read_text(encoding="utf-8"))

setup(
    ext_modules=[
        Extension(
            "backend.mesh._native",
            sources=["backend/mesh/_native.c"],
            extra_compile_args=PYPROJECT["tool"]["meshsmith"]["native-compile-args"],
            optional=True,
        )
    ]
)
