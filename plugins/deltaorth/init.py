"""Delta-orthogonal and Gaussian initialisation (Xiao et al., ICML 2018).

Delta-orthogonal: a conv kernel W[c_out, c_in, k, k] is zero everywhere
except at the spatial centre, where it holds sigma_w times a matrix with
orthonormal columns. The convolution then maps each pixel's channel vector by
that matrix: an exact isometry (times sigma_w) when c_in <= c_out. With
c_in > c_out the centre matrix can only have orthonormal rows, which throws
away part of the signal (about 1/sqrt(2) of the norm at 256 -> 128), so it is
refused. An even kernel has no centre tap, so it is refused too.

Note that ``nn.init.orthogonal_`` on a whole 4-D kernel flattens it to
(c_out, c_in*k*k) and spreads the orthogonal matrix over every tap: that is
*not* delta-orthogonal.

Gaussian: the comparison at the same sigma_w, W ~ N(0, sigma_w^2 / fan_in).
Biases in both: N(0, sigma_b^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class InitShapeError(ValueError):
    """A layer whose shape the initialiser cannot honour."""


def orthogonal_matrix(rows: int, cols: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal columns (rows >= cols) or rows (rows < cols).

    QR of a Gaussian matrix, with each column of Q multiplied by the sign of
    the matching diagonal entry of R: without that fix the distribution is not
    uniform (Haar) over the orthogonal group.
    """
    tall = rows >= cols
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)  # q: (max, min), orthonormal columns
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    q = q * signs
    return (q if tall else q.T).to(dtype)


@torch.no_grad()
def delta_orthogonal_(weight: torch.Tensor, generator: torch.Generator, sigma_w: float = 1.0) -> torch.Tensor:
    """Fill a conv kernel (c_out, c_in, *spatial) in place with a delta-orthogonal kernel."""
    if weight.dim() < 3:
        raise InitShapeError(f"delta-orthogonal needs a conv kernel (c_out, c_in, k, ...), got shape {tuple(weight.shape)}")
    c_out, c_in, *spatial = weight.shape
    if any(k % 2 == 0 for k in spatial):
        raise InitShapeError(f"delta-orthogonal needs an odd kernel size (a centre tap), got kernel {tuple(spatial)}")
    if c_in > c_out:
        raise InitShapeError(
            f"delta-orthogonal needs c_in <= c_out to preserve norms, got c_in={c_in} > c_out={c_out}"
        )
    weight.zero_()
    centre = (slice(None), slice(None), *(k // 2 for k in spatial))
    weight[centre] = sigma_w * orthogonal_matrix(c_out, c_in, generator, weight.dtype)
    return weight


@torch.no_grad()
def scaled_orthogonal_(weight: torch.Tensor, generator: torch.Generator, sigma_w: float = 1.0) -> torch.Tensor:
    """A dense (out, in) weight: orthonormal columns (or rows, when out < in), times sigma_w."""
    out_features, in_features = weight.shape
    weight.copy_(sigma_w * orthogonal_matrix(out_features, in_features, generator, weight.dtype))
    return weight


@torch.no_grad()
def gaussian_(weight: torch.Tensor, generator: torch.Generator, sigma_w: float = 1.0) -> torch.Tensor:
    """W ~ N(0, sigma_w^2 / fan_in), fan_in = c_in * prod(kernel)."""
    fan_in = weight[0].numel()
    weight.normal_(0.0, sigma_w / math.sqrt(fan_in), generator=generator)
    return weight


@torch.no_grad()
def bias_(bias: torch.Tensor | None, generator: torch.Generator, sigma_b: float) -> None:
    if bias is None:
        return
    if sigma_b > 0:
        bias.normal_(0.0, sigma_b, generator=generator)
    else:
        bias.zero_()


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def init_model_(model: nn.Module, scheme: str, generator: torch.Generator, sigma_w: float, sigma_b: float) -> None:
    """Initialise every conv and linear layer of ``model`` with ``scheme``.

    ``scheme`` is ``"delta-orthogonal"`` (conv: delta-orthogonal; linear:
    scaled orthogonal) or ``"gaussian"``. Norm layers are reset to identity.
    A layer that cannot take the scheme raises :class:`InitShapeError` naming it.
    """
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            try:
                if scheme == "delta-orthogonal":
                    delta_orthogonal_(module.weight, generator, sigma_w)
                else:
                    gaussian_(module.weight, generator, sigma_w)
            except InitShapeError as exc:
                raise InitShapeError(f"layer {name or type(module).__name__}: {exc}") from None
            bias_(module.bias, generator, sigma_b)
        elif isinstance(module, nn.Linear):
            if scheme == "delta-orthogonal":
                scaled_orthogonal_(module.weight, generator, sigma_w)
            else:
                gaussian_(module.weight, generator, sigma_w)
            bias_(module.bias, generator, sigma_b)
        elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
