"""Figures as medians of repeated runs with min and max; comparisons measured A/B alternating."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def alternate(
    a: Callable[[], float], b: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Run A and B in turn (ABAB…, starting with each half the time), so drift hits both alike."""
    first: list[float] = []
    second: list[float] = []
    for index in range(repeats):
        if index % 2 == 0:
            first.append(a())
            second.append(b())
        else:
            second.append(b())
            first.append(a())
    return first, second


def rotate(sides: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """``alternate`` for more than two sides: each round runs them all, each round starting one
    side later (ABC, BCA, CAB…), so drift and warm caches hit every side alike."""
    runs: list[list[float]] = [[] for _ in sides]
    for index in range(repeats):
        for offset in range(len(sides)):
            side = (index + offset) % len(sides)
            runs[side].append(sides[side]())
    return runs


def verdict(value: float, op: str, target: float, unit: str = "") -> str:
    """``met (target <= 0.3)``, or ``MISSED by 0.04 (target <= 0.3)``: a miss says by how much."""
    met = value <= target if op == "<=" else value >= target
    if met:
        return f"met (target {op} {target:g}{unit})"
    return f"MISSED by {abs(value - target):.3g}{unit} (target {op} {target:g}{unit})"


def ratio(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-pair ratios a_i / b_i of an alternating run: the median and its spread."""
    return summary([x / y for x, y in zip(a, b, strict=True)])


def ratio_lines(ratios: dict[str, Any], targets: dict[str, tuple[str, float]]) -> list[str]:
    """A Markdown bullet per ratio: its median, spread and goal (a non-figure entry as it is)."""
    rows = []
    for name, figure in ratios.items():
        if not isinstance(figure, dict):
            rows.append(f"- {name}: {figure}")
            continue
        target = targets.get(name)
        goal = f" (goal {target[0]} {target[1]})" if target else ""
        rows.append(
            f"- {name}: {figure['median']:.2f} (min {figure['min']:.2f}, max {figure['max']:.2f}){goal}"
        )
    return rows
