"""TensorBoard logging through torch's SummaryWriter.

* :class:`TensorBoardLogger`: a run-scoped plugin the engine attaches when a
  run sets ``--tensorboard DIR``. Per epoch it logs train/val/test loss,
  accuracies, epoch seconds and phase seconds (when ``--profile phases``
  runs); every ``LOSS_EVERY`` steps the training loss. One sub-directory per
  run: ``<strategy>-<model>-<dataset>-seed<N>-<config hash>-<time>``.
* :func:`export_histories`: writes the stored history of bench runs, one
  sub-directory per configuration and seed (``stratum report --tensorboard``).

The ``tensorboard`` package is an optional dependency (``stratum[tensorboard]``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import ConfigError
from ..plugin_manager import hookimpl

LOSS_EVERY = 10
_SCALARS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_s", "cum_s", "cum_all_in_s")


def summary_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'stratum[tensorboard]'") from None
    return SummaryWriter(log_dir=str(log_dir))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text)).strip("_")[:120] or "run"


def log_record(writer, record: dict, step: int) -> None:
    for key in _SCALARS:
        value = record.get(key)
        if value is not None:
            writer.add_scalar(f"epoch/{key}", value, step)
    for phase, seconds in (record.get("phases_s") or {}).items():
        writer.add_scalar(f"phases_s/{phase}", seconds, step)


class TensorBoardLogger:
    def __init__(self, run):
        c = run.config
        name = f"{c.strategy}-{c.model}-{c.dataset}-seed{c.seed}-{c.fingerprint()[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.log_dir = Path(c.tensorboard) / _slug(name)
        self.writer = None

    def state_dict(self) -> dict:
        """The log directory, so a resumed run goes on writing where it left off."""
        return {"log_dir": str(self.log_dir)}

    def load_state_dict(self, state: dict) -> None:
        """Continue in the saved log directory, unless this run names another --tensorboard DIR."""
        saved = Path(state["log_dir"])
        if saved.parent == self.log_dir.parent:
            self.log_dir = saved

    @hookimpl
    def stratum_fit_start(self, run):
        self.writer = summary_writer(self.log_dir)
        self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in run.config.to_dict().items()), 0)

    @hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self.writer is not None and loss is not None and run.global_step % LOSS_EVERY == 0:
            self.writer.add_scalar("step/train_loss", float(loss), run.global_step)

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self.writer is not None:
            log_record(self.writer, record, epoch)
            self.writer.add_text("mode", str(record.get("mode")), epoch)

    @hookimpl
    def stratum_fit_end(self, run, summary):
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
            summary["tensorboard_dir"] = str(self.log_dir)


def export_histories(records: list[dict], directory: Path) -> int:
    """Write every finished stored run's per-epoch history; returns how many runs."""
    count = 0
    for row in records:
        summary = row.get("summary")
        if row.get("status") != "done" or not summary:
            continue
        writer = summary_writer(Path(directory) / _slug(row["label"]) / f"seed{row['seed']}")
        try:
            for record in summary.get("history", []):
                log_record(writer, record, record["epoch"])
        finally:
            writer.close()
        count += 1
    return count
