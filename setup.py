"""Package layout only; all metadata is in pyproject.toml.

The built-in plugins live in ``plugins/`` but import as ``stratum_plugins`` so
that the top-level name ``plugins`` is never claimed in site-packages.
"""

from setuptools import find_packages, setup

core = ["stratum", *(f"stratum.{p}" for p in find_packages("stratum"))]
builtin_plugins = ["stratum_plugins", *(f"stratum_plugins.{p}" for p in find_packages("plugins"))]

setup(
    packages=core + builtin_plugins,
    package_dir={"stratum": "stratum", "stratum_plugins": "plugins"},
)
