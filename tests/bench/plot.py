"""Draw a `medpay bench --sweep` run: throughput and p99 against concurrent clients for pay and
presettle, two panels, clients on a log2 axis.

    python -m tests.bench.plot [var/bench.json] [-o docs/benchmarks.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

SCENARIOS = {"pay": "pay (personal account)", "presettle": "presettle"}


def series(sweep: list[dict[str, Any]], scenario: str, field: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (r["clients"], r[field]) for r in sweep if r["scenario"] == scenario and r[field] is not None
    )
    return [c for c, _ in points], [v for _, v in points]


def draw(document: dict[str, Any], out: Path) -> None:
    sweep = document.get("sweep") or []
    if not sweep:
        raise SystemExit("no sweep in this file: run `medpay bench --sweep 1,2,4,8,16,32,64,128 --json ...`")
    figure, (rate, p99) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for scenario, label in SCENARIOS.items():
        clients, values = series(sweep, scenario, "ops_per_s")
        rate.plot(clients, values, marker="o", label=label)
        clients, values = series(sweep, scenario, "p99_ms")
        p99.plot(clients, values, marker="o", label=label)
    machine = document.get("machine", {})
    workers = document.get("web_workers", {}).get("chosen")
    ticks = sorted({r["clients"] for r in sweep})
    for axes, title, unit in ((rate, "throughput", "requests per second"), (p99, "p99 latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(ticks, [str(t) for t in ticks])
        axes.minorticks_off()
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        axes.set_ylim(bottom=0)
    figure.suptitle(
        f"medpay bench: {machine.get('cores', '?')} cores, {workers} web worker(s), "
        f"{document.get('finished_at', '')}",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, default=Path("var/bench.json"))
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/benchmarks.png"))
    args = parser.parse_args()
    draw(json.loads(args.source.read_text()), args.out)
    print(f"written: {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
