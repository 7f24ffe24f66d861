"""How the bench's figures grow with the number of monitors: a least-squares line per figure.

Shared by `bench/run_bench.py` (printed after the table) and `bench/plot.py` (drawn on the plot).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: The figures of a `Result.summary()` row that grow with N, with their units.
GROWING: dict[str, str] = {
    "cpu_s_per_cycle": "CPU s/cycle",
    "peak_rss_mb": "peak RSS MB",
    "state_kb": "state KB",
    "requests_per_cycle": "requests/cycle",
}


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through the points; NaN with fewer than two."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
    if len({x for x, _ in points}) < 2:
        return math.nan, math.nan
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    return mean_y - slope * mean_x, slope


def growth_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per mode and growing figure: value at the smallest and largest N, the fitted
    cost per 1,000 monitors and the fixed part, and the worst relative miss of the line."""
    lines = []
    for mode in dict.fromkeys(row["mode"] for row in rows):
        ordered = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["monitors"])
        if len(ordered) < 2:
            continue
        xs = [float(r["monitors"]) for r in ordered]
        for key, unit in GROWING.items():
            ys = [float(r[key]) for r in ordered]
            fixed, slope = linear_fit(xs, ys)
            misses = [abs(fixed + slope * x - y) / y for x, y in zip(xs, ys, strict=True) if y]
            lines.append(
                f"{mode}: {unit} {ys[0]:.6g} at {xs[0]:,.0f} -> {ys[-1]:.6g} at {xs[-1]:,.0f}; "
                f"line: {round(fixed, 6):.4g} + {slope * 1000:.4g} per 1,000 monitors "
                f"(worst miss {max(misses, default=math.nan):.0%})"
            )
    return lines
