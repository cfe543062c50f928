"""The source page's charts, drawn on the server as inline SVG: no JavaScript library, nothing from a CDN.

This module computes the geometry (plain numbers and labels); the template writes the SVG, escaping
every label. Runs go oldest to newest, left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 150, 48, 18, 8
MAX_BAR = 24

SERIES = (
    ("created", ("created",)),
    ("updated", ("updated",)),
    ("unchanged", ("unchanged",)),
    ("not loaded", ("rejected", "identity conflicts", "refused")),
)
"""The stacked parts of a run's bar: what happened to the rows it handled."""


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


@dataclass
class Chart:
    key: str
    title: str
    unit: str
    top: float  # the value at the top of the axis
    bars: list[Bar] = field(default_factory=list)
    points: list[tuple[float, float, str]] = field(default_factory=list)  # a line: x, y, label
    legend: tuple[str, ...] = ()
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)

    @property
    def top_label(self) -> str:
        if self.unit == "%":
            return f"{self.top:.0%}"
        return f"{self.top:,.0f}{self.unit}"


def run_charts(runs: list[Any]) -> list[Chart]:
    """Counts per run, duration and reject rate, for runs given newest first."""
    ordered = list(reversed(runs))
    slot = (WIDTH - PAD_LEFT - 4) / max(len(ordered), 1)
    bar_width = min(MAX_BAR, max(2.0, slot * 0.7))
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP

    def x_of(index: int) -> float:
        return PAD_LEFT + index * slot + (slot - bar_width) / 2

    def y_of(value: float, top: float) -> float:
        return HEIGHT - PAD_BOTTOM - (value / top) * plot if top else HEIGHT - PAD_BOTTOM

    counts = Chart("counts", "Rows per run", "", 0, legend=tuple(name for name, _ in SERIES))
    parts = [[(name, sum(run.count(n) or 0 for n in names)) for name, names in SERIES] for run in ordered]
    counts.top = _nice(max((sum(v for _, v in p) for p in parts), default=0))
    for index, (run, run_parts) in enumerate(zip(ordered, parts, strict=True)):
        base = 0
        for name, value in run_parts:
            if value:
                y = y_of(base + value, counts.top)
                label = f"{run.run_id}: {value:,} {name}"
                counts.bars.append(Bar(x_of(index), y, bar_width, y_of(base, counts.top) - y, name, label))
                base += value

    durations = [run.duration_seconds for run in ordered]
    duration = Chart("duration", "Duration", " s", _nice(max((d or 0 for d in durations), default=0)))
    for index, (run, seconds) in enumerate(zip(ordered, durations, strict=True)):
        if seconds is not None:
            y = y_of(seconds, duration.top)
            label = f"{run.run_id}: {seconds:,.1f} s"
            duration.bars.append(Bar(x_of(index), y, bar_width, HEIGHT - PAD_BOTTOM - y, "duration", label))

    rates = [run.reject_rate for run in ordered]
    rate = Chart("reject-rate", "Reject rate", "%", _nice_rate(max((r or 0 for r in rates), default=0)))
    for index, (run, value) in enumerate(zip(ordered, rates, strict=True)):
        if value is not None:
            rate.points.append((x_of(index) + bar_width / 2, y_of(value, rate.top), f"{run.run_id}: {value:.1%}"))
    return [counts, duration, rate]


def _nice(value: float) -> float:
    """The axis top: the smallest 1, 2 or 5 x 10^n at or above ``value`` (1 for an empty chart)."""
    if value <= 0:
        return 1
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value * 10:
        step /= 10
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value)


def _nice_rate(value: float) -> float:
    return next((top for top in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5) if value <= top), 1.0)
