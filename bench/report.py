"""The benchmark's figures: one row per metric, printed as a table and saved as JSON.

Absolute figures drift on shared machines, so every row carries the two peers'
figures from the same run (the naive python-websockets broadcaster and the Node.js
``ws`` room) and pichat's ratio to each; the targets are stated against whichever
the issue names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Metric", "render", "write_json"]


@dataclass
class Metric:
    """One row: a figure for each server, and the target pichat is held to."""

    key: str
    label: str
    unit: str
    pichat: float | None = None
    naive: float | None = None
    node: float | None = None
    target: str = ""
    #: Whether pichat meets the target, given (pichat, naive, node).
    check: Callable[[float, float | None, float | None], bool] | None = field(
        default=None, repr=False
    )
    #: Decimal places when printed.
    digits: int = 1

    @property
    def ratio(self) -> float | None:
        """pichat / naive, when both figures exist and naive is not zero."""
        if self.pichat is None or self.naive is None or self.naive == 0:
            return None
        return self.pichat / self.naive

    @property
    def node_ratio(self) -> float | None:
        """pichat / node, when both figures exist and node is not zero."""
        if self.pichat is None or self.node is None or self.node == 0:
            return None
        return self.pichat / self.node

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target or a figure)."""
        if self.check is None or self.pichat is None or math.isnan(self.pichat):
            return None
        try:
            return self.check(self.pichat, self.naive, self.node)
        except TypeError:  # a peer's figure is missing
            return None

    def as_dict(self) -> dict[str, object]:
        """The row for the JSON file."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "pichat": self.pichat,
            "naive": self.naive,
            "node": self.node,
            "ratio": self.ratio,
            "node_ratio": self.node_ratio,
            "target": self.target or None,
            "met": self.met,
        }


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def render(metrics: list[Metric]) -> str:
    """A plain-text table: metric | pichat | naive | node | ratios | target | met."""
    header = ("metric", "pichat", "naive", "node ws", "/naive", "/node", "target", "met")
    rows = [header]
    for metric in metrics:
        label = f"{metric.label} ({metric.unit})" if metric.unit else metric.label
        met = {None: "", True: "yes", False: "NO"}[metric.met]
        rows.append(
            (
                label,
                _number(metric.pichat, metric.digits),
                _number(metric.naive, metric.digits),
                _number(metric.node, metric.digits),
                _ratio(metric.ratio),
                _ratio(metric.node_ratio),
                metric.target or "-",
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:6], widths[1:6], strict=True)]
        cells += [row[6].ljust(widths[6]), row[7]]
        lines.append(" | ".join(cells).rstrip())
        if number == 0:
            lines.append("-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, object]) -> None:
    """Write the results (NaN becomes null, as JSON has no NaN)."""

    def clean(value: object) -> object:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(document), indent=2) + "\n")
