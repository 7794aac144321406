"""Packaging beyond pyproject.toml: the repository's configs/ folder installed as the
package ``rnnzoo.configs``, so a wheel ships them without a copy in the tree.

pyproject.toml cannot say this: its ``packages`` is either a found list or a written
one, and ``find`` only sees folders below ``rnnzoo/``. Everything else is there.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["rnnzoo*"]), "rnnzoo.configs"],
    package_dir={"rnnzoo.configs": "configs"},
)
