"""The end of a `medpay bench` run: one table of every scenario with its ratio to the two ceilings
and the issue's targets beside it, and everything in a JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.load import Measured

TARGET_CLIENTS = 32  # the targets hold at 32 concurrent clients


@dataclass(frozen=True)
class Target:
    """What a scenario should reach on the 2-core machine (issue 16)."""

    rate: float
    pgbench_share: float | None = None
    p99_ms: float | None = None

    def text(self) -> str:
        parts = [f">={self.rate:,.0f}/s"]
        if self.pgbench_share is not None:
            parts.append(f">={self.pgbench_share:.0%} pgbench")
        if self.p99_ms is not None:
            parts.append(f"p99<={self.p99_ms:.0f}ms")
        return " ".join(parts)

    def met(self, measured: Measured, pgbench_rate: float | None) -> bool:
        ok = measured.rate >= self.rate and measured.errors == 0
        if self.pgbench_share is not None:
            ok = ok and bool(pgbench_rate) and measured.rate / (pgbench_rate or 1) >= self.pgbench_share
        if self.p99_ms is not None:
            ok = ok and measured.p99_ms is not None and measured.p99_ms <= self.p99_ms
        return ok


TARGETS = {
    "pay": Target(1000, pgbench_share=0.6, p99_ms=50),
    "presettle": Target(2000),
    "qr": Target(3000),
    "callbacks": Target(2000),
    "booking_hot": Target(1000),
}


# Rows whose ratio to the JSON endpoint says nothing: itself, and what the web server does not serve.
NOT_SERVED = {"health_live": "100%", "callbacks_applied": "-", "pgbench_pay": "-"}


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ratio(value: float, ceiling: float | None) -> str:
    return f"{value / ceiling:.1%}" if ceiling else "-"


@dataclass
class Row:
    measured: Measured
    json_ceiling: float | None
    pgbench: float | None

    def cells(self) -> list[str]:
        m = self.measured
        target = TARGETS.get(m.scenario)
        verdict = ""
        if target is not None:
            verdict = (
                ("met" if target.met(m, self.pgbench) else "missed")
                if m.clients == TARGET_CLIENTS
                else "n/a (at 32)"
            )
        return [
            m.scenario,
            str(m.web_workers or "-"),
            str(m.clients),
            f"{m.rate:,.1f}",
            ms(m.p50_ms),
            ms(m.p95_ms),
            ms(m.p99_ms),
            str(m.errors),
            f"{m.loadgen_cores:.2f}",
            f"{m.server_total:.2f}",
            ratio(m.rate, self.json_ceiling) if m.scenario not in NOT_SERVED else NOT_SERVED[m.scenario],
            ratio(m.rate, self.pgbench) if m.scenario != "pgbench_pay" else "100%",
            target.text() if target else "",
            verdict,
        ]

    def as_json(self) -> dict[str, Any]:
        cells = self.cells()
        return {
            **self.measured.as_json(),
            "ratio_to_json_ceiling": (
                self.measured.rate / self.json_ceiling
                if self.json_ceiling and self.measured.scenario not in NOT_SERVED
                else None
            ),
            "ratio_to_pgbench": self.measured.rate / self.pgbench if self.pgbench else None,
            "target": cells[12] or None,
            "target_verdict": cells[13] or None,
        }


HEADER = [
    "scenario",
    "web",
    "clients",
    "ops/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "load-gen CPU",
    "server CPU",
    "÷ JSON",
    "÷ pgbench",
    "target",
    "",
]


def rows(results: list[Measured], ceilings: list[Measured]) -> list[Row]:
    """Each result beside the JSON ceiling of its web worker count (at the same clients when
    measured so) and the pgbench figure."""
    health = {(c.web_workers, c.clients): c.rate for c in ceilings if c.scenario == "health_live"}
    by_workers = {c.web_workers: c.rate for c in ceilings if c.scenario == "health_live"}
    pgbench = next((c.rate for c in ceilings if c.scenario == "pgbench_pay"), None)
    return [
        Row(m, health.get((m.web_workers, m.clients), by_workers.get(m.web_workers)), pgbench)
        for m in [*results, *ceilings]
    ]


def table(lines: list[list[str]]) -> str:
    """A Markdown table, its columns padded."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(line: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
