"""Train-only augmentation on whole resident batches, and per-channel normalisation.

Each augmentation takes a batch ``x`` of shape (N, C, H, W) (any dtype: uint8
images as stored, float32, float16 or bfloat16; on any device) and a
``torch.Generator``, and returns a new batch of the same shape, dtype and
device. The work is vectorised: one zero pad, then one ``torch.gather`` with
per-sample offsets, no Python loop over samples.

Randomness comes only from ``generator``. It may live on the CPU or on
``x``'s device: the per-sample draws (a few integers per sample) are made on
the generator's device and moved to ``x``'s. A CPU generator gives the same
augmented batch on every device; :func:`batch_generator` gives one seeded by
(run seed, global step), so a resumed run draws exactly what an uninterrupted
one would, with no generator state to checkpoint.

Zero fill means 0 in ``x``'s units: black for uint8 images augmented before
normalisation (torchvision's ``RandomCrop(padding=4)`` on stored images, the
CIFAR standard), the channel mean for batches already normalised.

Normalisation statistics come from the training split only:
:func:`channel_stats` then :func:`normalise`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from stratum.seeding import derive_seed

__all__ = ["AUGMENTATIONS", "batch_generator", "channel_stats", "crop_flip", "crop_flip_params", "none",
           "normalise", "shifted_crops", "translate"]


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"augmentation needs a batch of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")


def batch_generator(seed: int, step: int, device="cpu") -> torch.Generator:
    """A generator for the augmentation of global step ``step`` of the run seeded ``seed``.

    Seeded from ``derive_seed(seed, "augment:<step>")``: independent of every
    other stream of the run, and reproducible on resume without saved state.
    """
    return torch.Generator(device=device).manual_seed(derive_seed(seed, f"augment:{step}"))


def crop_flip_params(n: int, generator: torch.Generator, padding: int, flip: bool):
    """The random draws of :func:`crop_flip` for ``n`` samples, in the order they are made.

    Returns ``(dy, dx, flips)`` on the generator's device: ``dy``, ``dx`` int64
    of shape (n,), uniform in ``[0, 2 * padding]`` (the crop's top-left corner in
    the padded image), ``flips`` bool of shape (n,), each True with probability
    1/2 (all False, and no draw made, when ``flip`` is False).
    """
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    device = generator.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return dy, dx, flips


def shifted_crops(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each sample ``i`` of ``x`` zero-padded by ``padding`` at ``(dy[i], dx[i])``, mirrored along
    width where ``flips[i]``: out[i, c, h, w] = padded[i, c, dy[i] + h, dx[i] + w'] with
    ``w' = W - 1 - w`` when flipped. Deterministic; ``dy``, ``dx``, ``flips`` of shape (N,)."""
    _check_batch(x)
    n, c, h, w = x.shape
    device = x.device
    dy, dx, flips = dy.to(device), dx.to(device), flips.to(device)
    if x.numel() == 0:
        return x.clone()
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    padded_w = w + 2 * padding
    rows = dy[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + dx[:, None]  # (N, W)
    # One gather over the flattened padded image with a per-sample index shared by the channels:
    # about 3x faster on the CPU than four-tensor advanced indexing.
    index = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(padded.reshape(n, c, -1), 2, index).reshape(n, c, h, w)


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding plus random horizontal flip: the CIFAR standard
    (He et al. 2016, section 4.2: "4 pixels are padded on each side, and a 32x32
    crop is randomly sampled from the padded image or its horizontal flip").

    ``x``: (N, C, H, W), any dtype, any device; returns the same shape, dtype,
    device. Each sample gets its own offsets, uniform over the ``(2p+1)^2``
    crops, and is mirrored along width (never height) with probability 1/2.
    Raises ``ValueError`` for a batch that is not 4-D or a negative padding.
    """
    _check_batch(x)
    dy, dx, flips = crop_flip_params(x.shape[0], generator, padding, flip)
    return shifted_crops(x, dy, dx, flips, padding)


def translate(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random integer translation by up to ``max_shift`` pixels along height and width (independently,
    uniform in ``[-max_shift, max_shift]``), zero fill; no flip (digits are not mirror-symmetric).

    ``x``: (N, C, H, W), any dtype, any device; returns the same shape, dtype, device.
    """
    _check_batch(x)
    dy, dx, flips = crop_flip_params(x.shape[0], generator, max_shift, False)
    return shifted_crops(x, dy, dx, flips, max_shift)


def none(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """No augmentation: returns ``x`` itself and draws nothing."""
    return x


# name -> augment(x, generator) with default parameters
AUGMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {"none": none, "crop-flip": crop_flip, "translate": translate}


@torch.no_grad()
def channel_stats(train_x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of the training inputs ``train_x`` (N, C, H, W) or (N, C, L).

    Returns two float32 tensors of shape (C,) on ``train_x``'s device, in
    ``train_x``'s units (for uint8 images: 0..255). Accumulated in float64 over
    chunks of ``chunk`` samples (no full float64 copy of the set); the standard
    deviation is the population one (divides by the number of values), as the
    usual published CIFAR figures. Pass the training split only, never the
    test split. Raises ``ValueError`` for an empty or lower-than-3-D input.
    """
    if train_x.dim() < 3 or len(train_x) == 0:
        raise ValueError(f"channel_stats needs (N, C, ...) inputs with N > 0, got shape {tuple(train_x.shape)}")
    channels = train_x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64, device=train_x.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(train_x), chunk):
        part = train_x[start:start + chunk].to(torch.float64).transpose(0, 1).reshape(channels, -1)
        total += part.sum(1)
        squares += (part * part).sum(1)
    count = train_x.numel() // channels
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0)
    return mean.float(), var.sqrt().float()


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` per channel of ``x`` (N, C, ...).

    Integer input (uint8 images) becomes float32; floating input keeps its
    dtype. ``mean`` and ``std`` (shape (C,), from :func:`channel_stats` on the
    training split) are moved to ``x``'s device. Raises ``ValueError`` when the
    channel counts differ or a std is not > 0.
    """
    if mean.shape != std.shape or mean.dim() != 1 or x.dim() < 2 or x.shape[1] != mean.shape[0]:
        raise ValueError(f"mean/std of shape {tuple(mean.shape)}/{tuple(std.shape)} do not fit inputs of shape {tuple(x.shape)}")
    if not bool((std > 0).all()):
        raise ValueError(f"every channel's std must be > 0, got {std.tolist()}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    view = (1, -1) + (1,) * (x.dim() - 2)
    m = mean.to(device=x.device, dtype=dtype).view(view)
    s = std.to(device=x.device, dtype=dtype).view(view)
    return (x.to(dtype) - m) / s
