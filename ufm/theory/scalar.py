"""Robust 1-D minimisation for the scalar reductions of docs/theory/conventions.md.

Every scalar problem has f'(x) = w(x)·[c − h(x)] with w > 0 and h unimodal, so the global
minimiser is 0 or the larger root of h(x) = c. Bisection runs until the bracket stops shrinking
in float64, i.e. to machine precision.
"""

from __future__ import annotations

import math
from typing import Callable


def golden_max(h: Callable[[float], float], lo: float, hi: float, iters: int = 200) -> float:
    """Argmax of a unimodal ``h`` on [lo, hi] by golden-section search."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    x1, x2 = b - g * (b - a), a + g * (b - a)
    h1, h2 = h(x1), h(x2)
    for _ in range(iters):
        if h1 < h2:
            a, x1, h1 = x1, x2, h2
            x2 = a + g * (b - a)
            h2 = h(x2)
        else:
            b, x2, h2 = x2, x1, h1
            x1 = b - g * (b - a)
            h1 = h(x1)
        if b - a <= 1e-15 * max(1.0, abs(a)):
            break
    return (a + b) / 2


def bisect_decreasing(h: Callable[[float], float], c: float, lo: float, hi: float) -> float:
    """Root of h(x) = c for h decreasing on [lo, hi] with h(lo) ≥ c ≥ h(hi)."""
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if h(mid) > c:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def argmin_zero_or_root(f: Callable[[float], float], h: Callable[[float], float], c: float,
                        x_peak: float, x_hi: float | None = None) -> float:
    """Global minimiser on [0, ∞) of f with f' ∝ c − h, h unimodal with peak ``x_peak``.

    Returns 0 when h(x_peak) ≤ c, or when the larger root x_ℓ of h = c has f(x_ℓ) ≥ f(0).
    ``x_hi`` must satisfy h(x_hi) < c; by default it is doubled from ``x_peak`` until it does.
    """
    if h(x_peak) <= c:
        return 0.0
    if x_hi is None:
        x_hi = max(2.0 * x_peak, 1.0)
        while h(x_hi) >= c:
            x_hi *= 2.0
            if x_hi > 1e300:
                raise ArithmeticError("no upper bracket: h does not fall below c")
    root = bisect_decreasing(h, c, x_peak, x_hi)
    return root if f(root) < f(0.0) else 0.0
