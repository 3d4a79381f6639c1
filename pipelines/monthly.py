"""The month as a whole, read back from the warehouse: topics, data quality and the report."""
from __future__ import annotations

from pathlib import Path

import schemas
from models.topics import build_topics
from pipelines import warehouse
from pipelines.batch import add_months
from reports.render import write_report
from reports.summary import domain_trend
from reports.topics_json import read_topics_json

TOPIC_HISTORY_MONTHS = 3
TREND_MONTHS = 12
_TREND_COLUMNS = ["incident_id", "domain", "reported_at"]


def report_month(out: str, month: str, gazetteer_rows: list[dict]) -> tuple[dict[str, Path], dict]:
    """Build ``<out>/reports/<month>/`` from the warehouse; return its paths and a run summary."""
    events = warehouse.read_events(out, [month])
    history = warehouse.read_events(out, [add_months(month, -k) for k in range(1, TOPIC_HISTORY_MONTHS + 1)])
    scores = warehouse.read_scores(out, [month])
    trend_events = warehouse.read_events(
        out, [add_months(month, -k) for k in range(TREND_MONTHS - 1, -1, -1)], columns=_TREND_COLUMNS)
    previous = read_topics_json(Path(out) / "reports" / add_months(month, -1) / "topics.json")
    topics = build_topics(events, scores, history, previous, schemas.taxonomy(), gazetteer_rows, month)
    paths = write_report(
        out, month, topics, scores=scores, alerts=None, quality_summary=[],
        domain_trend=domain_trend(scores, month, TREND_MONTHS, events=trend_events),
        gazetteer=gazetteer_rows, events=events,
    )
    return paths, {"events": len(events), "topics": len(topics.topics), "closed_topics": len(topics.closed)}
