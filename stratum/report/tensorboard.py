"""TensorBoard logging through torch's SummaryWriter.

* :class:`TensorBoardLogger`: the ``tensorboard`` logger (``--log tensorboard``,
  directory ``--tensorboard-dir DIR``; the deprecated ``--tensorboard DIR`` selects it
  too). Per epoch it logs train/val/test loss, accuracies, epoch seconds and phase
  seconds (when ``--profile phases`` runs); every ``LOSS_EVERY`` steps the training loss.
* :func:`export_histories`: writes the stored history of bench runs, one
  sub-directory per configuration and seed (``stratum report --tensorboard``).

A log's directory is the run's identity, never the clock:
``DIR/<strategy>-<model>-<dataset>-seed<N>-<config hash>/`` (see :func:`run_log_name`),
plus ``<fit tag>/`` for strategies that fit several times (a lottery search
sets ``run.fit_tag`` to ``L01-ticket`` ...). Epoch scalars (step = epoch) live
in that directory, the per-step training loss (step = global step) in its
``steps/`` sub-directory, so that each has one step unit to purge by. A resumed
fit continues the same log and purges what was logged after its checkpoint
(``SummaryWriter(purge_step=...)``); a fresh fit of the same identity replaces
the earlier log (purge from step 0). Every name passes :func:`stratum.paths.slug`
and :func:`stratum.paths.safe_join`, so no label can leave ``DIR``.

The ``tensorboard`` package is an optional dependency (``stratum[tensorboard]``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import ConfigError
from ..paths import safe_join, slug, unique_slug, writing
from ..hookspecs import hookimpl

LOSS_EVERY = 10
MISSING_PACKAGE = "TensorBoard logging needs the tensorboard package: pip install 'stratum[tensorboard]'"
STEPS_SUBDIR = "steps"
_SCALARS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_s", "cum_s", "cum_all_in_s",
            # the raw model's, beside the weight average's val/test (--average)
            "raw_val_loss", "raw_val_acc", "raw_test_loss", "raw_test_acc")
_EVENT_TIME = re.compile(r"^events\.out\.tfevents\.(\d+)\.")


def summary_writer(log_dir: Path, purge_step: int | None = None):
    """A torch ``SummaryWriter`` writing into ``log_dir``; ``purge_step`` hides earlier events at
    steps >= it. Raises :class:`ConfigError` when the tensorboard package is missing and
    :class:`~stratum.errors.OutputError` when ``log_dir`` cannot be written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(MISSING_PACKAGE) from None
    if purge_step is not None:
        _after_existing_event_files(Path(log_dir))
    with writing(log_dir, "--tensorboard"):
        return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _after_existing_event_files(log_dir: Path) -> None:
    """Event files are read in name order, and their names start with the wall-clock second.
    A purge only hides events read *before* it, so a new file must sort after the existing
    ones: wait (at most about a second) until the clock has passed the newest of them."""
    try:
        stamps = [int(m.group(1)) for p in log_dir.iterdir() if (m := _EVENT_TIME.match(p.name))]
    except OSError:
        return
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if 0 < wait <= 2:
            time.sleep(wait)


def run_log_name(config) -> str:
    """The directory name of a run's log: strategy, model, data set, seed and config hash."""
    return slug(f"{config.strategy}-{config.model}-{config.dataset}-seed{config.seed}-{config.fingerprint()[:8]}")


def run_log_dir(run, directory: Path | None = None) -> Path:
    """Where ``run``'s current fit logs: ``DIR/<run log name>[/<fit tag>]``, checked to stay in DIR
    (``directory``; default the run's ``--tensorboard``)."""
    parts = [run_log_name(run.config)]
    tag = getattr(run, "fit_tag", None)
    if tag:
        parts.append(slug(tag, fallback="fit"))
    return safe_join(Path(run.config.tensorboard if directory is None else directory), *parts)


def log_record(writer, record: dict, step: int) -> None:
    for key in _SCALARS:
        value = record.get(key)
        if value is not None:
            writer.add_scalar(f"epoch/{key}", value, step)
    for phase, seconds in (record.get("phases_s") or {}).items():
        writer.add_scalar(f"phases_s/{phase}", seconds, step)


class TensorBoardLogger:
    """Logs every fit of a run under ``directory`` (``DIR/<run log name>[/<fit tag>]``, one
    directory per fit: see :func:`run_log_dir`)."""

    def __init__(self, run, directory: Path):
        self.directory = Path(directory)
        self.log_dir = run_log_dir(run, self.directory)
        self.saved_dir: Path | None = None  # from a checkpoint, for the fit about to resume
        self.writer = None
        self.step_writer = None

    def state_dict(self) -> dict:
        """The log directory, so a resumed run goes on writing where it left off."""
        return {"log_dir": str(self.log_dir)}

    def load_state_dict(self, state: dict) -> None:
        """Continue in the saved log directory, unless this run names another directory."""
        self.saved_dir = Path(state["log_dir"])

    @hookimpl
    def stratum_fit_start(self, run):
        self.log_dir = run_log_dir(run, self.directory)  # this fit's (run.fit_tag)
        if self.saved_dir is not None and self.saved_dir.parent == self.log_dir.parent:
            self.log_dir = self.saved_dir
        self.saved_dir = None
        # A resumed fit arrives here with its checkpoint's epoch and step restored.
        resumed = run.epoch > 0 or run.global_step > 0
        self.writer = summary_writer(self.log_dir, purge_step=run.epoch + 1 if resumed else 0)
        self.step_writer = summary_writer(self.log_dir / STEPS_SUBDIR, purge_step=run.global_step + 1 if resumed else 0)
        if not resumed:
            self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in run.config.to_dict().items()), 0)

    @hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self.step_writer is not None and loss is not None and run.global_step % LOSS_EVERY == 0:
            with writing(self.log_dir, "--tensorboard"):
                self.step_writer.add_scalar("step/train_loss", float(loss), run.global_step)

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self.writer is not None:
            with writing(self.log_dir, "--tensorboard"):
                log_record(self.writer, record, epoch)
                self.writer.add_text("mode", str(record.get("mode")), epoch)
                # On disk at every epoch end: an interrupted fit never reaches stratum_fit_end.
                self.writer.flush()
                self.step_writer.flush()

    @hookimpl
    def stratum_fit_end(self, run, summary):
        if self.writer is not None:
            self.close()
            summary["tensorboard_dir"] = str(self.log_dir)

    def close(self) -> None:
        """Flush and close the writers (also when a fit ends by an error or a signal)."""
        writers = [w for w in (self.writer, self.step_writer) if w is not None]
        self.writer = self.step_writer = None
        with writing(self.log_dir, "--tensorboard"):
            for writer in writers:
                writer.flush()
                writer.close()

    def __del__(self):  # an interrupted fit never reaches stratum_fit_end
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def export_histories(records: list[dict], directory: Path) -> int:
    """Write every finished stored run's per-epoch history into ``directory``; returns how many runs.

    One sub-directory per configuration label (made a safe, distinct slug) and seed. Raises
    :class:`~stratum.errors.UnsafePathError` if a path would leave ``directory`` (it cannot for
    slugs, the check guards symlinks) and :class:`ConfigError` without the tensorboard package.
    """
    count = 0
    names: dict[str, str] = {}
    taken: set = set()
    for row in records:
        summary = row.get("summary")
        if row.get("status") != "done" or not summary:
            continue
        label = str(row["label"])
        if label not in names:
            names[label] = unique_slug(label, taken, fallback="config")
        writer = summary_writer(safe_join(Path(directory), names[label], f"seed{int(row['seed'])}"))
        with writing(directory, "--tensorboard"):
            try:
                for i, record in enumerate(summary.get("history", []), start=1):
                    log_record(writer, record, record.get("epoch", i))
            finally:
                writer.close()
        count += 1
    return count
