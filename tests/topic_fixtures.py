"""Hand-written events of one month (and three before it) for topic and report tests."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

DATA = Path(__file__).resolve().parent / "data"
GAZETTEER = DATA / "topic_gazetteer.csv"
MONTH = "2025-06"
TZ = ZoneInfo("Asia/Shanghai")
CHENGGUAN, QINGSHI = "341122100000", "341122101000"


def _fixture() -> dict:
    with open(DATA / "topic_events.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def month_events() -> list[dict]:
    """Event dicts; event ids carry the hand label (`xingfuli`, `jinxiu`, `hongda`, `other`)."""
    events = []
    for group in _fixture()["groups"]:
        for i, (source, text, signals, caller) in enumerate(group["events"]):
            events.append({
                "event_id": f"{source}:{group['township'][-6:]}-{group['label']}-{i}",
                "source": source,
                "reported_at": dt.datetime(2025, 6, 1 + i, 9 + i % 8, 30, tzinfo=TZ),
                "township_code": group["township"],
                "village_code": None,
                "domain": group["domain"],
                "text": text,
                "signals": signals,
                "caller_key": caller,
                "incident_id": None,
            })
    return events


def history_events() -> list[dict]:
    events = []
    for i, (month, township, domain, text) in enumerate(_fixture()["history"]):
        year, mon = (int(p) for p in month.split("-"))
        events.append({
            "event_id": f"hotline_12345:h{i}", "source": "hotline_12345",
            "reported_at": dt.datetime(year, mon, 5 + i, 10, tzinfo=TZ), "township_code": township,
            "village_code": None, "domain": domain, "text": text, "signals": [], "caller_key": None,
            "incident_id": None,
        })
    return events


def score_row(township: str, domain: str, month: str, observed: float, expected: float, score: float,
              level: str, reasons=(), complete: bool = True) -> dict:
    year, mon = (int(p) for p in month.split("-"))
    return {"period": "month", "period_start": dt.date(year, mon, 1), "township_code": township,
            "village_code": None, "domain": domain, "observed": observed, "expected": expected, "score": score,
            "level": level, "reasons": list(reasons), "complete": complete}


def month_scores() -> list[dict]:
    return [
        score_row(CHENGGUAN, "housing_construction", MONTH, 20, 6, 82, "orange", ["本月20件，为预期的3.3倍"]),
        score_row(QINGSHI, "labor_wage", MONTH, 8, 3, 64, "yellow", ["本月8件，为预期的2.7倍"]),
        score_row(CHENGGUAN, "public_order", MONTH, 30, 29, 12, "none"),
        score_row(QINGSHI, "land_demolition", MONTH, 1, 2, 3, "none", complete=False),
    ]


def label_of(event_id: str) -> str:
    return event_id.split("-")[1]
