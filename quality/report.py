"""A month's quality check as the report step reads it (``quality.monthly.check_month`` makes it).

Its own module, without great-expectations: the report step's second process hands it back pickled
(``pipelines.month_checks``), and this process need not load great-expectations to read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QualityReport:
    month: str
    findings: list[dict]
    gaps: list                      # models.gaps.Gap, as the scores see them
    batch_tables: dict = field(default_factory=dict)
    accounting: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)       # feed -> events in the month
    rejected: dict = field(default_factory=dict)   # feed -> the month's files with quarantined rows
    seconds: float = 0.0

    @property
    def critical(self) -> list[dict]:
        return [f for f in self.findings if f["severity"] == "critical"]

    @property
    def exit_code(self) -> int:
        return 1 if self.critical else 0
