"""Plot how the daemon's costs grow with the number of monitors, from `run_bench.py --json`.

Six panels against N, one line per mode with the least-squares line (through the rows whose
cycle took under half the interval) dashed: CPU per cycle (bars:
the steady cycles' min-max), peak RSS, state file size, Datafold requests per cycle, the steady
cycle against the poll interval (past it, one process no longer keeps up) and detection latency
p99. Needs matplotlib (`pip install -e
'.[bench]'`, which `make bench-growth` does).

    python bench/plot.py bench/growth.json docs/growth.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from growth import linear_fit

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("bench/plot.py needs matplotlib: pip install -e '.[bench]'")

#: (figure key, how it is scaled for the plot, panel title)
PANELS: tuple[tuple[str, float, str], ...] = (
    ("cpu_s_per_cycle", 1.0, "CPU per cycle (s, user+sys)"),
    ("peak_rss_mb", 1.0, "peak RSS (MB)"),
    ("state_kb", 1 / 1024, "state file (MB)"),
    ("requests_per_cycle", 1.0, "Datafold requests per cycle"),
    ("cycle_s", 1.0, "steady cycle (s) against the interval"),
    ("latency_p99_s", 1.0, "detection latency p99 (s)"),
)
#: Panels that get no fitted line (they do not grow linearly by design).
UNFITTED = {"cycle_s", "latency_p99_s"}


def keeps_up(row: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether a row's steady cycle took under half the poll interval."""
    return float(row["cycle_s"]) < float(document["interval_s"]) / 2


def plot(document: dict[str, Any], out: Path) -> None:
    """Draw the four panels of `document` (as `run_bench.py --json` writes it) into `out`."""
    rows = document["rows"]
    figure, axes = plt.subplots(3, 2, figsize=(10, 10), constrained_layout=True)
    for axis, (key, scale, title) in zip(axes.flat, PANELS, strict=True):
        for mode in dict.fromkeys(row["mode"] for row in rows):
            ordered = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["monitors"])
            xs = [float(r["monitors"]) for r in ordered]
            ys = [float(r[key]) * scale for r in ordered]
            axis.plot(xs, ys, "o-", label=f"{mode} mode")
            if key == "cpu_s_per_cycle":
                low = [r["cpu_ms_per_monitor_min"] * r["monitors"] / 1000 for r in ordered]
                high = [r["cpu_ms_per_monitor_max"] * r["monitors"] / 1000 for r in ordered]
                axis.vlines(xs, low, high, color="tab:blue", alpha=0.4, linewidth=6)
                for x, row in zip(xs, ordered, strict=True):
                    axis.annotate(
                        f"{row['cpu_ms_per_monitor']:.2f} ms/monitor, "
                        f"{row.get('cpu_cores', float('nan')):.2f} cores",
                        (x, float(row[key])),
                        textcoords="offset points",
                        xytext=(6, -12),
                        ha="left",
                        fontsize=8,
                    )
            if key == "cycle_s":
                axis.axhline(document["interval_s"], color="tab:red", linewidth=0.8)
                axis.annotate(
                    "poll interval",
                    (0, document["interval_s"]),
                    xytext=(4, 4),
                    textcoords="offset points",
                    color="tab:red",
                    fontsize=8,
                )
            # The line runs through the rows that kept up (a cycle under half the interval): past
            # that, cycles run back to back and per-cycle figures count more than one interval.
            kept = [
                (x, y) for x, y, r in zip(xs, ys, ordered, strict=True) if keeps_up(r, document)
            ]
            fixed, slope = linear_fit([x for x, _ in kept], [y for _, y in kept])
            if len(kept) > 1 and key not in UNFITTED:
                axis.plot(
                    [0, xs[-1]],
                    [fixed, fixed + slope * xs[-1]],
                    "--",
                    color="grey",
                    linewidth=0.8,
                    label=f"line (rows that kept up): {round(fixed, 4):.3g} "
                    f"+ {slope * 1000:.3g} per 1,000",
                )
        axis.set_title(title)
        axis.set_xlabel("monitors")
        axis.set_xlim(left=0)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.suptitle(
        f"datafold-notifier growth with N: API latency {document['api_latency_s'] * 1000:.0f} ms, "
        f"interval {document['interval_s']:g} s, median of {document['steady_cycles']} steady "
        f"cycles ({document['machine']}, {document['measured'][:10]})",
        fontsize=10,
    )
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", type=Path, help="JSON written by run_bench.py --json")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/growth.png"))
    args = parser.parse_args()
    try:
        document = json.loads(args.figures.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"bench/plot.py: cannot read {args.figures}: {exc}")
    plot(document, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
