"""What the report shows besides topics, derived from score rows, events and alerts."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

import pandas as pd

import schemas
from models.topics import event_months, month_of, records, score_month, score_rows, shift_month


def _month_rows(scores: Any, month: str | None = None) -> list[dict]:
    rows = [r for r in score_rows(scores) if r.get("period") == "month" and not r.get("village_code")]
    return [r for r in rows if month is None or score_month(r) == month]


def expected_total(expected: list) -> float | None:
    """The expected incidents of several score rows: None when there are none (a month no job scored)
    or one has no baseline (a null ``expected``), which a sum would hide."""
    return None if not expected or pd.isna(expected).any() else float(sum(expected))


def domain_trend(scores: Any, month: str, months: int = 12, events: Any = None,
                 incidents: Mapping[tuple[str, str], int] | None = None) -> dict[str, list[dict]]:
    """Per domain, the county's events and expected events for each of the last `months` months (None
    where the month has no score row, or one with no baseline: a null ``expected``).

    Scores carry the months a job scored; ``events`` (the months' Events, when given) supply the
    observed incidents of every month, scored or not, as do ``incidents`` when counted already:
    (domain, month) → incidents (``incident_counts``, ``MonthEvents.incidents_by_domain``)."""
    window = [shift_month(month, -k) for k in range(months - 1, -1, -1)]
    totals: dict[str, dict[str, list]] = defaultdict(lambda: {m: [0.0, []] for m in window})
    for r in _month_rows(scores):
        m = score_month(r)
        if m in window and r.get("domain") not in (None, "none"):
            total = totals[r["domain"]][m]
            total[0] += float(r.get("observed") or 0)
            total[1].append(r.get("expected"))
    if events is not None:
        incidents = incident_counts(events, window)
    if incidents is not None:
        for code in dict.fromkeys(d for d, _ in incidents):
            for m in window:
                totals[code][m][0] = float(incidents.get((code, m), 0))
    return {
        code: [{"month": m, "observed": totals[code][m][0], "expected": expected_total(totals[code][m][1])}
               for m in window]
        for code in schemas.domain_codes(include_none=False)
    }


def incident_counts(events: Any, months: list[str]) -> dict[tuple[str, str], int]:
    """(domain, month) → incidents of these months' Events; domain ``none`` and missing left out."""
    frame = event_frame(events)
    frame = frame[frame["month"].isin(months) & frame["domain"].notna() & (frame["domain"] != "none")]
    return {key: int(n) for key, n in frame.groupby(["domain", "month"])["incident"].nunique().items()}


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
    frame = event_frame(events)
    frame = frame[frame["month"] == month]
    month_alerts = alerts_of_month(alerts, month)
    rows = _month_rows(scores, month)
    return {
        "events": len(frame),
        "incidents": int(frame["incident"].nunique()),
        "risk_events": int((frame["domain"].notna() & (frame["domain"] != "none")).sum()),
        "alerts": len(month_alerts),
        "red": sum(1 for a in month_alerts if a.get("level") == "red"),
        "orange": sum(1 for a in month_alerts if a.get("level") == "orange"),
        "completeness": (sum(1 for r in rows if r.get("complete")) / len(rows)) if rows else None,
    }


def event_frame(events: Any) -> pd.DataFrame:
    """Month, domain and incident (its incident_id, else the event's own id) of each Event, from a
    DataFrame of Events (column by column) or any iterable of Events or event records."""
    columnar = isinstance(events, pd.DataFrame) and {"reported_at", "domain", "incident_id", "event_id"} <= set(events)
    if columnar and (months := event_months(events["reported_at"])) is not None:
        frame = pd.DataFrame({"month": months, "domain": events["domain"].to_numpy(),
                              "incident_id": events["incident_id"].to_numpy(), "event_id": events["event_id"].to_numpy()})
    else:
        frame = pd.DataFrame(records(events), columns=["month", "domain", "incident_id", "event_id"])
    # an incident_id that is missing or empty leaves the event its own incident
    known = frame["incident_id"].notna() & (frame["incident_id"] != "")
    frame["incident"] = frame["incident_id"].where(known, frame["event_id"])
    return frame


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
