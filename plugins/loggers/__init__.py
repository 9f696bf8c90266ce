"""Run tracking: the loggers ``csv``, ``tensorboard`` and ``mlflow`` (``--log NAME``, repeatable).

* ``csv`` (:mod:`.csv_logger`): one row per epoch in ``<run dir>/metrics.csv``.
* ``tensorboard`` (:class:`stratum.report.tensorboard.TensorBoardLogger`): scalars per epoch
  and the training loss every few steps, under ``--tensorboard-dir`` (default
  ``<run dir>/tensorboard``).
* ``mlflow`` (:mod:`.mlflow_logger`): parameters, per-epoch metrics and the summary in an
  MLflow tracking store (``--mlflow-uri``; default the local file store ``<--out>/mlruns``).

Entry point ``loggers`` in group ``stratum`` (pyproject.toml). Registration imports neither
torch nor the loggers' packages: the factories are ``"module:attr"`` strings, imported when a
run selects the logger. The engine calls each factory once per run and guards the logger it
returns: a logger that fails is reported once and disabled, training goes on
(:mod:`stratum.engine.loggers`).
"""

from __future__ import annotations

from pathlib import Path

import attrs

import stratum
from stratum import option


@attrs.frozen
class TensorBoardOptions:
    tensorboard_dir: Path | None = option(
        None, "tensorboard: the log directory (default: <run dir>/tensorboard; the deprecated --tensorboard DIR also sets it).",
        type=Path, output="dir")


@attrs.frozen
class MlflowOptions:
    mlflow_uri: str | None = option(
        None, "mlflow: tracking URI (file:DIR, sqlite:///FILE, http://HOST; default: the local file store file:<--out>/mlruns).",
        type=str)
    mlflow_experiment: str = option("stratum", "mlflow: experiment the runs are logged in (created when missing).")


@stratum.hookimpl
def stratum_register_loggers():
    return [
        stratum.logger("csv", "stratum_plugins.loggers.csv_logger:make_csv_logger",
                       "One row per epoch (the history keys) in <run dir>/metrics.csv, written as each epoch ends."),
        stratum.logger("tensorboard", "stratum_plugins.loggers.tensorboard_logger:make_tensorboard_logger",
                       "Epoch scalars and the training loss to TensorBoard (needs stratum[tensorboard]).",
                       options=TensorBoardOptions),
        stratum.logger("mlflow", "stratum_plugins.loggers.mlflow_logger:make_mlflow_logger",
                       "Parameters, per-epoch metrics and the summary to an MLflow tracking store (needs stratum[mlflow]).",
                       options=MlflowOptions),
    ]
