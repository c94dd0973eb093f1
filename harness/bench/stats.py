"""Statistics of benchmark runs: t intervals, paired ratios and differences, targets."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MIN_REPS = 5  # the floor for a benchmark that writes a report


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """Student t distribution function."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t value with ``t_cdf(t, df) == p`` (bisection; 0 < p < 1)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2.0


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample sd and the 95% Student t interval of the mean."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci95": None, "half_width": None}
    mean = sum(xs) / n
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "ci95": None, "half_width": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "half_width": half}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Interval of a_i / b_i: repetition i's two runs side by side."""
    if len(a) != len(b):
        raise ValueError(f"paired_ratio: {len(a)} against {len(b)} values")
    return interval([x / y for x, y in zip(a, b, strict=True)])


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Interval of a_i - b_i."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference: {len(a)} against {len(b)} values")
    return interval([x - y for x, y in zip(a, b, strict=True)])


def target(stat: Mapping[str, Any], bound: float, *, at_most: bool) -> dict[str, Any]:
    """Met on the mean; ``clear`` when the whole interval is on the right side."""
    mean, ci = stat["mean"], stat["ci95"]
    if mean is None:
        return {"bound": bound, "met": False, "clear": False, "mean_over_bound": None}
    if at_most:
        met, clear = mean <= bound, ci is not None and ci[1] <= bound
    else:
        met, clear = mean >= bound, ci is not None and ci[0] >= bound
    return {"bound": bound, "met": met, "clear": clear, "mean_over_bound": mean / bound}
