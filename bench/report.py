"""The benchmark's figures: one row per metric, printed as a table and saved as JSON.

Absolute figures drift on shared machines, so every row carries the naive
broadcaster's figure from the same run and the pichat/naive ratio; the targets are
stated against whichever of the two the issue names.
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
    target: str = ""
    #: Whether pichat meets the target, given (pichat, naive).
    check: Callable[[float, float | None], bool] | None = field(default=None, repr=False)
    #: Decimal places when printed.
    digits: int = 1

    @property
    def ratio(self) -> float | None:
        """pichat / naive, when both figures exist and naive is not zero."""
        if self.pichat is None or self.naive is None or self.naive == 0:
            return None
        return self.pichat / self.naive

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target or a figure)."""
        if self.check is None or self.pichat is None or math.isnan(self.pichat):
            return None
        return self.check(self.pichat, self.naive)

    def as_dict(self) -> dict[str, object]:
        """The row for the JSON file."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "pichat": self.pichat,
            "naive": self.naive,
            "ratio": self.ratio,
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


def render(metrics: list[Metric]) -> str:
    """A plain-text table: metric | pichat | naive | ratio | target | met."""
    header = ("metric", "pichat", "naive", "ratio", "target", "met")
    rows = [header]
    for metric in metrics:
        label = f"{metric.label} ({metric.unit})" if metric.unit else metric.label
        ratio = metric.ratio
        met = {None: "", True: "yes", False: "NO"}[metric.met]
        rows.append(
            (
                label,
                _number(metric.pichat, metric.digits),
                _number(metric.naive, metric.digits),
                "-" if ratio is None else f"{ratio:.2f}x",
                metric.target or "-",
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4], strict=True)]
        cells += [row[4].ljust(widths[4]), row[5]]
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
