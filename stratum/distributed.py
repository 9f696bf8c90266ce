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

from .errors import StratumError
from .hookspecs import hookimpl


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


class PeerFailure(StratumError):
    """Another rank of a torchrun job failed; this rank stops as well."""


# Words of the errors a collective raises when a peer process is gone (gloo over TCP, NCCL,
# the store); an error carrying one of them on a multi-rank run is blamed on the peer.
_PEER_GONE = ("connection closed by peer", "connection reset by peer", "broken pipe", "gloo", "nccl",
              "socket timeout", "remote worker")


def peer_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a collective failing because a peer rank died."""
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", None)
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PeerFailure):
            return True
        if dist_error is not None and isinstance(e, dist_error):
            return True
        if isinstance(e, RuntimeError) and any(word in str(e).lower() for word in _PEER_GONE):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return False


def shutdown() -> None:
    """Leave the process group together with the other ranks (a no-op outside torchrun).

    Raises :class:`PeerFailure` when a peer is gone before reaching this point
    (it failed: its own error line is already out).
    """
    if is_initialized():
        dist = _dist()
        # Leave together: a rank that tears gloo down while rank 0 is still writing results
        # has been seen to abort in C++ ("terminate called without an active exception").
        try:
            dist.barrier()
        except RuntimeError:
            if world_size() > 1:
                raise PeerFailure("another rank failed (its error is above); this rank stops too") from None
        gc.collect()  # free the DDP wrapper (its reducer holds the group) before the group goes
        dist.destroy_process_group()


def fail_fast(exc: BaseException, report) -> None:
    """Called with the exception that ends a command; returns only outside a multi-rank run.

    On a torchrun rank the normal way out (unwinding, then a barrier in
    :func:`shutdown`) would hang: the peers may sit in an all-reduce this
    rank never joins. So the rank prints its one line at once through
    ``report(exc, "rank N: ") -> exit code`` (a collective failing because a
    peer died becomes "another rank failed": the peer's own line came first,
    since it printed before it exited) and leaves with ``os._exit``, closing
    its connections; peers blocked on it then fail within moments, and
    torchrun exits non-zero. In a single process it tidies up and returns, so
    the caller re-raises as usual.
    """
    if not is_initialized() or world_size() < 2:
        try:
            shutdown()
        except Exception:  # pragma: no cover - a one-process group has no peers to lose
            pass
        return
    import sys

    if not isinstance(exc, PeerFailure) and peer_failed(exc):
        exc = PeerFailure("another rank failed (its error is above); this rank stops too")
    try:
        code = report(exc, f"rank {rank()}: ")
    except BaseException:  # pragma: no cover - never let reporting keep a rank alive
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # pragma: no cover
            pass
    os._exit(code or 1)


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
    """A batch source seen by one rank: its slice of every global batch.

    A global batch of ``n`` samples is split into ``world`` shards (sizes
    differ by at most one) and this rank keeps shard ``rank``, weighted
    ``len(shard) / n``. A batch too small to give every rank a shard (``n <
    world``) is computed whole on every rank with weight ``1 / world``; so is a
    batch whose split would leave some rank a one-sample shard when the inner
    source has ``drop_single`` set (a model with batch norm: ``n < 2 * world``).
    Either way the summed gradient is the mean over the whole batch.
    """

    def __init__(self, inner, rank_: int, world: int, weight: _Weight):
        self.inner = inner
        self.rank = rank_
        self.world = world
        self.weight = weight
        self.drop_single = bool(getattr(inner, "drop_single", False))
        self.dropped_tail_samples = getattr(inner, "dropped_tail_samples", 0)

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, generator, start: int = 0):
        batches = self.inner.epoch(generator, start=start)
        smallest = 2 * self.world if self.drop_single else self.world
        try:
            for x, y in batches:
                n = len(y)
                if n >= smallest:
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
