"""Writing files so that a crash never leaves a half-written one in place,
and reading tensors without ever unpickling code.

Every durable artefact (checkpoint, prior, summary JSON) goes through
:func:`atomic_write_bytes`: write a temporary file in the same directory,
fsync it, rename it over the target, fsync the directory. A reader sees the
old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import tempfile
import time
import warnings
import zipfile
from pathlib import Path, PurePath
from typing import Any, Callable

from .errors import StratumError


def atomic_write_bytes(path: Path, data: bytes, what: str = "") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); raises OutputError."""
    atomic_write(path, lambda fh: fh.write(data), what)


def atomic_write(path: Path, writer: Callable[[Any], Any], what: str = "") -> None:
    """Call ``writer(fileobj)`` on a temp file and move it into place atomically.

    Missing parent directories are created. After the rename, temp files that an
    earlier, killed write of the same file left behind are removed (only this file's
    own ``.NAME.XXXXXXXX.tmp`` leftovers, never other files). An ``OSError`` (full
    disk, read-only file system, permission, a path component that is a file) raises
    :class:`~stratum.errors.OutputError` naming ``what`` and ``path``; the old file, if
    any, is left as it was.
    """
    from .paths import writing

    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    _fsync_dir(path.parent)
    remove_leftovers(path, older_than=started)


def _leftover_pattern(name: str) -> "re.Pattern":
    # tempfile.mkstemp: prefix + 8 characters of [a-z0-9_] + suffix. Anchored, so the
    # leftovers of "a.b" never match those of "a".
    return re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}" + re.escape(".tmp"))


def remove_leftovers(path: Path, older_than: float | None = None) -> list[Path]:
    """Remove temp files a killed atomic write of ``path`` left beside it.

    Only names ``.{path.name}.XXXXXXXX.tmp`` (the pattern :func:`atomic_write` uses)
    count; with ``older_than`` (a ``time.time()``), only files last modified before
    then, so a write in flight in another process is never touched. Returns the
    removed paths; raises nothing (a leftover that cannot be removed stays).
    """
    path = Path(path)
    pattern = _leftover_pattern(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if older_than is not None and entry.stat(follow_symlinks=False).st_mtime >= older_than:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by ``None`` and tensors, numpy values and paths by plain values, recursively.

    Duck-typed (``tolist``/``item``), so it never imports torch or numpy: the results store, which
    must stay light, uses it too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # tensors, numpy arrays and scalars
        return json_safe(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return json_safe(value.item())
    return value


def dumps_json(data: Any) -> str:
    # allow_nan=False: a NaN that slipped past json_safe fails loudly, never lands on disk
    return json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n"


def atomic_write_json(path: Path, data: Any, what: str = "") -> None:
    """Write ``data`` as JSON (NaN -> null) atomically; raises OutputError."""
    atomic_write_bytes(path, dumps_json(data).encode(), what)


def atomic_torch_save(path: Path, obj: Any, what: str = "") -> None:
    """``torch.save`` ``obj`` to ``path`` atomically; raises OutputError."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue(), what)


def _looks_like_torch_file(path: Path) -> bool:
    """A ``torch.save`` zip archive, or a raw pickle (protocol 2 or later starts with 0x80)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def safe_torch_load(path: Path, what: str, error: type[StratumError] = StratumError) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only.

    A file holding any other pickled object (the usual code-execution vector)
    is refused with a one-line error; its payload never runs.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if path.is_dir():
        raise error(f"{what} path is a directory: {path}")
    try:
        with warnings.catch_warnings():
            # torch warns about legacy or foreign pickles before refusing them; the
            # one-line error below says all the user needs.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch_file(path):  # random bytes reach the unpickler too: say what they are
            raise error(f"{what} {path} is corrupt or not a torch file") from None
        import re

        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        detail = f" (it references {found.group(1)})" if found else ""
        raise error(f"{what} {path} refused: it holds objects other than tensors{detail}") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, KeyError, AttributeError, IndexError) as exc:
        raise error(f"{what} {path} is corrupt or truncated ({type(exc).__name__})") from None
