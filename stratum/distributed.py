"""Data-parallel training under ``torchrun`` (DDP): gloo on CPU, nccl on CUDA.

``torchrun --nproc-per-node N -m stratum run ...`` starts N processes with
``RANK``/``WORLD_SIZE`` set; :func:`init_from_environment` joins them into a
process group. Then, for every fit, the :class:`DataParallel` extension

* wraps the model in ``DistributedDataParallel`` for the training forward
  (``run.train_module``); ``run.model`` stays the plain module, so
  checkpoints, evaluation and strategies see the same names as in a single
  process;
* shards each *global* batch across the ranks: every rank draws the same
  shuffled batch of ``--batch-size`` samples (same seed) and keeps its slice,
  so the effective batch is ``--batch-size`` whatever the number of processes;
* averages gradients with a weighted all-reduce: each rank's gradient is
  weighted by its share of the batch (``n_rank / n_batch``) and summed, which
  is exactly the gradient of the mean loss over the whole batch, also when the
  last batch does not split evenly. A batch smaller than the number of ranks
  is computed whole on every rank with weight ``1 / world``.

Every rank evaluates the full validation and test sets (the models are
identical after each step), so early stopping and switching decide the same
everywhere. Only rank 0 writes checkpoints, summaries, TensorBoard logs and
traces, and prints. Known differences from one process: ``train_loss`` in the
history is rank 0's shard mean; batch-norm statistics are per shard.
"""

from __future__ import annotations

import gc
import os

from .plugin_manager import hookimpl


def _dist():
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    try:
        dist = _dist()
    except ImportError:  # pragma: no cover
        return False
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return _dist().get_world_size() if is_initialized() else 1


def rank() -> int:
    return _dist().get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def init_from_environment(device: str = "auto") -> bool:
    """Join the process group torchrun describes; returns whether this is a distributed run."""
    if not launched_by_torchrun() or is_initialized():
        return is_initialized()
    import torch

    from .errors import ConfigError

    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda under torchrun, but no CUDA device is available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
    backend = "nccl" if wants_cuda else "gloo"
    try:
        _dist().init_process_group(backend=backend)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the torchrun process group ({backend}): {exc}") from None
    return True


def shutdown() -> None:
    if is_initialized():
        dist = _dist()
        # Leave together: a rank that tears gloo down while rank 0 is still writing results
        # has been seen to abort in C++ ("terminate called without an active exception").
        try:
            dist.barrier()
        except RuntimeError:
            pass  # a peer is gone already; nothing left to wait for
        gc.collect()  # free the DDP wrapper (its reducer holds the group) before the group goes
        dist.destroy_process_group()


class _Weight:
    """This rank's share of the current global batch, read by the all-reduce hook."""

    value = 1.0


def weighted_allreduce(state: _Weight, bucket):
    """DDP communication hook: sum of per-rank gradients weighted by batch share."""
    dist = _dist()
    tensor = bucket.buffer()
    tensor.mul_(state.value)
    future = dist.all_reduce(tensor, async_op=True).get_future()
    return future.then(lambda f: f.value()[0])


class ShardedBatches:
    """A batch source seen by one rank: its slice of every global batch."""

    def __init__(self, inner, rank_: int, world: int, weight: _Weight):
        self.inner = inner
        self.rank = rank_
        self.world = world
        self.weight = weight

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, generator, start: int = 0):
        batches = self.inner.epoch(generator, start=start)
        try:
            for x, y in batches:
                n = len(y)
                if n >= self.world:
                    x, y = x.tensor_split(self.world)[self.rank], y.tensor_split(self.world)[self.rank]
                    self.weight.value = len(y) / n
                else:
                    self.weight.value = 1.0 / self.world
                yield x, y
        finally:
            batches.close()


class DataParallel:
    """Run-scoped plugin: DDP forward, sharded batches, weighted gradient averaging."""

    def __init__(self, run):
        self.weight = _Weight()
        self._inner_batches = None

    @hookimpl
    def stratum_fit_start(self, run):
        import torch
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.cuda.current_device()] if run.device.type == "cuda" else None
        ddp = DistributedDataParallel(run.model, device_ids=device_ids)
        ddp.register_comm_hook(self.weight, weighted_allreduce)
        run.train_module = ddp
        self._inner_batches = run.train_batches
        run.train_batches = ShardedBatches(run.train_batches, rank(), world_size(), self.weight)

    @hookimpl
    def stratum_fit_end(self, run, summary):
        run.train_module = None
        if self._inner_batches is not None:
            run.train_batches = self._inner_batches
        summary["distributed"] = {"world_size": world_size(), "backend": _dist().get_backend(),
                                  "effective_batch_size": run.config.batch_size}


def data_parallel_extension(run, options):
    """Extension factory: take part only in a multi-process run."""
    return DataParallel(run) if world_size() > 1 else None
