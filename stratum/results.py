"""Writing run summaries."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_write_json
from .paths import probe_output

SUMMARY_FILENAME = "summary.json"


def check_writable_file(path: Path, what: str = "--json") -> None:
    """Fail before training when an output file cannot be written there.

    A create-and-remove probe (:func:`stratum.paths.probe_output`); raises OutputError.
    """
    probe_output(path, "file", what)


def write_summary(summary: dict, *, json_path: Path | None = None, run_dir: Path | None = None) -> list[Path]:
    """Write the summary into ``run_dir/summary.json`` and/or ``json_path``, atomically.

    Returns the paths written; raises OutputError (one line naming the path) when a
    destination cannot be written.
    """
    written = []
    if run_dir is not None:
        target = Path(run_dir) / SUMMARY_FILENAME
        atomic_write_json(target, summary, "summary")
        written.append(target)
    if json_path is not None:
        atomic_write_json(Path(json_path), summary, "--json")
        written.append(Path(json_path))
    return written
