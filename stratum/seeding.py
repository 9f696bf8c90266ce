"""Seeds and determinism."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def derive_seed(seed: int, label: str) -> int:
    """An independent 63-bit seed for one random stream of a run (init, shuffle, ...)."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, label: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, label))


def seed_everything(seed: int) -> None:
    random.seed(derive_seed(seed, "python"))
    np.random.seed(derive_seed(seed, "numpy") % (2**32))
    torch.manual_seed(derive_seed(seed, "torch"))


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels everywhere (CPU and CUDA) when ``enabled``."""
    if enabled:
        # cuBLAS needs this before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only call it when the setting changes: the call imports torch._inductor (~3 s cold).
    if enabled != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled and torch.backends.cudnn.benchmark


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
