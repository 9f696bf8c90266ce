"""stratum's built-in plugins, one folder each.

Each is registered through the ``stratum`` entry-point group in pyproject.toml,
exactly as a third-party package would register its own.
"""
