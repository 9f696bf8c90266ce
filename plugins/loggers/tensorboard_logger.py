"""The ``tensorboard`` logger's factory: :class:`stratum.report.tensorboard.TensorBoardLogger`
under ``--tensorboard-dir`` (else the deprecated ``--tensorboard DIR``, else ``<run dir>/tensorboard``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stratum.errors import ConfigError

SUBDIR = "tensorboard"


def log_directory(config, options) -> Path:
    """Where the run's TensorBoard logs go. Raises :class:`ConfigError` when the run names none."""
    if options.tensorboard_dir is not None:
        return Path(options.tensorboard_dir)
    if config.tensorboard is not None:
        return Path(config.tensorboard)
    run_dir = config.run_dir()
    if run_dir is None:
        raise ConfigError("--log tensorboard needs a place to write: give --tensorboard-dir DIR or --out DIR "
                          f"(it then logs to <run dir>/{SUBDIR})")
    return run_dir / SUBDIR


def make_tensorboard_logger(run, options):
    """Logger factory: a ``TensorBoardLogger`` for ``run``. Raises :class:`ConfigError` without the
    tensorboard package or a directory."""
    directory = log_directory(run.config, options)
    from stratum.report.tensorboard import MISSING_PACKAGE, TensorBoardLogger

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(MISSING_PACKAGE)
    return TensorBoardLogger(run, directory)
