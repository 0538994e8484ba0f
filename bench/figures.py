"""Figures of a benchmark run: the median of N runs with its spread, a committed baseline to compare
with, and what the load driver itself costs.

A figure is a name, a unit and a direction (higher-is-better or lower-is-better). `bench --check`
compares each figure's median with bench/results/baseline.json and fails when one is worse than
TOLERANCE times the baseline (a throughput below 0.7x, a latency above baseline / 0.7).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import time
from pathlib import Path

from bench.common import RESULTS_DIR

HIGHER = "higher-is-better"
LOWER = "lower-is-better"
TOLERANCE = 0.7
BASELINE = RESULTS_DIR / "baseline.json"


@dataclasses.dataclass
class Figure:
    unit: str
    direction: str
    values: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def line(self, name: str) -> str:
        spread = f" (min {_num(min(self.values))} - max {_num(max(self.values))}, {len(self.values)} runs)"
        return f"{name}: {_num(self.median)} {self.unit}".rstrip() + (spread if len(self.values) > 1 else "")


def _num(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


class Figures(dict[str, Figure]):
    """Figures by name, each with the values of every run."""

    def add(self, name: str, value: float, unit: str, direction: str) -> None:
        self.setdefault(name, Figure(unit, direction)).values.append(float(value))

    def merge(self, other: Figures) -> None:
        for name, figure in other.items():
            for value in figure.values:
                self.add(name, value, figure.unit, figure.direction)

    def lines(self) -> list[str]:
        return [figure.line(name) for name, figure in self.items()]


def worse(value: float, base: float, direction: str) -> bool:
    if direction == HIGHER:
        return value < TOLERANCE * base
    return value > base / TOLERANCE


def check(figures: Figures, path: Path = BASELINE) -> tuple[list[str], bool]:
    """One line per baseline figure (this run's median against it) and whether none is worse."""
    if not path.exists():
        return [f"no baseline at {path}: save one with --save-baseline"], False
    baseline = json.loads(path.read_text())
    lines, ok = [f"comparison with {path.name} (worse than {TOLERANCE}x fails):"], True
    for name, base in baseline.items():
        figure = figures.get(name)
        if figure is None:
            lines.append(f"  {name}: not measured in this run (baseline {base['value']:.1f})")
            continue
        bad = worse(figure.median, base["value"], base["direction"])
        ok = ok and not bad
        limit = base["value"] * TOLERANCE if base["direction"] == HIGHER else base["value"] / TOLERANCE
        lines.append(
            f"  {'WORSE' if bad else 'ok   '} {name}: {figure.median:.1f} {figure.unit} vs baseline "
            f"{base['value']:.1f} ({base['direction']}, limit {limit:.1f})"
        )
    return lines, ok


def save_baseline(figures: Figures, path: Path = BASELINE) -> None:
    """Write this run's medians as the baseline, keeping figures this run did not measure."""
    baseline = json.loads(path.read_text()) if path.exists() else {}
    for name, figure in figures.items():
        baseline[name] = {"value": round(figure.median, 2), "direction": figure.direction, "unit": figure.unit}
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")


class DriverCost:
    """The driver's own CPU time (this process: user + system) and wall time over a measured span:
    if it used well under one core while the server fell behind, the server is the limit."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> DriverCost:
        self._cpu, self._wall = _cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += _cpu_seconds() - self._cpu
        self.wall += time.monotonic() - self._wall

    def line(self, requests: int) -> str:
        per = self.cpu / max(1, requests) * 1000
        return (
            f"driver: {self.cpu:.1f} CPU s over {self.wall:.1f} s ({self.cpu / max(self.wall, 1e-9):.0%} of one core), "
            f"{per:.2f} ms CPU per request ({requests} requests)"
        )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
