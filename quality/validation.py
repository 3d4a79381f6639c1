"""Running the suites with great-expectations — one ephemeral context per run, DataFrames
validated directly — and turning each failure into findings with counts and masked examples."""
from __future__ import annotations

import re

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from quality import batch as batches_
from quality import suites
from quality.batch import BATCH_COLUMN, Batch
from quality.history import DailyProfile
from quality.policy import Policy

_DIGITS = re.compile(r"\d{5,}")
TEXT_PREVIEW = 24


class QualityRun:
    """One GX context for a whole run: building contexts and data sources is the slow part."""

    def __init__(self, policy: Policy, run_name: str):
        self.policy = policy
        self.run_name = run_name
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self.context.data_sources.add_pandas("riskwatch").add_dataframe_asset("frames")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.results: list[tuple[str, str, object]] = []   # (suite name, batch label, GX result)
        self.suites: dict[str, gx.ExpectationSuite] = {}

    def validate(self, suite_name: str, label: str, frame: pd.DataFrame, expectations: list, index_column: str,
                 complete: bool = False):
        expectations = [e for e in expectations if self.policy.enabled(e.meta["check"])]
        suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)
        # Only the columns the suite reads: GX fingerprints every batch, and a column of lists (the
        # Events' signals) turns its hash into a pickle of the whole frame.
        read = {index_column} | {c for e in expectations for c in _columns_of(e)}
        frame = frame[[c for c in frame.columns if c in read]]
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={
            "result_format": "COMPLETE" if complete else "SUMMARY",
            "partial_unexpected_count": self.policy.examples_per_finding,
            "unexpected_index_column_names": [index_column],
        })
        self.suites[suite_name] = suite
        self.results.append((suite_name, label, result))
        return result


def _columns_of(expectation) -> list[str]:
    columns = [getattr(expectation, name, None) for name in ("column", "column_A", "column_B")]
    return [c for c in columns if c] + list(getattr(expectation, "column_list", None) or [])


def mask_text(text) -> str | None:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    text = _DIGITS.sub(lambda m: m.group()[:2] + "*" * (len(m.group()) - 2), str(text))
    return text[:TEXT_PREVIEW] + ("…" if len(text) > TEXT_PREVIEW else "")


def example_rows(rows: pd.DataFrame, field: str | None, limit: int) -> list[dict]:
    """Rows as a clerk finds them in the file: file, line, id, time, the offending value and the
    start of the (already masked) text, with long digit runs hidden."""
    out = []
    for _, row in rows.head(limit).iterrows():
        value = row.get(field) if field and field in row.index else None
        out.append({
            "file": row.get("feed_file"),
            "line": None if pd.isna(row.get("feed_line")) else int(row.get("feed_line")),
            "source_id": row.get("source_id"),
            "reported_at": row["reported_at"].strftime("%Y-%m-%d %H:%M") if pd.notna(row.get("reported_at")) else None,
            "value": None if value is None or (not isinstance(value, (str, list)) and pd.isna(value)) else mask_text(value),
            "text": mask_text(row.get("text")),
        })
    return out


def _finding(feed, label, period, check, field, expectation, policy, **extra) -> dict:
    return {"feed": feed, "batch": label, "period_start": period[0], "period_end": period[1], "check": check,
            "severity": policy.severity_of(check), "field": field, "expectation": expectation,
            "count": None, "rows": None, "observed": None, "expected": None, "details": {}, "examples": [], **extra}


def contract_findings(run: QualityRun, feed: str, frame: pd.DataFrame, label: str, period: tuple[str, str]) -> list[dict]:
    """Row-level contract suite of one feed over ``frame`` (a month or a window of its events)."""
    result = run.validate(f"{feed}.contract", label, frame, suites.contract_expectations(feed, run.policy), suites.ID_COLUMN)
    out = []
    for r in result.results:
        if r.success:
            continue
        cfg, res = r.expectation_config, r.result or {}
        field = cfg.meta.get("field")
        ids = [row.get(suites.ID_COLUMN) for row in res.get("partial_unexpected_index_list") or [] if isinstance(row, dict)]
        # A contract finding covers the whole frame (a month or a window), not one delivered file.
        f = _finding(feed, None, period, cfg.meta["check"], field, cfg.type, run.policy,
                     count=res.get("unexpected_count"), rows=len(frame))
        f["examples"] = example_rows(frame[frame[suites.ID_COLUMN].isin(ids)], field, run.policy.examples_per_finding)
        f["details"]["values"] = [mask_text(v) for v in (res.get("partial_unexpected_list") or [])]
        if r.exception_info and r.exception_info.get("raised_exception"):
            f["details"]["error"] = r.exception_info.get("exception_message")
        out.append(f)
    return out


def batch_findings(run: QualityRun, feed: str, batches: list[Batch], profile: DailyProfile | None, label: str) -> tuple[list[dict], pd.DataFrame]:
    """The feed's batch suite over its batch table; one finding per failing batch and check."""
    if not batches:
        return [], pd.DataFrame()
    table = batches_.batch_table(batches, profile, run.policy)
    result = run.validate(f"{feed}.batch", label, table, batches_.batch_expectations(feed, run.policy), BATCH_COLUMN, complete=True)
    by_label = {b.label: b for b in batches}
    rows = table.set_index(BATCH_COLUMN)
    out = []
    for r in result.results:
        if r.success:
            continue
        cfg, res = r.expectation_config, r.result or {}
        failing = [row[BATCH_COLUMN] for row in res.get("unexpected_index_list") or [] if isinstance(row, dict)]
        for name in dict.fromkeys(failing):
            out.append(_batch_finding(by_label[name], rows.loc[name], cfg, run.policy, profile))
    return out, table


def _batch_finding(batch: Batch, row: pd.Series, cfg, policy: Policy, profile: DailyProfile | None) -> dict:
    check, field = cfg.meta["check"], cfg.meta.get("field")
    f = _finding(batch.feed, batch.label, (batch.period_start.isoformat(), batch.period_end.isoformat()),
                 check, field, cfg.type, policy, rows=len(batch.frame))
    frame, limit = batch.frame, policy.examples_per_finding
    selector = {
        "period": batches_.rows_after_period, "late_records": batches_.late_rows,
        "region_resolution": batches_.unresolved_rows, "id_unique": batches_.duplicate_id_rows,
        "key_field_empty": lambda b, p: b.frame[field].isna(),
    }.get(check)
    if selector is not None:
        mask = selector(batch, policy)
        f["count"] = int(mask.sum())
        f["examples"] = example_rows(frame[mask], field if check != "id_unique" else "source_id", limit)
    if check == "row_count":
        f.update(count=len(frame), observed=len(frame), expected=row["expected_rows"])
    elif check == "key_field_empty":
        f.update(observed=round(float(row[f"filled_{field}"]), 4), expected=round(float(row[f"min_filled_{field}"]) + policy.threshold("key_field_empty").get("tolerance", 0.2), 4))
    elif check == "region_resolution":
        f.update(observed=round(float(row["resolved_rate"]), 4), expected=round(float(row["min_resolved_rate"]), 4))
    elif check in ("category_vanished", "category_drift", "hour_profile"):
        days = profile.reference_days(*batch.dates, policy.thresholds.get("history_days", 56))
        if check == "hour_profile":
            f["observed"] = round(float(row["hour_kl"]), 3)
            f["details"]["shift_hours"] = batches_.hour_shift(frame["reported_at"].dt.hour.value_counts(), profile.hour_shares(days))
        else:
            shares = profile.category_shares(field, days)
            now = frame[field].value_counts(normalize=True)
            if check == "category_vanished":
                min_expected = policy.threshold("category_vanished").get("min_expected", 8)
                missing = [v for v, s in shares.items() if s * len(frame) >= min_expected and v not in now.index]
                f["count"] = len(missing)
                f["details"]["missing"] = {v: round(float(shares[v]) * len(frame), 1) for v in missing}
            else:
                f["observed"] = round(float(row["category_kl"]), 3)
                change = (now.reindex(shares.index.union(now.index), fill_value=0) - shares.reindex(shares.index.union(now.index), fill_value=0))
                top = change.abs().sort_values(ascending=False).head(3).index
                f["details"]["changes"] = {v: [round(float(shares.get(v, 0.0)), 3), round(float(now.get(v, 0.0)), 3)] for v in top}
    return f
