"""The C forward pass of the model (iids/csrc, used by iids/native.py for scoring).

Everything else about the package is in pyproject.toml. The extension is optional:
where it cannot be built (no C compiler or Python headers), iids installs without it
and scores with the model's torch rewrite, about a third as fast.
"""

from setuptools import Extension, setup

CSRC = "iids/csrc"

setup(
    ext_modules=[
        Extension(
            "iids._hybrid_cpu",
            sources=[
                f"{CSRC}/hybrid_module.c",
                f"{CSRC}/hybrid_avx512.c",
                f"{CSRC}/hybrid_avx2.c",
                f"{CSRC}/hybrid_baseline.c",
            ],
            depends=[f"{CSRC}/hybrid.h", f"{CSRC}/hybrid_kernel.h"],
            extra_compile_args=["-O3", "-fno-math-errno", "-Wall"],
            optional=True,
        )
    ]
)
