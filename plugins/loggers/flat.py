"""Nested records as flat ``{dotted key: value}`` maps, for the loggers' columns and metric names."""

from __future__ import annotations


def flatten(values: dict, prefix: str = "") -> dict:
    """``{"phases_s": {"forward": 0.1}}`` -> ``{"phases_s.forward": 0.1}``: every non-dict value of
    ``values`` under its dotted path, in the order of ``values``."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
