"""What a run ran on: source commits, plugins, CPU/GPU, library versions.

:func:`capture` returns the ``environment`` entry of a run summary. Nothing here
may fail a run: a missing ``git``, a slow repository, an unreadable
``/proc/cpuinfo`` or an absent library each leave ``None`` in its place.
Versions come from package metadata (:mod:`importlib.metadata`), so nothing is
imported just to read its version.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 2.0

# Libraries whose versions a summary records (by distribution name), besides Python and stratum.
LIBRARIES = ("torch", "numpy", "xgboost")


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory args...``'s stdout, stripped; ``None`` when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def git_state(directory: str | os.PathLike, *, root_must_be: str | os.PathLike | None = None) -> dict | None:
    """The git commit of the working tree holding ``directory``, or ``None``.

    Returns ``{"path": work-tree root, "commit": HEAD sha, "dirty": bool | None}``;
    ``dirty`` is True when tracked files differ from HEAD (``None`` when that could
    not be told in time). ``root_must_be``: only report a repository whose work tree
    is exactly that directory (so a package installed inside someone else's
    repository does not report theirs). Never raises.
    """
    try:
        directory = Path(directory)
        if not directory.is_dir():
            return None
    except OSError:
        return None
    top = _git(directory, "rev-parse", "--show-toplevel")
    if not top:
        return None
    if root_must_be is not None:
        try:
            if Path(top).resolve() != Path(root_must_be).resolve():
                return None
        except OSError:
            return None
    commit = _git(directory, "rev-parse", "HEAD")
    if not commit:
        return None  # a repository with no commit yet
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"path": top, "commit": commit, "dirty": None if status is None else bool(status)}


def source_checkouts(cwd: str | os.PathLike | None = None) -> dict:
    """``{"stratum": git_state | None, "cwd": git_state | None}``.

    ``stratum``: the checkout stratum itself is imported from, when it is one (an
    editable install of a clone); ``cwd``: the repository of the working directory,
    if any (the user's experiment code).
    """
    package = Path(__file__).resolve().parent  # the stratum package
    try:
        cwd = Path.cwd() if cwd is None else Path(cwd)
    except OSError:  # the working directory was removed
        cwd = None
    return {
        "stratum": git_state(package, root_must_be=package.parent),
        "cwd": git_state(cwd) if cwd is not None else None,
    }


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's model name: the ``cpuinfo`` file's "model name" on Linux, else
    :func:`platform.processor`, else ``None``. Never raises."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    try:
        return platform.processor() or None
    except Exception:  # pragma: no cover - best effort
        return None


def gpu_name(device=None) -> str | None:
    """The name of the CUDA device ``device`` (or the current one) when CUDA is available, else ``None``."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        index = getattr(device, "index", None) if getattr(device, "type", "cuda") == "cuda" else None
        return torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())
    except Exception:  # a broken driver must not fail the run
        return None


def library_versions() -> dict:
    """``{"python", "stratum", "torch", "numpy", "xgboost"}`` versions; ``None`` for a library
    that is not installed. Read from package metadata: nothing is imported for this."""
    from .version import __version__

    versions = {"stratum": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def loaded_plugins(pm) -> list[dict]:
    """Every loaded plugin: ``{"name", "origin", "dist", "version", "module"}``.

    ``origin`` is ``builtin``, ``local`` (``--plugin``), ``api`` or the distribution name;
    ``dist`` the distribution a plugin came in (``stratum`` for the built-ins, ``None``
    for local modules and objects registered from code).
    """
    from .plugin_manager import BUILTIN_DISTRIBUTION, LOCAL_ORIGIN

    rows = []
    for record in pm.records.values():
        if record.status != "loaded" or record.origin == "run-scoped":
            continue
        if record.origin == "builtin":
            dist = BUILTIN_DISTRIBUTION
        elif record.origin in ("api", LOCAL_ORIGIN):
            dist = None
        else:
            dist = record.origin
        rows.append({"name": record.name, "origin": record.origin, "dist": dist,
                     "version": record.version, "module": record.module})
    return sorted(rows, key=lambda r: (r["origin"] != "builtin", r["name"]))


def capture(pm, device=None, threads: int | None = None) -> dict:
    """The ``environment`` entry of a run summary.

    ``{"git": source_checkouts(), "plugins": loaded_plugins(pm), "cpu": {"model",
    "logical_cores", "threads"}, "gpu": name | None, "platform": str, "versions":
    library_versions()}``. Which plugin provides each component of the run is
    ``summary["components"]``, not repeated here. Never raises.
    """
    try:
        platform_text = platform.platform()
    except Exception:  # pragma: no cover - platform probing is best effort
        platform_text = None
    return {
        "git": source_checkouts(),
        "plugins": loaded_plugins(pm),
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(), "threads": threads},
        "gpu": gpu_name(device),
        "platform": platform_text,
        "versions": library_versions(),
    }
