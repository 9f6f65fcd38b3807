"""Build of the optional native helper (batched UDP I/O, Linux only).

Everything else is in pyproject.toml. The extension is optional: when it cannot
be built (no compiler, no Python headers, not Linux) the install goes on and
mamori uses its pure-Python UDP path (`mamori.resolver.batchio`).
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "mamori.resolver.udpbatch",
            sources=["src/mamori/resolver/udpbatch.c", "src/mamori/resolver/udpbatch_core.c"],
            depends=["src/mamori/resolver/udpbatch_core.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
