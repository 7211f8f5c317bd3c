"""One table for every figure: measured value, same-run baseline, ratio, target, verdict.

A figure adds :class:`Row` objects (and notes); the table and the JSON file are built
from those alone, so a new figure needs no change here.
"""

from __future__ import annotations

import json
import os
import platform
import textwrap
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = ("figure", "measured", "baseline", "ratio", "target", "met?")


@dataclass
class Row:
    """One line of the table.

    ``ratio`` is a number whose meaning the figure chooses and states in ``ratio_text``
    (e.g. ``"1.00 of min"``, ``"24.3x faster"``); ``target`` is phrased in the same terms.
    ``met`` is None when there is no target (an informational line).
    """

    figure: str
    measured: str
    baseline: str
    ratio: float | None
    ratio_text: str
    target: str
    met: bool | None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    """What one figure produced."""

    number: str
    title: str
    status: str = "ran"  # "ran", "skipped", "failed" or "planned"
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)


@dataclass
class Report:
    mode: str
    sections: list[Section] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0

    def table(self) -> str:
        lines: list[list[str]] = [list(COLUMNS)]
        for section in self.sections:
            for row in section.rows:
                verdict = "-" if row.met is None else ("yes" if row.met else "NO")
                lines.append(
                    [
                        f"{section.number}. {row.figure}",
                        row.measured,
                        row.baseline,
                        row.ratio_text,
                        row.target,
                        verdict,
                    ]
                )
            if section.status != "ran":
                lines.append([f"{section.number}. {section.title}", f"({section.status})", "", "", "", "-"])
        widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
        rule = "-+-".join("-" * width for width in widths)
        rendered = [
            " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
        ]
        return "\n".join([rendered[0], rule, *rendered[1:]])

    def notes(self) -> str:
        return "\n".join(
            textwrap.fill(f"[{section.number}] {text}", width=110, subsequent_indent="    ")
            for section in self.sections
            for text in section.notes
        )

    def unmet(self) -> list[str]:
        return [
            f"{section.number}. {row.figure}"
            for section in self.sections
            for row in section.rows
            if row.met is False
        ]

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "mode": self.mode,
            "started": self.started,
            "seconds": round(self.seconds, 1),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": _cpu_count(),
            },
            "unmet": self.unmet(),
            "figures": [asdict(section) for section in self.sections],
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _cpu_count() -> int | None:
    return os.cpu_count()
