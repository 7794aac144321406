"""Packaging beyond pyproject.toml: the repository's configs/ folder installed as the
package ``rnnzoo.configs``, and the compiled time loop (rnnzoo/csrc/scan.cpp).

pyproject.toml cannot say either: its ``packages`` is either a found list or a written
one, and ``find`` only sees folders below ``rnnzoo/``; and a C++ extension against torch
needs torch's own build helpers at build time.

The extension is built where torch is importable by the build, which ``make install``
arranges (torch first, then this package with ``--no-build-isolation``). Elsewhere, in
an isolated build that has no torch, the package installs without it and the layers
use the Python fast path (rnnzoo.native says so at run time). ``RNNZOO_BUILD_NATIVE=0``
skips it on purpose.
"""

import os
import sys

from setuptools import find_namespace_packages, setup


def _arch_flags() -> list[str]:
    """Compile for this machine's vector units (the extension is built where it runs,
    by ``make install``); ``RNNZOO_NATIVE_ARCH=generic`` builds for any x86-64 or ARM
    CPU, as a wheel meant for other machines must be."""
    arch = os.environ.get("RNNZOO_NATIVE_ARCH", "native")
    return [] if arch == "generic" else [f"-march={arch}"]


ext_modules: list = []
cmdclass: dict = {}
if os.environ.get("RNNZOO_BUILD_NATIVE", "1") != "0":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print(
            "rnnzoo: torch is not importable by this build; the compiled loop is skipped",
            file=sys.stderr,
        )
    else:
        ext_modules.append(
            CppExtension(
                "rnnzoo._scan",
                ["rnnzoo/csrc/scan.cpp"],
                extra_compile_args=[
                    "-O3",
                    "-fno-math-errno",
                    "-fno-trapping-math",
                    "-fopenmp-simd",
                    *_arch_flags(),
                ],
            )
        )
        cmdclass["build_ext"] = BuildExtension.with_options(use_ninja=False)

setup(
    packages=[*find_namespace_packages(include=["rnnzoo*"]), "rnnzoo.configs"],
    package_dir={"rnnzoo.configs": "configs"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
