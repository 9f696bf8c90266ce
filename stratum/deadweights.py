"""Structurally dead parameters: weights that can never receive a gradient for an input shape.

Two causes are counted, both exact and independent of data and weights:

* **padding-only conv taps.** A zero-padded convolution on a small map has
  kernel taps that, for every output position, fall on padding. Their weights
  multiply zeros and get a zero gradient for every input (a 3x3 kernel with
  padding 1 on a 1x1 map uses only its centre tap: 8 of 9 weights are dead).
  The map each convolution sees is traced with forward hooks; which taps
  overlap real input is then computed from kernel size, stride, padding and
  dilation.
* **unused parameters.** A parameter the output does not depend on (a layer
  whose output is never used) gets no gradient at all: autograd reports it as
  unused.

The trace is one forward and backward of a single all-zero sample on the
model's own device, in eval mode (so batch-norm statistics do not move and
dropout draws no random numbers), through ``torch.autograd.grad`` (so no
``.grad`` is written): a few milliseconds for the zoo's models. A model built
on the ``meta`` device is traced there, with no arithmetic at all (how
``stratum list model`` checks every model on every data set's shape).

Not counted: weights whose gradient is zero because of the data or the
current weights (a dead ReLU, a saturated sigmoid). ``--profile gradflow``
measures those during training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Above this share of dead parameters `stratum run` prints a warning.
WARN_SHARE = 0.10


def live_taps(in_size: int, kernel: int, stride: int, padding: int, dilation: int) -> list[bool]:
    """For one spatial dimension: which of ``kernel`` taps ever overlap real (non-padding) input.

    Tap ``k`` is live when some output position ``o`` reads input index
    ``o * stride - padding + k * dilation`` inside ``[0, in_size)``.
    Raises ``ValueError`` when the convolution has no output at all.
    """
    out = (in_size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"a kernel of {kernel} (dilation {dilation}) does not fit {in_size} + 2x{padding} padding")
    live = []
    for k in range(kernel):
        offset = k * dilation - padding
        live.append(any(0 <= o * stride + offset < in_size for o in range(out)))
    return live


def _padding(conv: nn.modules.conv._ConvNd, dims: int) -> tuple[int, ...]:
    pad = conv.padding
    if pad == "valid":
        return (0,) * dims
    if pad == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return tuple(pad)


def live_tap_mask(conv: nn.modules.conv._ConvNd, maps: list[tuple[int, ...]]) -> torch.Tensor:
    """Boolean mask of ``conv``'s kernel taps that overlap real input on at least one of ``maps``.

    ``maps`` are the spatial sizes of the inputs the convolution saw (one per
    call; a module applied twice counts a tap live if either call uses it).
    Only zero padding makes taps dead (reflect, replicate and circular padding
    repeat real input); transposed convolutions are never counted.
    """
    mask = torch.zeros(tuple(conv.kernel_size), dtype=torch.bool, device="cpu")
    if conv.transposed or conv.padding_mode != "zeros":
        return mask | True
    pads = _padding(conv, len(conv.kernel_size))
    for spatial in maps:
        call = torch.ones((), dtype=torch.bool, device="cpu")
        for size, k, s, p, d in zip(spatial, conv.kernel_size, conv.stride, pads, conv.dilation):
            call = call.unsqueeze(-1) & torch.tensor(live_taps(int(size), k, s, p, d), device="cpu")
        mask |= call
    return mask


def dead_conv_weights(conv: nn.modules.conv._ConvNd, maps) -> int:
    """Weights of ``conv`` whose tap only ever sees zero padding on the input map size(s) ``maps``.

    ``maps`` is one spatial size (a tuple of ints) or a list of them; see :func:`live_tap_mask`.
    """
    maps = [maps] if maps and isinstance(maps[0], int) else list(maps)
    mask = live_tap_mask(conv, maps)
    per_tap = conv.weight.numel() // mask.numel()
    return per_tap * int((~mask).sum())


def dead_parameters(model: nn.Module, input_shape) -> dict:
    """Count the trainable parameters of ``model`` that can never get a gradient on inputs of ``input_shape``.

    ``input_shape`` is one sample's shape (no batch dimension), e.g. ``(1, 8, 8)``.
    Returns a JSON-safe dict: ``count`` (dead parameters), ``total`` (trainable
    parameters), ``share`` (count / total), ``input_shape``, and ``by_layer``:
    parameter name -> ``{"dead", "of", "why"}`` for each tensor with dead
    elements (``why`` is ``"padding-only taps (L of K live)"`` or ``"unused"``).
    The model is left exactly as it was (parameters, buffers, train/eval mode,
    random state). Raises whatever the model's forward raises on such an input
    (e.g. a shape mismatch); callers that only diagnose should catch it.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = sum(p.numel() for _, p in named)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    seen: dict[str, list[tuple[int, ...]]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            def record(mod, inputs, output, name=name):
                x = inputs[0]
                spatial = tuple(x.shape[-len(mod.kernel_size):])
                seen.setdefault(name, []).append(spatial)
            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros((1, *tuple(input_shape)), device=device, dtype=dtype)
        with torch.enable_grad():
            out = model(x)
            outputs = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
            differentiable = [t for t in outputs if t.requires_grad]
            names = [n for n, _ in named]
            if names and not differentiable:
                raise ValueError(f"no output of {type(model).__name__} depends on its parameters; cannot trace it")
            grads = [None] * len(names)
            if names:
                scalar = sum(t.float().sum() for t in differentiable)
                grads = torch.autograd.grad(scalar, [p for _, p in named], allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    by_layer: dict[str, dict] = {}
    unused = {n for n, g in zip(names, grads) if g is None}
    for n in unused:
        p = dict(named)[n]
        by_layer[n] = {"dead": p.numel(), "of": p.numel(), "why": "unused"}
    modules = dict(model.named_modules())
    for name, maps in seen.items():
        conv = modules[name]
        pname = f"{name}.weight" if name else "weight"
        if pname in unused or pname not in dict(named):
            continue
        dead = dead_conv_weights(conv, maps)
        if dead:
            taps = math.prod(conv.kernel_size)
            live = taps - dead // (conv.weight.numel() // taps)
            where = " / ".join("x".join(map(str, m)) for m in dict.fromkeys(maps))
            by_layer[pname] = {"dead": dead, "of": conv.weight.numel(),
                               "why": f"padding-only taps ({live} of {taps} live on a {where} map)"}
    count = sum(v["dead"] for v in by_layer.values())
    return {
        "count": count,
        "total": total,
        "share": count / total if total else 0.0,
        "input_shape": list(input_shape),
        "by_layer": dict(sorted(by_layer.items())),
    }


def warning_text(model_name: str, report: dict) -> str | None:
    """The one-line warning for a report above :data:`WARN_SHARE`, else ``None``."""
    if not report or report.get("share", 0.0) <= WARN_SHARE:
        return None
    shape = "x".join(map(str, report["input_shape"]))
    return (f"{report['share']:.1%} of {model_name}'s {report['total']:,} parameters ({report['count']:,}) can never "
            f"receive a gradient on {shape} inputs (conv taps that only see padding, or unused layers); "
            "see dead_parameters in the summary")


def dataset_shapes(registries) -> dict[str, tuple]:
    """Data set name -> one sample's input shape, for every data set that declares ``info["input_shape"]``."""
    return {c.name: tuple(c.info["input_shape"]) for c in registries["dataset"] if "input_shape" in c.info}


def model_on_shapes(component, shapes: dict[str, tuple]) -> dict[str, dict | None]:
    """Build ``component`` (a model) with default options on the meta device for each input shape and check it.

    Returns data set name -> :func:`dead_parameters` report, or ``None`` where
    the model cannot be built or traced for that shape (e.g. a conv model on a
    1-D input); an empty dict when its lazy factory cannot be imported. Nothing
    is allocated: the model lives on the meta device.
    """
    from .components import LazyFactory
    from .data import ModelSpec
    from .errors import PluginError

    if isinstance(component.factory, LazyFactory):
        try:
            component.factory.load()
        except PluginError:  # its module does not import: nothing to check (a run would name the plugin)
            return {}
    options = component.options() if component.options is not None else None
    out: dict[str, dict | None] = {}
    by_shape: dict[tuple, dict | None] = {}  # data sets of one input shape (cifar10, cifar100, svhn) are checked once
    for name, shape in shapes.items():
        shape = tuple(shape)
        if shape not in by_shape:
            try:
                with torch.device("meta"):
                    model = component.factory(ModelSpec(shape, 10, "classification"), options)
                by_shape[shape] = dead_parameters(model, shape)
            except Exception:  # noqa: BLE001 - a model that does not fit this input is simply not listed for it
                by_shape[shape] = None
        out[name] = by_shape[shape]
    return out


def describe_for_list(reports: dict[str, dict | None]) -> str:
    """One line for ``stratum list model``: dead share per data set at default options."""
    clean = sorted(n for n, r in reports.items() if r is not None and r["count"] == 0)
    dead = sorted((n, r) for n, r in reports.items() if r is not None and r["count"] > 0)
    unfit = sorted(n for n, r in reports.items() if r is None)
    parts = []
    if clean:
        parts.append(f"none on {', '.join(clean)}")
    parts += [f"{r['share']:.1%} on {n}" for n, r in dead]
    text = "dead weights at default options: " + ("; ".join(parts) if parts else "not checked")
    if unfit:
        text += f" (does not take {', '.join(unfit)} inputs)"
    return text
