"""What the report shows besides topics, derived from score rows, events and alerts."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

import schemas
from models.topics import month_of, records, score_month, score_rows, shift_month


def _month_rows(scores: Any, month: str | None = None) -> list[dict]:
    rows = [r for r in score_rows(scores) if r.get("period") == "month" and not r.get("village_code")]
    return [r for r in rows if month is None or score_month(r) == month]


def domain_trend(scores: Any, month: str, months: int = 12, events: Any = None) -> dict[str, list[dict]]:
    """Per domain, the county's events and expected events for each of the last `months` months.

    Scores carry the months a job scored; ``events`` (the months' Events, when given) supply the
    observed incidents of every month, scored or not."""
    window = [shift_month(month, -k) for k in range(months - 1, -1, -1)]
    totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: {m: [0.0, 0.0] for m in window})
    for r in _month_rows(scores):
        m = score_month(r)
        if m in window and r.get("domain") not in (None, "none"):
            totals[r["domain"]][m][0] += float(r.get("observed") or 0)
            totals[r["domain"]][m][1] += float(r.get("expected") or 0)
    if events is not None:
        incidents: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
        for e in records(events):
            if e["month"] in window and e["domain"] not in (None, "none"):
                incidents[e["domain"]][e["month"]].add(e["incident_id"] or e["event_id"])
        for code, by_month in incidents.items():
            for m in window:
                totals[code][m][0] = float(len(by_month.get(m, ())))
    return {
        code: [{"month": m, "observed": totals[code][m][0], "expected": totals[code][m][1]} for m in window]
        for code in schemas.domain_codes(include_none=False)
    }


def township_domain_levels(scores: Any, month: str) -> dict[str, dict[str, dict]]:
    """township_code → domain → {level, score, observed} for the month's township-level rows."""
    table: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in _month_rows(scores, month):
        table[r["township_code"]][r["domain"]] = {
            "level": r.get("level") or "none",
            "score": float(r.get("score") or 0),
            "observed": float(r.get("observed") or 0),
        }
    return dict(table)


def headline_figures(events: Any, alerts: Any, scores: Any, month: str) -> dict:
    """Events and incidents of the month, warnings raised in it (red/orange), and completeness:
    the share of the month's township × domain scores computed on complete data."""
    month_events = [e for e in records(events) if e["month"] == month]
    month_alerts = alerts_of_month(alerts, month)
    rows = _month_rows(scores, month)
    return {
        "events": len(month_events),
        "incidents": len({e["incident_id"] or e["event_id"] for e in month_events}),
        "risk_events": sum(1 for e in month_events if e["domain"] not in (None, "none")),
        "alerts": len(month_alerts),
        "red": sum(1 for a in month_alerts if a.get("level") == "red"),
        "orange": sum(1 for a in month_alerts if a.get("level") == "orange"),
        "completeness": (sum(1 for r in rows if r.get("complete")) / len(rows)) if rows else None,
    }


def alerts_of_month(alerts: Any, month: str) -> list[dict]:
    """The month's warnings, most severe and latest first."""
    order = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
    chosen = [a for a in score_rows(alerts) if a.get("raised_at") is not None and month_of(a["raised_at"]) == month]
    chosen.sort(key=lambda a: str(a["raised_at"]), reverse=True)
    chosen.sort(key=lambda a: order.get(a.get("level"), 9))
    return chosen


def names_of(mapping: Mapping[str, str] | None, code: str | None) -> str:
    if not code:
        return "未定位"
    return (mapping or {}).get(code, code)
