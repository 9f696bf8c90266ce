"""Engine overhead: stratum's sgd epoch against a plain PyTorch loop (and PyTorch Lightning).

Everything is held equal: the same model (VGG11, width 0.25, he-normal, same
seed), the same training tensors (synthetic 3x32x32, the training split stratum
uses), batch 128, plain SGD with the same lr/momentum, the same thread count,
the same device.

The stratum run and the plain loop are interleaved in one process: after
every stratum epoch, a ``stratum_epoch_end`` hook runs one plain epoch on a
separate copy of the model, so both see the same machine conditions. Only
the training pass is compared (from the first step's start to the last step's
end); evaluation is excluded from both. The ratio is median over epochs.

Lightning (optional, ``pip install -e .[bench]``) runs afterwards with a
DataLoader over a TensorDataset, the usual way to feed it tensors, and is
compared against a fresh block of plain-loop epochs run right before it.

    python benchmarks/engine_overhead.py --epochs 7 --threads 2
    python benchmarks/engine_overhead.py --epochs 7 --threads 2 --average ema --no-lightning

With ``--average ema`` stratum runs with ``--average ema --ema-decay 0.999`` and the plain loop
updates a ``torch.optim.swa_utils.AveragedModel`` (EMA of weights and buffers) after every step,
so the ratio is the engine's overhead with weight averaging on in both.

With ``--schedule cosine --warmup-steps W`` (and optionally ``--clip-grad-norm M``) stratum runs
with that schedule (and clipping), and the plain loop does the same work by hand: a torch
``LambdaLR`` with the same warm-up and cosine, stepped every step (and ``clip_grad_norm_``), so
the ratio is the engine's overhead with a schedule on (issue 12: <= 1.03x).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

import harness
import stratum
from stratum.seeding import generator


def plain_epoch(model, optimizer, x, y, batch_size, gen, ema=None, scheduler=None, clip_norm: float = 0.0) -> float:
    """A hand-written training pass: shuffle, slice, forward, loss, backward, (clip,) step, (scheduler step,)
    then ``ema.update_parameters(model)`` when an ``AveragedModel`` is given."""
    model.train()
    order = torch.randperm(len(x), generator=gen)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        index = order[i:i + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
    return time.perf_counter() - t0


def plain_scheduler(optimizer, schedule: str, warmup: int, total: int):
    """The plain loop's torch scheduler doing the work of ``--schedule`` (None for constant)."""
    import math

    if schedule == "constant" and not warmup:
        return None

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        return (1 + math.cos(math.pi * min(t - warmup, total - warmup) / (total - warmup))) / 2

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Interleave:
    """Times stratum's training pass and runs one plain epoch after each stratum epoch."""

    def __init__(self, plain_model, plain_optimizer, x, y, batch_size, seed, ema=None, scheduler=None, clip_norm=0.0):
        self.plain_model, self.plain_optimizer, self.ema = plain_model, plain_optimizer, ema
        self.scheduler, self.clip_norm = scheduler, clip_norm
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = generator(seed, "shuffle")
        self.stratum_s, self.plain_s = [], []
        self._t0 = 0.0
        self._last_step_end = 0.0

    @stratum.hookimpl(tryfirst=True)
    def stratum_epoch_start(self, run, epoch, mode):
        self._t0 = time.perf_counter()

    @stratum.hookimpl(trylast=True)
    def stratum_after_train_step(self, run, step, loss):
        self._last_step_end = time.perf_counter()

    @stratum.hookimpl(trylast=True)
    def stratum_epoch_end(self, run, epoch, record):
        self.stratum_s.append(self._last_step_end - self._t0)
        self.plain_s.append(plain_epoch(self.plain_model, self.plain_optimizer, self.x, self.y, self.batch_size, self.gen,
                                        self.ema, self.scheduler, self.clip_norm))


def lightning_epochs(model, x, y, batch_size, lr, momentum, epochs) -> list[float]:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, _):
            xb, yb = batch
            return torch.nn.functional.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=momentum)

    class Timer(pl.Callback):
        def __init__(self):
            self.times = []

        def on_train_epoch_start(self, trainer, module):
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.times.append(time.perf_counter() - self._t0)

    timer = Timer()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
    )
    trainer.fit(Module(), loader)
    return timer.times


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, threads=2)
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--no-lightning", action="store_true")
    parser.add_argument("--average", choices=("none", "ema"), default="none",
                        help="ema: stratum --average ema --ema-decay 0.999 against a plain loop with the same EMA")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="stratum's --schedule; the plain loop runs the same schedule through a torch LambdaLR")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (both loops)")
    parser.add_argument("--clip-grad-norm", type=float, default=0.0, help="gradient norm clipping (both loops; 0 = off)")
    args = parser.parse_args(argv)

    from stratum.engine import Trainer

    harness.set_threads(args.threads)
    values = dict(
        strategy="sgd", model="vgg11", width=args.width, dataset="synthetic", synthetic_train=args.train_size,
        batch_size=args.batch_size, lr=0.005, momentum=0.9, epochs=args.epochs + 1, threads=args.threads,
        device="cpu", seed=0, schedule=args.schedule, warmup_steps=args.warmup_steps, clip_grad_norm=args.clip_grad_norm,
        **({"average": "ema", "ema_decay": 0.999} if args.average == "ema" else {}),
    )
    run = harness.build(values)
    config = run.config
    x, y = run.data.train.x, run.data.train.y
    plain_model = copy.deepcopy(run.model)
    plain_optimizer = torch.optim.SGD(plain_model.parameters(), lr=config.lr, momentum=config.momentum)
    ema = None
    if args.average == "ema":
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(plain_model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    scheduler = plain_scheduler(plain_optimizer, args.schedule, args.warmup_steps,
                                config.epochs * run.steps_per_data_epoch)
    interleave = Interleave(plain_model, plain_optimizer, x, y, config.batch_size, config.seed, ema, scheduler,
                            args.clip_grad_norm)
    Trainer(harness.plugin_manager(), extra_plugins=[("interleave", interleave)]).fit(run)

    # Drop the first (warm-up) epoch of each.
    stratum_s, plain_s = interleave.stratum_s[1:], interleave.plain_s[1:]
    result = {
        "setup": {"model": "vgg11", "width": args.width, "dataset": "synthetic 3x32x32", "train_samples": len(x),
                  "batch_size": args.batch_size, "threads": args.threads, "device": "cpu", "timed_epochs": len(stratum_s),
                  "average": args.average, "schedule": args.schedule, "warmup_steps": args.warmup_steps,
                  "clip_grad_norm": args.clip_grad_norm},
        "plain_epoch_s_median": statistics.median(plain_s),
        "stratum_epoch_s_median": statistics.median(stratum_s),
        "stratum_over_plain_median_of_ratios": harness.median_ratio(stratum_s, plain_s),
        "stratum_over_plain_ratio_of_medians": statistics.median(stratum_s) / statistics.median(plain_s),
    }
    if not args.no_lightning:
        try:
            lightning_model = copy.deepcopy(plain_model)
            plain_again = [plain_epoch(plain_model, plain_optimizer, x, y, config.batch_size, interleave.gen)
                           for _ in range(args.epochs)]
            lightning = lightning_epochs(lightning_model, x.cpu(), y.cpu(), config.batch_size, config.lr,
                                         config.momentum, args.epochs + 1)[1:]
            result["lightning_epoch_s_median"] = statistics.median(lightning)
            result["plain_epoch_s_median_before_lightning"] = statistics.median(plain_again)
            result["lightning_over_plain"] = statistics.median(lightning) / statistics.median(plain_again)
        except ImportError:
            result["lightning"] = "not installed (pip install -e .[bench])"

    for key, value in result.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return harness.finish(args, result)


if __name__ == "__main__":
    main()
