"""Paths the user gives: ``~`` expansion, safe names, staying inside a chosen
directory, and checking before any work that an output destination can really be
written.

* :func:`expand` / :class:`UserPath`: the one place ``~`` is expanded (option
  coercion in :mod:`stratum.options` and every click ``Path`` argument use it).
* :func:`slug` turns any text (a run name, a bench variant or configuration
  label, a fit tag) into one safe path component: no separators, never ``.``
  or ``..``, no leading dot or dash, ASCII only, bounded length.
* :func:`safe_join`: joins components under a base directory and checks that
  the resolved result stays inside it (symlinks included).
* :func:`probe_output`: a create-and-remove probe of a file or directory
  destination, run before training, that leaves nothing behind.
* :func:`writing` / :func:`output_error`: an ``OSError`` while writing becomes
  one :class:`~stratum.errors.OutputError` line naming the path and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import click

from .errors import OutputError, UnsafePathError

# errno values that mean "this destination cannot be written" (user-fixable), not a bug.
DESTINATION_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "EEXIST",
        "ENOENT", "ELOOP", "EFBIG", "EMLINK", "ETXTBSY", "EBUSY", "EIO", "EXDEV",
    ) if hasattr(errno, name)
)


def expand(path: str | os.PathLike) -> Path:
    """``Path(path)`` with a leading ``~`` / ``~user`` expanded to that home directory.

    Takes a string or path-like; returns a :class:`~pathlib.Path`. Raises nothing
    (an unknown ``~user`` stays as written, as :func:`os.path.expanduser` leaves it).
    """
    return Path(os.path.expanduser(os.fspath(path)))


class UserPath(click.Path):
    """``click.Path`` that expands ``~`` before click's own checks (``path_type=Path``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("path_type", Path)
        super().__init__(**kwargs)

    def convert(self, value, param, ctx):
        if isinstance(value, (str, os.PathLike)) and os.fspath(value) != "":
            value = os.path.expanduser(os.fspath(value))
        return super().convert(value, param, ctx)

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


def output_error(exc: OSError, path, what: str = "") -> OutputError:
    """The one-line :class:`~stratum.errors.OutputError` for an ``OSError`` raised writing ``path``.

    ``what`` names the option (``--json``) or the artefact (``checkpoint``). The message
    names the path and the cause (``strerror``), e.g. ``cannot write --json r/s.json:
    No space left on device``.
    """
    cause = exc.strerror or type(exc).__name__
    culprit = getattr(exc, "filename", None)
    label = f"{what} " if what else ""
    # Name the culprit only when it is a directory on the way (not the path itself, not a temp file).
    detail = ""
    if isinstance(culprit, (str, bytes, os.PathLike)):
        culprit = Path(os.fsdecode(culprit))
        if culprit in Path(path).parents:
            detail = f" ({culprit})"
    return OutputError(f"cannot write {label}{path}: {cause}{detail}")


@contextlib.contextmanager
def writing(path, what: str = "") -> Iterator[None]:
    """Run a block that writes ``path``; an ``OSError`` in it becomes an :class:`OutputError`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(exc, path, what) from None


def _missing_chain(directory: Path) -> tuple[Path, list[Path]]:
    """The nearest existing ancestor of ``directory`` (or itself) and the missing ones below it, top first."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate, missing[::-1]
        missing.append(candidate)
    return Path("."), missing[::-1]  # pragma: no cover - a relative path always ends at '.'


def probe_output(path, kind: str = "file", what: str = "") -> Path:
    """Check, before any work, that ``path`` can really be written; leave nothing behind.

    ``kind`` is ``"file"`` (a file written atomically: a temp file beside it, then a
    rename) or ``"dir"`` (a directory files are written into). Missing parent
    directories are created for the probe and removed again, as is the probe file, so a
    run that then fails writes nothing. Returns the path. Raises
    :class:`~stratum.errors.OutputError` naming ``what`` (an option such as
    ``--json``), the path and the cause: an existing path of the wrong kind, a path
    component that is a file, permission, a read-only file system, a full disk, a name
    longer than the file system allows.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"probe_output: kind must be 'file' or 'dir', got {kind!r}")
    path = expand(path)
    # Another process may probe the same place at the same moment (bench workers, DDP
    # ranks): a folder it made, or removed, under our feet is a race, not a verdict. Try again.
    for attempt in range(5):
        try:
            return _probe_once(path, kind, what)
        except OutputError as exc:
            if attempt == 4 or not isinstance(exc.__context__, (FileExistsError, FileNotFoundError)):
                raise
    return path  # pragma: no cover - the loop returns or raises


def _file_type(path: Path) -> str | None:
    """``"dir"``, ``"file"`` (regular), ``"other"``, or ``None`` when nothing is there, from a single
    ``stat`` (the errors ``Path.exists`` takes for "missing" count as missing; others propagate).
    Two separate checks (``exists()`` then ``is_dir()``) raced with DDP ranks probing the same
    ``--out``: a folder another rank removed in between read as "exists and is not a directory"."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        raise
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _probe_once(path: Path, kind: str, what: str) -> Path:
    label = f"{what} " if what else ""
    created: list[Path] = []
    try:
        with writing(path, what):  # even a stat() can fail (a name too long)
            found = _file_type(path)  # one stat: another process may make or remove the folder between two
            if kind == "file":
                if found == "dir":
                    raise OutputError(f"{label}{path} is a directory; give a file path")
                if found == "other":
                    raise OutputError(f"{label}{path} exists and is not a regular file")
                directory, name = path.parent, path.name
            else:
                if found not in (None, "dir"):
                    raise OutputError(f"{label}{path} exists and is not a directory")
                directory, name = path, "probe"
            anchor, missing = _missing_chain(directory)
            if not anchor.is_dir():
                raise OutputError(f"cannot write {label}{path}: {anchor} is not a directory")
            for folder in missing:
                os.mkdir(folder)
                created.append(folder)
            # The same temp-file name pattern the atomic writers use: a name that only
            # fits without it fails here, not after training.
            fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            os.close(fd)
            os.unlink(probe)
    finally:
        for made in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(made)
    return path


def _dirs_within(root: Path, depth: int) -> set[Path]:
    found: set[Path] = set()
    level = [root]
    for _ in range(depth):
        following = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        found.add(Path(entry.path))
                        following.append(Path(entry.path))
        level = following
    return found


def _remove_empty_tree(top: Path) -> None:
    for directory, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only empty ones go; anything holding a file stays


@contextlib.contextmanager
def removing_new_empty_dirs(root, depth: int = 2) -> Iterator[None]:
    """Run a block that may create ``root`` and folders in it (a download, say); when the
    block fails, remove again the directories it created that are still empty.

    Covers ``root``'s missing parents, ``root`` itself and new folders up to ``depth``
    levels below it. Directories that existed before, and anything holding a file, stay.
    The block's exception propagates unchanged.
    """
    root = expand(root)
    try:
        _, missing = _missing_chain(root)
        existed = root.is_dir()
    except OSError:
        yield
        return
    before = _dirs_within(root, depth) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            if root.is_dir():
                _remove_empty_tree(root)
        else:
            new = _dirs_within(root, depth) - before
            for folder in new:
                if folder.parent not in new:  # the top of a new subtree
                    _remove_empty_tree(folder)
        for folder in reversed(missing):
            if folder == root:
                continue
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
