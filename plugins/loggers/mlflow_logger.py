"""The ``mlflow`` logger: a run's parameters, per-epoch metrics and summary in MLflow.

Through ``mlflow.tracking.MlflowClient`` (no global MLflow state, so bench workers and API
callers do not share an active run). Each fit of a stratum run is one MLflow run in the
experiment ``--mlflow-experiment`` (created when missing), named after the stratum run
(``--name``, else ``<strategy>-<model>-<dataset>-seed<N>``; ``-<fit tag>`` for one of several
fits) and tagged ``stratum.strategy``, ``stratum.model``, ``stratum.dataset``, ``stratum.seed``
(and ``stratum.fit_tag``). It logs:

* at fit start, the parameters: the resolved config (:meth:`stratum.config.RunConfig.to_dict`),
  every value a string, lists comma-joined;
* at every epoch end, the history row's numbers as metrics with ``step`` = the epoch (nested
  entries as ``phases_s.forward``), plus ``global_step``;
* at fit end, the summary's top-level numbers as ``final.<key>`` metrics and the whole summary as
  the artifact ``summary.json``; the MLflow run is then marked ``FINISHED``.

A resumed fit continues the MLflow run its checkpoint names (``state_dict``). The default
tracking URI is MLflow's local file store ``file:<--out>/mlruns``; MLflow 3 keeps that store in
maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is true, so for a ``file:``
URI this logger sets that variable when the environment leaves it unset (give ``--mlflow-uri
sqlite:///FILE`` for a database store). The store is opened in the factory, before training:
a URI it cannot open is refused in one line. Needs the optional extra ``stratum[mlflow]``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from stratum.errors import ConfigError
from stratum.hookspecs import hookimpl
from stratum.paths import slug

from .flat import flatten

INSTALL = "--log mlflow needs the mlflow package: pip install 'stratum[mlflow]'"
# MLflow's limit on a parameter value (characters)
PARAM_MAX = 6000


def default_uri(config) -> str:
    """``file:<--out>/mlruns`` (absolute). Raises :class:`ConfigError` without ``--out``."""
    if config.out is None:
        raise ConfigError("--log mlflow needs a tracking store: give --mlflow-uri URI, or --out DIR for the "
                          "local file store file:<out>/mlruns")
    return Path(config.out).resolve().joinpath("mlruns").as_uri()


def make_mlflow_logger(run, options):
    """Logger factory: an :class:`MlflowLogger` on an opened tracking store. Raises
    :class:`ConfigError` without mlflow, without a URI, or for a store that cannot be opened."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(INSTALL) from None
    uri = options.mlflow_uri or default_uri(run.config)
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's own local store (see above)
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(options.mlflow_experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(options.mlflow_experiment)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad store
        message = " ".join(str(exc).split())[:300]
        raise ConfigError(f"--mlflow-uri {uri}: cannot open the MLflow tracking store ({type(exc).__name__}: {message})") from None
    return MlflowLogger(client, experiment_id)


def params_of(config) -> dict:
    """The resolved config as MLflow parameters: every value a string, lists comma-joined."""
    params = {}
    for key, value in config.to_dict().items():
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        params[key] = text[:PARAM_MAX]
    return params


def numbers(values: dict) -> dict:
    """The finite numbers of ``values`` as floats (nested dicts as dotted keys; booleans are not numbers)."""
    return {key: float(value) for key, value in flatten(values).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def run_name(run) -> str:
    """The MLflow run name: ``--name``, else ``<strategy>-<model>-<dataset>-seed<N>``, plus ``-<fit tag>``."""
    config = run.config
    name = config.name or slug(f"{config.strategy}-{config.model}-{config.dataset}-seed{config.seed}")
    return f"{name}-{slug(run.fit_tag, fallback='fit')}" if run.fit_tag else name


class MlflowLogger:
    """Logs every fit of a run as one MLflow run (see the module docstring)."""

    def __init__(self, client, experiment_id: str):
        self.client = client
        self.experiment_id = experiment_id
        self.run_id: str | None = None
        self.saved_id: str | None = None

    def state_dict(self) -> dict:
        """The MLflow run id, so that a resumed fit logs on into the same MLflow run."""
        return {"run_id": self.run_id} if self.run_id else {}

    def load_state_dict(self, state: dict) -> None:
        self.saved_id = state.get("run_id")

    @hookimpl
    def stratum_fit_start(self, run):
        from mlflow.entities import Param

        saved, self.saved_id = self.saved_id, None
        if saved and (run.epoch > 0 or run.global_step > 0):
            self.run_id = saved
            self.client.update_run(saved, status="RUNNING")
            return
        config = run.config
        tags = {"stratum.strategy": config.strategy, "stratum.model": config.model,
                "stratum.dataset": config.dataset, "stratum.seed": str(config.seed)}
        if run.fit_tag:
            tags["stratum.fit_tag"] = run.fit_tag
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name(run), tags=tags).info.run_id
        params = [Param(key, value) for key, value in params_of(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def _log_metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self.run_id is not None:
            self._log_metrics({**numbers(record), "global_step": float(run.global_step)}, epoch)

    @hookimpl
    def stratum_fit_end(self, run, summary):
        if self.run_id is None:
            return
        top = {key: value for key, value in summary.items() if not isinstance(value, dict)}
        self._log_metrics({f"final.{key}": value for key, value in numbers(top).items()}, run.epoch)
        self.client.log_dict(self.run_id, summary, "summary.json")
        self.client.set_terminated(self.run_id, "FINISHED")
        summary["mlflow_run_id"] = self.run_id
        self.run_id = None
