"""Writing run summaries."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .io import atomic_write_json

SUMMARY_FILENAME = "summary.json"


def check_writable_file(path: Path, what: str = "--json") -> None:
    """Fail before training when an output file cannot be written there."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file path")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{what} {path}: {parent} is not a directory")


def write_summary(summary: dict, *, json_path: Path | None = None, run_dir: Path | None = None) -> list[Path]:
    written = []
    if run_dir is not None:
        target = Path(run_dir) / SUMMARY_FILENAME
        atomic_write_json(target, summary)
        written.append(target)
    if json_path is not None:
        atomic_write_json(Path(json_path), summary)
        written.append(Path(json_path))
    return written
