"""Build of the compiled kernels; everything else about the package is in pyproject.toml.

``backend/mesh/_native.c`` is plain C against Python's stable buffer API (no numpy
headers). ``make setup`` builds it through ``pip install -e .``; without a C compiler the
backend still runs, on its numpy kernels (``backend.mesh.native``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "backend.mesh._native",
            sources=["backend/mesh/_native.c"],
            extra_compile_args=["-O3", "-std=c99", "-fno-math-errno"],
            optional=True,
        )
    ]
)
