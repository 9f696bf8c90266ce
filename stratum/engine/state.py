"""Checkpoint state: what a checkpoint of a run holds, writing it and reading it back.

The file format and its checks are :mod:`stratum.checkpoint`'s; this module decides what goes
in (model, optimizer, strategy and run-scoped plugin states, generators, history, clocks) and
puts it back into a :class:`~stratum.engine.run.Run`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import RUN_SCHEMA as CHECKPOINT_SCHEMA
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import non_trajectory_keys
from ..errors import StratumError
from ..seeding import rng_state, set_rng_state
from .run import Run


def save_state(run: Run, path: Path, *, step_in_epoch: int, partial: dict | None, plugins: dict) -> None:
    """Write ``run``'s checkpoint to ``path`` (atomically; rank 0 only; never a diverged state).

    ``step_in_epoch``: steps of the current epoch done (0 at an epoch end); ``partial``: the
    epoch's running sums when interrupted mid-epoch; ``plugins``: the fit's run-scoped plugins
    by stable name, whose ``state_dict()`` is kept. Raises :class:`~stratum.errors.OutputError`
    when the file cannot be written.
    """
    from ..distributed import is_main_process

    if not is_main_process():
        return  # under torchrun every rank holds the same state; rank 0 writes it
    if not all(torch.isfinite(p).all() for p in run.model.parameters()):
        return  # never persist a diverged state: the last good checkpoint stays
    state = {
        "fingerprint": run.config.fingerprint(),
        "config": run.config.to_dict(),
        "epoch": run.epoch,
        "step_in_epoch": step_in_epoch,
        "global_step": run.global_step,
        "mode": run.mode,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "strategy": run.strategy.state_dict(),
        "shuffle_generator": run.shuffle_generator.get_state(),
        "epoch_generator_state": run.state.get("_epoch_generator_state", run.shuffle_generator.get_state()),
        "rng": rng_state(),
        "history": run.history,
        "switches": [dict(s) for s in run.switches],
        "setup_s": run.setup_s,
        "prior_s": run.prior_s,
        "compile_s": run.compile_s,
        "precision": run.precision.state_dict(),
        "partial": partial or {},
        "plugins": {key: plugin.state_dict() for key, plugin in plugins.items()
                    if callable(getattr(plugin, "state_dict", None))},
    }
    save_checkpoint(path, state)


def restore_state(run: Run, path: Path) -> tuple[int, dict | None, dict]:
    """Load the checkpoint at ``path`` into ``run`` (model, optimizer, strategy, generators,
    history ...). Returns ``(step_in_epoch, partial, plugin states)``. Raises
    :class:`~stratum.errors.CheckpointError` for a corrupt checkpoint or one of another run."""
    state = load_checkpoint(path, run.config.fingerprint(), run.config.to_dict(), non_trajectory_keys(run.config),
                            schema=CHECKPOINT_SCHEMA)
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.strategy.load_state_dict(state["strategy"])
        run.shuffle_generator.set_state(state["shuffle_generator"])
        run.state["_epoch_generator_state"] = state["epoch_generator_state"]
        set_rng_state(state["rng"])
        run.precision.load_state_dict(state.get("precision") or {})
    except (KeyError, IndexError, AttributeError, RuntimeError, ValueError, TypeError) as exc:
        from ..errors import CheckpointError

        raise CheckpointError(f"checkpoint {path} does not fit this run ({type(exc).__name__}: {str(exc)[:120]})") from None
    run.epoch = state["epoch"]
    run.global_step = state["global_step"]
    run.mode = state["mode"]
    run.history = state["history"]
    run.switches = list(state.get("switches", []))
    run.setup_s = state.get("setup_s", 0.0)
    run.prior_s = state.get("prior_s", 0.0)
    run.compile_s = state.get("compile_s", 0.0)
    partial = state.get("partial") or None
    return state.get("step_in_epoch", 0), partial, state.get("plugins") or {}


def restore_plugin_states(plugins: dict, states: dict, path) -> None:
    """Hand each run-scoped plugin (``plugins``: stable name -> plugin) the state it saved in the
    checkpoint (before fit_start). Raises :class:`~stratum.errors.CheckpointError` when it does not fit."""
    from ..errors import CheckpointError

    for key, plugin in plugins.items():
        loader = getattr(plugin, "load_state_dict", None)
        if key not in states or not callable(loader):
            continue
        try:
            loader(states[key])
        except StratumError:
            raise
        except (KeyError, IndexError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} does not fit this run: state of plugin {key!r} "
                f"({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
