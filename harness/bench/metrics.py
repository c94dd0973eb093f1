"""Series out of a Prometheus text exposition (the scheduler's /metrics): histograms, counters."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _samples(text: str, name: str, match: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(labels.get(k) == v for k, v in match.items()):
            out.append((labels, float(m.group(3))))
    return out


def histogram(text: str, name: str, match: dict[str, str]) -> dict[str, float | None]:
    """count, mean and interpolated p50/p99 (seconds) of one histogram series."""
    buckets: dict[float, float] = {}
    for labels, value in _samples(text, f"{name}_bucket", match):
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    count = sum(v for _, v in _samples(text, f"{name}_count", match))
    total = sum(v for _, v in _samples(text, f"{name}_sum", match))
    result: dict[str, float | None] = {
        "count": count,
        "mean_s": total / count if count else None,
    }
    for q in (0.5, 0.99):
        result[f"p{round(q * 100)}_s"] = _quantile(q, sorted(buckets.items())) if count else None
    return result


def _quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


def counter(text: str, name: str, match: dict[str, str]) -> float:
    return sum(v for _, v in _samples(text, name, match))
