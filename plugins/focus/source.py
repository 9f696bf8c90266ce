"""Building a prior: an SGD *source run* with a :class:`~.capture.Capture` attached.

Used by ``stratum prior build`` and by ``stratum run --strategy focus`` when no
``--prior`` is given; :class:`CaptureExtension` (``--capture-out``) writes a prior
from any run the same way. The source run is a normal stratum run of strategy
``sgd`` on the same model and data set as asked, with its own seed; an optional
``data_fraction`` trains it on a seeded random subset of the *training* split
(never validation or test). Global random state (torch, numpy, python) is saved
before and restored after, so building a prior inside a run leaves that run's
own random streams exactly as they were.
"""

from __future__ import annotations

import datetime as _dt
import random
import time

import attrs
import numpy as np
import torch

import stratum
from stratum.data import has_batch_norm, make_batches
from stratum.engine import Trainer, build_run, versions
from stratum.seeding import generator as derived_generator
from stratum.seeding import rng_state, set_rng_state

from .capture import Capture, CaptureConfig
from .prior import FORMAT, Prior, save_prior

# Options of the target run that must not leak into a source run.
_SOURCE_RESETS = dict(strategy="sgd", out=None, json=None, name=None, resume=False, profile=(),
                      log=(), tensorboard=None, quiet=True, patience=0)


def source_config(config, *, seed: int, epochs: int):
    """The target's config turned into the SGD source run's config."""
    # The source run writes no extra prior, and captures and reports its raw weights (no --average).
    options = {k: v for k, v in config.options.items() if k not in ("capture_out", "average", "ema_decay",
                                                                   "ema_half_life", "ema_warmup", "swa_start")}
    return attrs.evolve(config, seed=seed, epochs=epochs, options=options, **_SOURCE_RESETS)


def _subset(run, fraction: float, seed: int) -> None:
    train = run.data.train
    n = len(train)
    keep = max(run.config.batch_size, int(round(n * fraction)))
    if keep >= n:
        return
    index = torch.randperm(n, generator=derived_generator(seed, "prior-subset"))[:keep].sort().values
    if hasattr(train, "take"):
        subset = train.take(index.to(train.x.device))
    else:
        subset = torch.utils.data.Subset(train, index.tolist())
    run.data.train = subset
    run.train_batches = make_batches(subset, run.config.batch_size, run.device, run.data.bundle.batch_transform,
                                     run.config.loader_workers, drop_single=has_batch_norm(run.model),
                                     augment=getattr(run.train_batches, "augment", None))


def make_capture(capture_config: CaptureConfig) -> Capture:
    """The capture for ``capture_config``: nowcast windows when it has nowcast geometry, else per-step rows."""
    if capture_config.nowcast is not None:
        from .nowcast import NowcastCapture

        return NowcastCapture(capture_config)
    return Capture(capture_config)


def build_prior(config, pm, capture_config: CaptureConfig, *, data_fraction: float = 1.0) -> tuple[Prior, dict]:
    """Train the source run described by ``config`` (strategy sgd) while capturing; return the prior.

    ``config`` is used as given (seed, epochs, model, data ...); the caller
    makes it a source config with :func:`source_config` when needed. Returns
    ``(prior, info)`` where ``info`` has ``seconds`` (wall clock of the whole
    build), ``capture_s`` and the source run's summary essentials.
    """
    t0 = time.perf_counter()
    saved = (rng_state(), random.getstate(), np.random.get_state())
    try:
        run = build_run(config, pm)
        if data_fraction < 1.0:
            _subset(run, data_fraction, config.seed)
        capture = make_capture(capture_config)
        trainer = Trainer(pm, extra_plugins=[("focus-capture", capture)])
        summary = trainer.fit(run)
    finally:
        set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])
    prior = prior_from_capture(config, pm, capture, summary, data_fraction=data_fraction)
    info = {
        "seconds": time.perf_counter() - t0,
        "capture_s": capture.capture_s,
        "source_seed": config.seed,
        "source_epochs": summary["epochs_run"],
        # the source run's optimizer steps and training examples drawn: the prior's cost in machine-free units
        "source_steps": summary.get("global_steps"),
        "source_samples": (summary.get("global_steps") or 0) * config.batch_size * config.grad_accum,
        "source_best_val_acc": summary.get("best_val_acc"),
        "source_diverged": summary.get("diverged"),
    }
    return prior, info


def prior_from_capture(config, pm, capture: Capture, summary: dict, *, data_fraction: float = 1.0) -> Prior:
    """Assemble a :class:`Prior` (tensors + metadata) from a finished captured run."""
    report = capture.report()
    metadata = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": capture.signature,
        "captured": [
            {"key": key, "shape": info["shape"], "rows": info["rows"], "offered": info["offered"],
             "dead_share": info["dead_share"], "dead_rows": info["dead_rows"]}
            for key, info in report["tensors"].items()
        ],
        # share of tracked elements whose gradient was 0 at every captured step; their rows are left out
        "dead_share": report["dead_share"],
        "model": config.model,
        "model_options": _model_options(config, pm),
        "dataset": config.dataset,
        "split": {"val_fraction": config.val_fraction, "split_seed": config.split_seed,
                  "source": "train split" if data_fraction >= 1.0 else f"random {data_fraction:g} of the train split"},
        "seed": config.seed,
        "strategy": config.strategy,
        "epochs": summary["epochs_run"],
        "steps": summary["global_steps"],
        "source_best_val_acc": summary.get("best_val_acc"),
        "source_diverged": summary.get("diverged"),
        "optimizer": {"name": config.optimizer, "lr": config.lr, "momentum": config.momentum,
                      "nesterov": config.nesterov, "weight_decay": config.weight_decay, "batch_size": config.batch_size},
        "init": config.init,
        "capture": capture.config.to_dict(),
        "capture_report": {k: v for k, v in report.items() if k != "tensors"},
        "versions": versions(),
    }
    return Prior(metadata, capture.tensors())


def _model_options(config, pm) -> dict:
    component = pm.registries.get("model", config.model)
    if component.options is None:
        return {}
    names = {f.name for f in attrs.fields(component.options)}
    from stratum.config import options_for

    opts = options_for(component, config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(opts).items() if k in names}


class CaptureExtension(Capture):
    """``--capture-out PATH``: capture any strategy's run and write a prior when it ends."""

    def __init__(self, config: CaptureConfig, path):
        super().__init__(config)
        self.path = path

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        if not self.attached:
            return
        self.flush()
        prior = prior_from_capture(run.config, run.pm, self, summary)
        save_prior(self.path, prior)
        summary["capture"] = {"prior": str(self.path), "rows": sum(r.size for r in self.reservoirs.values()),
                              "capture_s": self.capture_s, "bytes": self.nbytes()}
