"""Hand-built Events and a transparent scorer for the warning and stream tests.

The scorer maps the distinct incidents of a window to a level by fixed thresholds, so that the
tests exercise windowing, panes and suppression rather than the tuning of the risk model.
"""
from __future__ import annotations

import datetime as dt

from pipelines.normalise import TZ

TOWNSHIP = "330101001000"
DAY0 = dt.datetime(2026, 3, 2, tzinfo=TZ)


def at(hours: float) -> dt.datetime:
    return DAY0 + dt.timedelta(hours=hours)


def event(n: int, hours: float, domain: str = "land_demolition", township: str = TOWNSHIP,
          signals=(), people=None, batch: str = "b1", incident: str | None = None) -> dict:
    return {
        "event_id": f"hotline_12345:{n}",
        "source": "hotline_12345",
        "source_id": str(n),
        "reported_at": at(hours),
        "ingested_at": at(hours + 1),
        "batch_id": batch,
        "township_code": township,
        "text": "拆迁补偿款迟迟不到位",
        "people_involved": people,
        "domain": domain,
        "domain_confidence": 0.9,
        "domain_by": "model",
        "signals": list(signals),
        "incident_id": incident,
    }


class ThresholdScorer:
    """≥3 incidents yellow, ≥5 orange, ≥8 red; expected is the mean history over the window."""

    levels = ((8, "red"), (5, "orange"), (3, "yellow"))

    def setup(self):
        pass

    def assess(self, candidate, history, start):
        observed = len({r.incident for r in candidate["records"]})
        days = (candidate["window_end"] - candidate["window_start"]) / dt.timedelta(days=1)
        before = candidate["window_start"].date()
        past = [t["incidents"] for day, t in history.items() if start and start <= day < before]
        span = (before - start).days if start else 0
        expected = days * sum(past) / span if span else 0.0
        level = next((name for floor, name in self.levels if observed >= floor + expected), "none")
        return {"level": level, "score": float(observed), "expected": expected,
                "reasons": [f"{observed}起，预期{expected:.1f}起"]}
