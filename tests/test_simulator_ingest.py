"""The ingest (issue 2) on simulated feeds: every row accounted for, exactly the planted rows quarantined."""
from __future__ import annotations

import csv
import datetime as dt
import glob
import json
from collections import Counter

from pipelines.ingest import run_ingest
from simulator import simulate


def test_ingest_quarantines_exactly_the_planted_rows(tmp_path):
    sim = tmp_path / "county"
    summary = simulate(sim, "2025-06", 2, seed=21, population=15_000, broken_share=0.03)
    out = tmp_path / "out"
    result = run_ingest(str(sim / "inbox"), str(sim / "gazetteer.csv"), str(out), b"test-key",
                        ingest_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    with open(sim / "truth" / "records.csv", encoding="utf-8", newline="") as f:
        truth = list(csv.DictReader(f))
    planted = {(r["file"], int(r["line"])): r["broken_reason"] for r in truth if r["broken_reason"]}
    quarantined = {}
    for path in glob.glob(str(out / "quarantine" / "*.jsonl")):
        for line in open(path, encoding="utf-8"):
            q = json.loads(line)
            quarantined[(q["file"], q["line"])] = q["reason"]
    # Totals rows (合计) are no records: the ingest counts them as summary rows, the truth leaves them out.
    summaries = {k for k, reason in quarantined.items() if reason == "summary_row"}
    assert {k: v for k, v in quarantined.items() if k not in summaries} == planted
    assert len(planted) == summary.broken > 20
    assert set(planted.values()) >= {"bad_time", "missing_field", "future_time", "unknown_value", "encoding_error", "malformed_row"}

    manifest = {entry["file"]: entry for entry in result.manifest["files"]}
    per_file = Counter(r["file"] for r in truth)
    summary_per_file = Counter(k[0] for k in summaries)
    assert {f: e["rows_read"] for f, e in manifest.items()} == {f: n + summary_per_file[f] for f, n in per_file.items()}
    assert sum(e["superseded"] for e in manifest.values()) == summary.duplicates > 0
    assert sum(e["accepted"] for e in manifest.values()) == len(truth) - len(planted) - summary.duplicates
