"""The speed knobs ``--channels-last`` and ``--compile`` (``--precision`` is :mod:`.precision`).

* ``--channels-last``: :func:`use_channels_last` converts the model's parameters and buffers to
  ``torch.channels_last`` (``module.to(memory_format=...)``, the same Parameter objects) and
  registers a forward pre-hook that converts every 4-D input to ``channels_last``, so training,
  evaluation and any strategy's own forward passes get NHWC batches without the engine or the data
  pipeline changing. :func:`check_channels_last` refuses data whose inputs are not images
  (C, H, W) and models without a 4-D (convolution) weight.
* ``--compile``: :func:`training_forward` returns ``torch.compile(module, backend=...)`` of the
  module the training forward goes through (``run.train_module`` under torchrun, else
  ``run.model``), built once per module. Only the **training** forward is compiled: evaluation
  runs the eager model (evaluation in eval mode under ``no_grad`` would compile graphs of its own
  for a small share of the time, and averaged copies of the model stay plain modules). Compilation
  happens lazily at the first forward (and backward) and again when a shape changes (a last,
  smaller batch). :func:`take_compile_s` reads the seconds torch's compiler spent
  (``torch._dynamo.utils.compilation_time_metrics``: frame compilation plus the lazy backward
  compilation), which the engine takes out of ``train_s`` and adds to ``run.compile_s``: reported
  as ``compile_s``, counted in ``cum_all_in_s`` and not in ``cum_s``.
  :func:`check_compile` refuses ``--compile-backend inductor`` when no C++ compiler is found.
"""

from __future__ import annotations

import os
import shutil
import sys

import torch

from ..errors import ConfigError

#: dynamo's compile-time metrics that hold the whole compile of a frame (forward, and the joint
#: graph when compiled eagerly) and the lazy compile of a backward graph; they do not nest.
COMPILE_METRICS = ("_compile.compile_inner", "backward._backward_impl")


def check_channels_last(model: torch.nn.Module, input_shape, model_name: str, dataset_name: str) -> None:
    """Refuse ``--channels-last`` for inputs that are not images or a model without convolutions.

    ``input_shape``: one sample's shape, which must be (C, H, W). Raises :class:`ConfigError`.
    """
    if len(tuple(input_shape)) != 3:
        shape = "x".join(map(str, input_shape))
        raise ConfigError(f"--channels-last needs image data (C, H, W): dataset {dataset_name!r} has inputs of shape {shape}")
    if not any(p.dim() == 4 for p in model.parameters()):
        raise ConfigError(f"--channels-last needs a convolutional model: model {model_name!r} has no 4-D (convolution) weight")


def _to_channels_last(module, args):
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def use_channels_last(model: torch.nn.Module):
    """Convert ``model`` (in place) to ``torch.channels_last`` and make it convert its 4-D inputs.

    Returns the hook handle (``handle.remove()`` stops the input conversion)."""
    model.to(memory_format=torch.channels_last)
    return model.register_forward_pre_hook(_to_channels_last)


def check_compile(backend: str, device: torch.device) -> None:
    """Refuse ``--compile`` where it cannot work: the ``inductor`` backend generates C++ and needs a
    compiler, looked for as inductor's default search does (``$CXX``, else ``g++`` on ``PATH``).
    ``aot_eager`` and ``eager`` need none. Raises :class:`ConfigError`."""
    if backend != "inductor":
        return
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise ConfigError(
            f"--compile cannot work here: the inductor backend needs a C++ compiler and {compiler!r} was not found "
            "(install g++ or set CXX, or use --compile-backend aot_eager)"
        )


def training_forward(run) -> torch.nn.Module:
    """The module the training forward goes through: ``run.train_module`` or ``run.model``, under
    ``torch.compile(backend=--compile-backend)`` with ``--compile`` (compiled once per module)."""
    module = run.train_module if run.train_module is not None else run.model
    if not run.config.compile:
        return module
    cached = run.state.get("_compiled_forward")
    if cached is None or cached[0] is not module:
        cached = (module, torch.compile(module, backend=run.config.compile_backend))
        run.state["_compiled_forward"] = cached
    return cached[1]


def compile_seconds() -> float:
    """Seconds torch's compiler has spent in this process so far (0 before it was first used)."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    metrics = getattr(dynamo_utils, "compilation_time_metrics", None) or {}
    return float(sum(sum(metrics.get(key, ())) for key in COMPILE_METRICS))


def take_compile_s(run) -> float:
    """Compile seconds since the previous call for ``run`` (0 without ``--compile``), added to
    ``run.compile_s``. The engine subtracts them from the clock of the phase they fell in."""
    if not run.config.compile:
        return 0.0
    now = compile_seconds()
    seconds = max(0.0, now - run.state.get("_compile_mark", now))
    run.state["_compile_mark"] = now
    run.compile_s += seconds
    return seconds
