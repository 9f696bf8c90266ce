"""Checkpoints: what a run needs to continue exactly where it stopped.

Written atomically (see :mod:`stratum.io`) and read back with
``weights_only=True``: a checkpoint holds tensors, numbers, strings, lists and
dicts only. The history and config travel as JSON strings so that they never
depend on pickling.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError
from .io import atomic_torch_save, safe_torch_load

FORMAT = "stratum-checkpoint/1"
FILENAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    payload = dict(state)
    payload["format"] = FORMAT
    payload["history"] = json.dumps(state.get("history", []), allow_nan=False)
    payload["config"] = json.dumps(state.get("config", {}), allow_nan=False)
    atomic_torch_save(path, payload, "checkpoint")


def load_checkpoint(path: Path, fingerprint: str | None = None, current_config: dict | None = None, ignore=()) -> dict:
    state = safe_torch_load(path, "checkpoint", CheckpointError)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a stratum checkpoint")
    try:
        state["history"] = json.loads(state["history"])
        state["config"] = json.loads(state["config"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path} is corrupt (unreadable history or config)") from None
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
