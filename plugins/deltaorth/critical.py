"""The mean-field critical line for tanh networks (Poole et al. 2016; Xiao et al. 2018).

A pre-activation of a wide random network settles at a fixed length q* with

    q* = sigma_w^2 * E[phi(sqrt(q*) z)^2] + sigma_b^2,        z ~ N(0, 1).

The network is *critical* (neither ordered nor chaotic: gradients neither
vanish nor explode on average) when

    chi = sigma_w^2 * E[phi'(sqrt(q*) z)^2] = 1.

Given q*, these two equations fix the pair on the critical line:

    sigma_w^2 = 1 / E[phi'(sqrt(q*) z)^2]
    sigma_b^2 = q* - sigma_w^2 * E[phi(sqrt(q*) z)^2]

The Gaussian expectations are computed with probabilists' Gauss-Hermite
quadrature, which is exact for polynomials up to degree 2n-1 and converges
fast for the smooth integrands here.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (np.tanh, lambda h: 1.0 - np.tanh(h) ** 2),
}


def gaussian_expectation(f: Callable[[np.ndarray], np.ndarray], variance: float, points: int = 101) -> float:
    """E[f(sqrt(variance) * z)] for z ~ N(0, 1), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    weights = weights / math.sqrt(2.0 * math.pi)  # the weight function exp(-x^2/2) integrates to sqrt(2 pi)
    return float(np.sum(weights * f(math.sqrt(variance) * nodes)))


def critical_point(q_star: float, activation: str = "tanh", points: int = 101) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) on the critical line whose fixed point is ``q_star``.

    Raises ``ValueError`` for q* <= 0, an unknown activation, or a q* that would
    need a negative bias variance.
    """
    if not (q_star > 0 and math.isfinite(q_star)):
        raise ValueError(f"q* must be a positive finite number, got {q_star!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"no critical line for activation {activation!r} (known: {', '.join(ACTIVATIONS)})")
    phi, dphi = ACTIVATIONS[activation]
    sigma_w2 = 1.0 / gaussian_expectation(lambda h: dphi(h) ** 2, q_star, points)
    sigma_b2 = q_star - sigma_w2 * gaussian_expectation(lambda h: phi(h) ** 2, q_star, points)
    if sigma_b2 < 0:
        raise ValueError(f"q* = {q_star} has no critical point with a non-negative bias variance")
    return sigma_w2, max(sigma_b2, 0.0)


def q_map(q: float, sigma_w2: float, sigma_b2: float, activation: str = "tanh", points: int = 101) -> float:
    """One layer of the length map: q_{l+1} = sigma_w^2 E[phi(sqrt(q_l) z)^2] + sigma_b^2."""
    phi, _ = ACTIVATIONS[activation]
    return sigma_w2 * gaussian_expectation(lambda h: phi(h) ** 2, q, points) + sigma_b2


def chi(q: float, sigma_w2: float, activation: str = "tanh", points: int = 101) -> float:
    """The mean squared singular value of one layer's Jacobian at length q."""
    _, dphi = ACTIVATIONS[activation]
    return sigma_w2 * gaussian_expectation(lambda h: dphi(h) ** 2, q, points)
