"""Keeping user-given names inside the directory the user chose.

Two tools, used together wherever a name (a run name, a bench variant or
configuration label, a strategy/model/data-set name, a fit tag) becomes part
of a path:

* :func:`slug` turns any text into one safe path component: no separators,
  never ``.`` or ``..``, no leading dot or dash, ASCII only, bounded length.
* :func:`safe_join` joins components under a base directory and checks that
  the resolved result stays inside it (symlinks included).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import UnsafePathError

# Longest slug; well below the 255-byte limit of a file name, leaving room for
# prefixes and suffixes such as ``gradflow-<slug>.png``.
SLUG_MAX = 100

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def slug(text, *, fallback: str = "run", max_length: int = SLUG_MAX) -> str:
    """One safe path component made from ``text`` (any object, turned into a string).

    Every run of characters outside ``A-Z a-z 0-9 _ . = -`` becomes ``_``
    (separators, ``~``, NUL, spaces, non-ASCII); leading dots, dashes and
    underscores and trailing underscores are dropped, so the result is never
    ``.``, ``..``, hidden or option-like. Text longer than ``max_length`` is
    cut and given a short hash of the full text, so long names stay distinct.
    Empty results become ``fallback``. Never raises.
    """
    raw = str(text)
    cleaned = _UNSAFE.sub("_", raw).lstrip("._-").rstrip("_")
    if len(cleaned) > max_length:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = cleaned[: max_length - 9].rstrip("._-") + "-" + digest
    return cleaned or fallback


def unique_slug(text, taken: set, *, fallback: str = "run") -> str:
    """:func:`slug`, made distinct from the slugs in ``taken`` (and added to it).

    Two labels that clean to the same slug (``a/b`` and ``a b``) would write into
    one directory; the later one gets a short hash of its full text appended.
    """
    name = slug(text, fallback=fallback)
    if name in taken:
        digest = hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{slug(text, fallback=fallback, max_length=SLUG_MAX - 9)}-{digest}"
        counter = 2
        base = name
        while name in taken:
            name = f"{base}-{counter}"
            counter += 1
    taken.add(name)
    return name


def safe_join(base: Path, *parts: str) -> Path:
    """``base / parts``, refusing anything that would land outside ``base``.

    Absolute parts, ``..`` segments and symlink tricks all fail the same check:
    the resolved result must stay under the resolved base. Raises
    :class:`~stratum.errors.UnsafePathError` (exit code 2) when it would not,
    or when a part is empty, starts with ``~`` or holds a NUL character.
    """
    base = Path(base)
    candidate = base
    for part in parts:
        part = str(part)
        if not part or "\x00" in part or Path(part).is_absolute() or part.startswith("~"):
            raise UnsafePathError(f"refusing path {part!r}: it must be a relative name inside {base}")
        candidate = candidate / part
    resolved_base = base.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_base and resolved_base not in resolved.parents:
        raise UnsafePathError(f"refusing path {'/'.join(map(str, parts))!r}: it leaves {base}")
    return candidate
