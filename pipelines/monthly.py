"""The month as a whole, read back from the warehouse: data quality, topics and the report."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from models.topics import RECORD_COLUMNS, shift_month
from pipelines import warehouse
from pipelines.alert_sinks import AlertStore
from pipelines.gazetteer import read_gazetteer_rows
from pipelines.month_checks import ChecksProcess, check_month
from pipelines.month_events import MonthEvents
from pipelines.month_topics import TopicsProcess, month_rows, topics_of_month
from pipelines.normalise import TZ
from pipelines.second_process import a_core_to_spare
from pipelines.sinks import events_dir
from quality.scorecard import describe
from reports.render import write_report
from reports.summary import domain_trend, expected_total

TREND_MONTHS = 12
_TREND_COLUMNS = ["period", "period_start", "township_code", "village_code", "domain", "observed", "expected"]
# a month smaller than this is reported in one process: a second interpreter's start-up (~3-4 s of
# imports) costs more than such a month's checks or topics
SECOND_PROCESS_ROWS = 20_000
# the simulated county month's files: 17.2 MB for 85,842 rows (XLSX, GBK CSV, JSON lines)
FEED_BYTES_PER_ROW = 200


def quality_summary(findings: list[dict], township_names: dict) -> list[dict]:
    """Quality findings as the report's banner and 数据质量 sheet show them: feed, place, day, words."""
    summary = []
    for f in findings:
        details = f.get("details") or {}
        day = details.get("date") or (f.get("period_start") or "")[:10] or None
        summary.append({"feed": f["feed"], "township": details.get("township_code"), "dates": [day] if day else [],
                        "severity": f["severity"], "message": describe(f, township_names)})
    return summary


_WARNING_LEVELS = {"red": 3, "orange": 2, "yellow": 1}


def daily_warnings(scores: pd.DataFrame) -> list[dict]:
    """Township series' runs of consecutive yellow-or-higher days as warnings, in the alert shape:
    what the day scores would have raised, one warning per run at its highest level."""
    days = scores[(scores["period"] == "day") & scores["village_code"].isna() & scores["level"].isin(_WARNING_LEVELS)]
    warnings = []
    for (township, domain), series in days.sort_values("period_start").groupby(["township_code", "domain"]):
        run: list = []
        for row in [*series.itertuples(index=False), None]:
            if run and (row is None or row.period_start - run[-1].period_start > dt.timedelta(days=1)):
                peak = max(run, key=lambda r: (_WARNING_LEVELS[r.level], r.score))
                start = dt.datetime.combine(run[0].period_start, dt.time(), TZ)
                end = dt.datetime.combine(run[-1].period_start + dt.timedelta(days=1), dt.time(), TZ)
                key = f"daily_score|{township}|{domain}|{start.isoformat()}"
                warnings.append({
                    "alert_id": hashlib.sha256(key.encode()).hexdigest()[:16], "rule": "daily_score",
                    "raised_at": start + dt.timedelta(days=1), "level": peak.level, "township_code": township,
                    "domain": domain, "window_start": start, "window_end": end,
                    "observed": int(sum(r.observed for r in run)), "expected": expected_total([r.expected for r in run]),
                    "score": float(peak.score), "reasons": list(peak.reasons), "event_ids": [],
                })
                run = []
            if row is not None:
                run.append(row)
    return warnings


def stored_rows(out: str, month: str) -> int:
    """The month's stored Event rows, from the Parquet footers."""
    folder = Path(events_dir(out)) / f"month={month}"
    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.glob("*.parquet"))


def large_month_ahead(out: str, month: str, feed_bytes: int) -> bool:
    """Whether the month may prove large enough for second processes once ``feed_bytes`` more of
    feed files are read (``worth_second_processes`` decides once they are)."""
    return stored_rows(out, month) + feed_bytes / FEED_BYTES_PER_ROW >= SECOND_PROCESS_ROWS


def worth_second_processes(out: str, month: str) -> bool:
    """A large month on a machine with a core to spare (outputs are the same either way)."""
    return stored_rows(out, month) >= SECOND_PROCESS_ROWS and a_core_to_spare()


class MonthReport:
    """One month's report step (the checks, the topics, the report), begun before its scores are
    written: with ``processes`` (by default when the month is large and a core is idle,
    ``worth_second_processes``) the checks run in a second process, and the topics too, reading the
    month's texts while this process scores the month: in a process of their own with
    ``topics_process``, else in the checks' process after its checks (one process less to start and
    to hold in memory where the scoring is short: little history). ``write()`` once the scores are
    written builds ``<out>/reports/<month>/`` and returns the report's paths and a run summary (with
    the quality findings marked critical by the policy). Each month's Events are read once per
    process (``MonthEvents``). Outputs are the same either way.

    Begun before the month's Events are written (``events_written=False``), the second processes
    start at once unless ``processes`` is False, and import and set up while the Events are written;
    ``events_written()`` then keeps them if the month proves worth them, or stops them."""

    def __init__(self, out: str, month: str, gazetteer: str, processes: bool | None = None,
                 topics_process: bool = True, events_written: bool = True):
        self._out, self._month, self._gazetteer = out, month, gazetteer
        self._trend_months = [shift_month(month, -k) for k in range(TREND_MONTHS - 1, -1, -1)]
        self._wanted, self._topics_process = processes, topics_process
        self._checks: ChecksProcess | None = None
        self._topics: TopicsProcess | None = None
        if events_written:
            self.events_written()
        elif processes or (processes is None and a_core_to_spare()):
            self._start(told=False)

    def _start(self, told: bool) -> None:
        self._checks = ChecksProcess(self._out, self._month, self._gazetteer, self._trend_months, events_written=told,
                                     topics=not self._topics_process)
        if self._topics_process:
            self._topics = TopicsProcess(self._out, self._month, self._gazetteer, events_written=told)

    def events_written(self, topics_process: bool | None = None) -> None:
        """The month's Events are in the warehouse: the second processes, if the month is worth them,
        start reading them. ``topics_process``: whether the topics still want one, now that the run's
        history is stored (a topics process begun early and not wanted stops; none begun early, the
        checks' process builds the topics)."""
        if topics_process is not None:
            self._topics_process = topics_process
            if not topics_process and self._topics:
                self._topics.close()
                self._topics = None
        wanted = worth_second_processes(self._out, self._month) if self._wanted is None else self._wanted
        if not wanted:
            self.close()
            self._checks = self._topics = None
        elif self._checks is None:
            self._start(told=True)
        else:
            self._checks.events_written(topics=self._topics is None)
            if self._topics:
                self._topics.events_written()

    @property
    def processes(self) -> bool:
        """Whether its checks (and maybe topics) run in second processes."""
        return self._checks is not None

    def _trend_scores(self, monthly: pd.DataFrame) -> pd.DataFrame:
        """The month rows of the trend's months: this month's, and the stored ones of the months before
        (a month no job scored has none: the trend shows no expected count for it)."""
        before = warehouse.read_scores(self._out, self._trend_months[:-1], columns=_TREND_COLUMNS)
        return pd.concat([month_rows(before), monthly[_TREND_COLUMNS]], ignore_index=True)

    def write(self) -> tuple[dict[str, Path], dict]:
        out, month, gazetteer = self._out, self._month, self._gazetteer
        try:
            store = MonthEvents(out)
            scores = warehouse.read_scores(out, [month])  # the warnings read the day rows
            monthly = month_rows(scores)
            for child in (self._checks, self._topics):
                if child:
                    child.scores_written()
            # what the report reads besides the topics and checks, while the second processes finish
            gazetteer_rows = read_gazetteer_rows(gazetteer)
            alerts = [*daily_warnings(scores), *AlertStore(out).raised()]
            if self._topics:
                topics = self._topics.result(monthly, store)
            elif self._checks:
                topics = self._checks.topics(monthly, store)
            else:
                topics = topics_of_month(out, month, gazetteer, monthly, store)
            checks = self._checks.result(store) if self._checks else check_month(
                out, month, gazetteer, self._trend_months, store)
        finally:
            self.close()
        names = {r["code"]: r["name"] for r in gazetteer_rows}
        # the headline figures count the events' columns
        events = store.latest([month], columns=RECORD_COLUMNS)
        quality, quality_paths = checks.quality, checks.quality_paths
        paths = write_report(
            out, month, topics, scores=monthly, alerts=alerts,
            quality_summary=quality_summary(quality.findings, names),
            domain_trend=domain_trend(self._trend_scores(monthly), month, TREND_MONTHS, incidents=checks.incidents),
            gazetteer=gazetteer_rows, events=events,
            scorecard_html=Path(quality_paths["scorecard_html"]).read_text(encoding="utf-8"),
        )
        paths.update({f"quality_{k}": Path(v) for k, v in quality_paths.items()})
        return paths, {
            "events": len(events), "topics": len(topics.topics), "closed_topics": len(topics.closed),
            "quality_seconds": round(quality.seconds, 2),
            "second_processes": self._second_processes(),
            "quality_findings": len(quality.findings),
            "quality_critical": [describe(f, names) for f in quality.critical],
        }

    def _second_processes(self) -> list[str]:
        """The parts done in second processes: "checks", then "topics" (in their own process or the checks')."""
        parts = ["checks"] if self._checks else []
        if self._topics or (self._checks and self._checks.builds_topics):
            parts.append("topics")
        return parts

    def close(self) -> None:
        """Stop the second processes if they still run (the job failed first)."""
        for child in (self._checks, self._topics):
            if child:
                child.close()


def report_month(out: str, month: str, gazetteer: str, processes: bool | None = None) -> tuple[dict[str, Path], dict]:
    """The report step of a month whose scores are written (``MonthReport``)."""
    return MonthReport(out, month, gazetteer, processes).write()
