"""Keeping user-given names inside the directory the user chose."""

from __future__ import annotations

from pathlib import Path

from .errors import UnsafePathError


def safe_join(base: Path, *parts: str) -> Path:
    """``base / parts``, refusing anything that would land outside ``base``.

    Absolute parts, ``..`` segments and symlink tricks all fail the same check:
    the resolved result must stay under the resolved base.
    """
    base = Path(base)
    candidate = base
    for part in parts:
        part = str(part)
        if not part or Path(part).is_absolute() or part.startswith("~"):
            raise UnsafePathError(f"refusing path {part!r}: it must be a relative name inside {base}")
        candidate = candidate / part
    resolved_base = base.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_base and resolved_base not in resolved.parents:
        raise UnsafePathError(f"refusing path {'/'.join(map(str, parts))!r}: it leaves {base}")
    return candidate
