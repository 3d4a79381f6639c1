"""Batches and the batch-level checks no single row can show, bounded by the feed's history.

A batch is what a department delivered: one file. Its period is inferred from its records: a
file whose records mostly fall on one day is that day's export, otherwise the month's. The stream
job passes its windows as batches with the window as the period.

Each batch becomes one row of a per-feed *batch table* (its measures and, from the feed's history,
the bounds they must respect); great-expectations validates that table with one suite per feed.
GX costs ~20 ms per expectation whatever the data size, so validating a table of 30 daily batches
once is ~30 times cheaper than validating 30 batches one by one, with the same checks.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from scipy import stats

import schemas
from quality import suites
from quality.history import HOURS, DailyProfile, event_dates
from quality.policy import Policy

TZ = ZoneInfo(schemas.TIMEZONE)
BATCH_COLUMN = "batch"


@dataclass
class Batch:
    feed: str
    label: str                      # the delivered file (relative to the inbox), or a window name
    period_start: dt.datetime       # timezone-aware, inclusive
    period_end: dt.datetime         # exclusive
    frame: pd.DataFrame

    @property
    def dates(self) -> tuple[dt.date, dt.date]:
        return self.period_start.date(), self.period_end.date()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=TZ)


def infer_period(frame: pd.DataFrame, daily_share: float) -> tuple[dt.datetime, dt.datetime]:
    dates = event_dates(frame)
    counts = dates.value_counts()
    if counts.iloc[0] >= daily_share * len(frame):
        day = counts.index[0]
        return _midnight(day), _midnight(day + dt.timedelta(days=1))
    month = dates.map({d: d.strftime("%Y-%m") for d in counts.index}).value_counts().index[0]
    start = dt.date.fromisoformat(month + "-01")
    return _midnight(start), _midnight((start.replace(day=28) + dt.timedelta(days=4)).replace(day=1))


def split_batches(events: pd.DataFrame, policy: Policy) -> list[Batch]:
    """One batch per (feed, delivered file); events without a file are one batch per feed-day."""
    frame = events.assign(feed_file=events["feed_file"].fillna(""))
    out = []
    for (feed, file), part in frame.groupby(["source", "feed_file"], sort=True):
        if file:
            start, end = infer_period(part, policy.batching.get("daily_share", 0.5))
            out.append(Batch(feed, file, start, end, part.reset_index(drop=True)))
            continue
        for day, daypart in part.groupby(event_dates(part), sort=True):
            out.append(Batch(feed, f"{feed}@{day.isoformat()}", _midnight(day),
                             _midnight(day + dt.timedelta(days=1)), daypart.reset_index(drop=True)))
    return out


def kl_divergence(observed: pd.Series, reference: pd.Series, unseen_weight: float) -> float:
    """KL(observed ‖ reference) of two count/share vectors; values the reference never saw get a
    small weight, so a new value counts as drift in proportion to its share, not as infinity."""
    keys = list(dict.fromkeys([*reference.index, *observed.index]))
    p = observed.reindex(keys, fill_value=0).to_numpy(float)
    q = reference.reindex(keys, fill_value=0).to_numpy(float) + unseen_weight
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def hour_shift(observed: pd.Series, reference: pd.Series, unseen_weight: float = 0.001) -> int:
    """The circular shift (hours) of history's hour profile that the batch matches best."""
    ref = reference.reindex(HOURS, fill_value=0)
    kls = [kl_divergence(observed, pd.Series(np.roll(ref.to_numpy(float), k), index=HOURS), unseen_weight) for k in range(24)]
    best = int(np.argmin(kls))
    return best if best <= 12 else best - 24


# Selectors of the rows behind a failed check, for counts and example rows.
def rows_after_period(batch: Batch, policy: Policy) -> pd.Series:
    return batch.frame["reported_at"] >= batch.period_end


def late_rows(batch: Batch, policy: Policy) -> pd.Series:
    hours = policy.threshold("late_records").get("hours", 72)
    return batch.frame["reported_at"] < batch.period_start - dt.timedelta(hours=hours)


def unresolved_rows(batch: Batch, policy: Policy) -> pd.Series:
    return batch.frame["region_resolved_by"] == policy.threshold("region_resolution").get("unresolved_value", "unresolved")


def duplicate_id_rows(batch: Batch, policy: Policy) -> pd.Series:
    return batch.frame[suites.ID_COLUMN].duplicated(keep=False)


def batch_row(batch: Batch, profile: DailyProfile | None, policy: Policy) -> dict:
    """The batch's measures and, where the feed has enough reference days, their bounds."""
    th = policy.threshold
    frame, n = batch.frame, len(batch.frame)
    # Shares of a handful of rows are noise: a batch below min_batch_rows gets no share checks.
    shares = n >= policy.thresholds.get("min_batch_rows", 20)
    row = {
        BATCH_COLUMN: batch.label, "period_start": batch.period_start.isoformat(), "rows": n,
        "after_period_share": float(rows_after_period(batch, policy).mean()) if shares else None,
        "late_share": float(late_rows(batch, policy).mean()) if shares else None,
        "duplicate_ids": int(duplicate_id_rows(batch, policy).sum()),
        "resolved_rate": float(1 - unresolved_rows(batch, policy).mean()) if shares else None,
        "min_rows": None, "max_rows": None, "expected_rows": None, "min_resolved_rate": th("region_resolution").get("default_min_rate", 0.7),
        "vanished_categories": 0, "category_kl": None, "hour_kl": None, "max_hour_kl": None,
    }
    for column in suites.key_columns(batch.feed):
        row[f"filled_{column}"] = float(frame[column].notna().mean()) if shares else None
        row[f"min_filled_{column}"] = None
    start, end = batch.dates
    days = profile.reference_days(start, end, policy.thresholds.get("history_days", 56)) if profile else []
    if len(days) < policy.thresholds.get("min_reference_days", 5):
        return row
    expected = profile.expected_count(start, end, days)
    rc = th("row_count")
    # Bounds around ratio × expected widened by Poisson noise, so a feed of 15 records a day is
    # not flagged for 7 while one of 1,000 is flagged for 450.
    tail = rc.get("noise_tail", 0.001)
    row.update(expected_rows=round(expected, 1),
               min_rows=int(stats.poisson.ppf(tail, rc.get("low_ratio", 0.5) * expected)),
               max_rows=int(stats.poisson.isf(tail, rc.get("high_ratio", 2.0) * expected)) + 1)
    resolved = profile.resolved_share(days)
    if resolved is not None:
        row["min_resolved_rate"] = max(0.0, resolved - th("region_resolution").get("tolerance", 0.15))
    kf = th("key_field_empty")
    for column, share in profile.filled_share(days).items():
        if share >= kf.get("min_history_filled", 0.5):
            row[f"min_filled_{column}"] = max(0.0, float(share) - kf.get("tolerance", 0.2))
    drift, unseen = th("category_drift"), th("category_drift").get("unseen_weight", 0.001)
    vanished, kls = [], []
    for column in suites.department_category_columns(batch.feed):
        shares = profile.category_shares(column, days)
        present = set(frame[column].dropna())
        vanished += [v for v, s in shares.items() if s * n >= th("category_vanished").get("min_expected", 8) and v not in present]
        if n >= drift.get("min_rows", 100) and len(shares):
            kls.append(kl_divergence(frame[column].value_counts(), shares, unseen))
    row["vanished_categories"] = len(vanished)
    row["category_kl"] = max(kls) if kls else None
    hours = profile.hour_shares(days)
    if n >= th("hour_profile").get("min_rows", 50) and len(hours):
        row["hour_kl"] = kl_divergence(frame["reported_at"].dt.hour.value_counts(), hours, unseen)
        # A sample of n rows over 24 hours shows KL ≈ 23/(2n) by chance alone.
        row["max_hour_kl"] = th("hour_profile").get("max_kl", 0.25) + (len(HOURS) - 1) / (2 * n)
    return row


def batch_table(batches: list[Batch], profile: DailyProfile | None, policy: Policy) -> pd.DataFrame:
    return pd.DataFrame([batch_row(b, profile, policy) for b in batches])


def batch_expectations(feed: str, policy: Policy) -> list:
    """The feed's batch suite: fixed expectations over the batch table, whose bound columns carry
    each batch's history; batches without enough history have empty bounds and are skipped."""
    th = policy.threshold
    category = (suites.department_category_columns(feed) or ["source_category"])[0]
    meta = lambda check, field=None: {"check": check, "field": field}  # noqa: E731
    pair = lambda a, b, check, field=None: gxe.ExpectColumnPairValuesAToBeGreaterThanB(  # noqa: E731
        column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing", meta=meta(check, field))
    exps = [
        pair("rows", "min_rows", "row_count"),
        pair("max_rows", "rows", "row_count"),
        gxe.ExpectColumnValuesToBeBetween(column="after_period_share", max_value=th("period").get("max_outside_share", 0.02), meta=meta("period", "reported_at")),
        gxe.ExpectColumnValuesToBeBetween(column="late_share", max_value=th("late_records").get("max_share", 0.2), meta=meta("late_records", "reported_at")),
        gxe.ExpectColumnValuesToBeBetween(column="duplicate_ids", max_value=0, meta=meta("id_unique", suites.ID_COLUMN)),
        pair("resolved_rate", "min_resolved_rate", "region_resolution", "region_resolved_by"),
        gxe.ExpectColumnValuesToBeBetween(column="vanished_categories", max_value=0, meta=meta("category_vanished", category)),
        gxe.ExpectColumnValuesToBeBetween(column="category_kl", max_value=th("category_drift").get("max_kl", 0.35), meta=meta("category_drift", category)),
        pair("max_hour_kl", "hour_kl", "hour_profile", "reported_at"),
    ]
    for column in suites.key_columns(feed):
        exps.append(pair(f"filled_{column}", f"min_filled_{column}", "key_field_empty", column))
    return exps
