"""The feed-quality step of the batch job: after the ingest has written a month's Events, check
every delivered batch of that month against its contract and its history (great-expectations),
and write data docs, scorecard and data gaps to ``<out>/quality/YYYY-MM/``.

It runs on the driver, after the Beam pipeline: one GX context per run validating pandas frames
is far cheaper than GX inside workers, and the month's Events are already on disk as Parquet.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines.gazetteer import read_gazetteer_rows
from pipelines.month_events import MonthEvents
from quality import accounting
from quality.monthly import check_month, write_outputs
from quality.policy import load_policy
from quality.report import QualityReport
from quality.validation import QualityRun


def history_months(month: str, days: int) -> list[str]:
    """The month and those before it that hold its ``days`` of reference history."""
    start = dt.date.fromisoformat(month + "-01")
    day, months = (start - dt.timedelta(days=days)).replace(day=1), []
    while day <= start:
        months.append(day.strftime("%Y-%m"))
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return months


def township_names(gazetteer_csv: str | None) -> dict:
    if not gazetteer_csv:
        return {}
    return {row["code"]: row["name"] for row in read_gazetteer_rows(gazetteer_csv) if row.get("level") == "township"}


def run_quality(out_dir, month: str, policy_path=None, gazetteer_csv: str | None = None, report_dir=None,
                store: MonthEvents | None = None) -> tuple[QualityReport, dict]:
    """Check ``month`` of the ingest output in ``out_dir``; write to ``report_dir`` (default ``out_dir``).
    ``store``: the warehouse's Events as the rest of the report step reads them (one read per month)."""
    out_dir = Path(out_dir)
    policy = load_policy(policy_path)
    store = store or MonthEvents(str(out_dir))
    events = store.all_versions(history_months(month, policy.thresholds.get("history_days", 56)))
    run = QualityRun(policy, month)
    report = check_month(events, month, policy, quarantine=accounting.read_quarantine(out_dir / "quarantine"),
                         manifest=accounting.manifest_files(out_dir / "manifests"), run=run)
    paths = write_outputs(report, run, Path(report_dir or out_dir), township_names(gazetteer_csv))
    return report, paths
