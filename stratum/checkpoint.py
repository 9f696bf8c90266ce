"""Checkpoints: what a run needs to continue exactly where it stopped.

Written atomically (see :mod:`stratum.io`) and read back with
``weights_only=True``: a checkpoint holds tensors, numbers, strings, lists and
dicts only. The history and config travel as JSON strings so that they never
depend on pickling.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import CheckpointError
from .io import atomic_torch_save, safe_torch_load
from .schema import ANY, Fields, Float, Int, ListOf, MapOf, Optional, Str, check

FORMAT = "stratum-checkpoint/1"
FILENAME = "checkpoint.pt"


# What the engine writes (see Trainer._save); a file missing a field, or holding one of the
# wrong type, is refused with one line naming the file and the field.
HISTORY_ROW = Fields(
    required={"epoch": Int(1), "mode": str, "cum_s": Float(), "cum_all_in_s": Float()},
    optional={"steps": Int(0), "train_loss": Optional(Float()), "val_loss": Optional(Float()),
              "val_acc": Optional(Float()), "test_loss": Optional(Float()), "test_acc": Optional(Float()),
              "train_s": Float(), "val_s": Float(), "test_s": Float(), "epoch_s": Float(),
              "diverged": bool, "stopped_reason": str},
    extra=True,  # plugins add their own entries to a history row
)
RUN_SCHEMA = Fields(
    required={
        "format": Str((FORMAT,)), "fingerprint": str, "config": MapOf(ANY), "history": ListOf(HISTORY_ROW),
        "epoch": Int(0), "step_in_epoch": Int(0), "global_step": Int(0), "mode": str,
        "model": MapOf(torch.Tensor),
        "optimizer": Fields(required={"state": dict, "param_groups": ListOf(dict)}),
        "strategy": dict,
        "shuffle_generator": torch.Tensor, "epoch_generator_state": torch.Tensor,
        "rng": Fields(required={"torch": torch.Tensor}, optional={"cuda": list}),
        "switches": ListOf(Fields(required={"epoch": Int(0), "from": str, "to": str}, optional={"reason": str})),
        "setup_s": Float(), "prior_s": Float(),
        "partial": Fields(optional={"loss_sum": torch.Tensor, "loss_count": Int(0), "train_s": Float()}),
    },
    optional={"plugins": MapOf(dict), "compile_s": Float(), "precision": dict},
    extra=True,
)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically; ``history`` and ``config`` travel as JSON strings."""
    payload = dict(state)
    payload["format"] = FORMAT
    payload["history"] = json.dumps(state.get("history", []), allow_nan=False)
    payload["config"] = json.dumps(state.get("config", {}), allow_nan=False)
    atomic_torch_save(path, payload, "checkpoint")


def load_checkpoint(path: Path, fingerprint: str | None = None, current_config: dict | None = None, ignore=(),
                    schema: Fields | None = None) -> dict:
    """Read a checkpoint (tensors and plain values only) and check its shape.

    ``history`` and ``config`` come back decoded. ``schema`` (e.g.
    :data:`RUN_SCHEMA`) is checked field by field; with ``fingerprint`` the
    file must come from that configuration. Raises :class:`CheckpointError`
    (one line naming the file, and the field where one is at fault) for a
    missing, unsafe, corrupt, mis-shaped or foreign file.
    """
    state = safe_torch_load(path, "checkpoint", CheckpointError)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a stratum checkpoint (it holds {type(state).__name__}, not a table)")
    if state.get("format") != FORMAT:
        found = "is missing" if "format" not in state else f"is {str(state['format'])[:40]!r}"
        raise CheckpointError(f"checkpoint {path} is not a stratum checkpoint (field 'format' {found}, expected {FORMAT!r})")
    for key in ("history", "config"):
        if not isinstance(state.get(key), str):
            problem = "is missing" if key not in state else "must be a JSON string"
            raise CheckpointError(f"checkpoint {path} is corrupt: field {key!r} {problem}")
        try:
            state[key] = json.loads(state[key])
        except json.JSONDecodeError:
            raise CheckpointError(f"checkpoint {path} is corrupt: field {key!r} is not valid JSON") from None
    check(state, Fields(required={"config": MapOf(ANY), "history": ListOf(dict)}, extra=True),
          f"checkpoint {path} is corrupt", CheckpointError)
    if schema is not None:
        check(state, schema, f"checkpoint {path} is corrupt", CheckpointError)
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        differing = describe_difference(state["config"], current_config or {}, ignore)
        differing = f" ({differing})" if differing else ""
        raise CheckpointError(
            f"checkpoint {path} was written by another configuration{differing} "
            "(use a fresh --out directory, or the options it was made with)"
        )
    return state


def describe_difference(saved: dict, current: dict, ignore=()) -> str:
    """The first option whose value differs between two config dicts."""
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        if saved.get(key) != current.get(key):
            return f"{key}: checkpoint has {saved.get(key)!r}, this run has {current.get(key)!r}"
    return ""
