"""Per delivered file: rows read, accepted, superseded and quarantined, from the run manifests and
the quarantine; validated with GX for files with many rejected or repeated rows."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd

from quality.policy import Policy

FILE_COLUMN = "file"


def read_quarantine(directory: Path) -> list[dict]:
    records = []
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def manifest_files(directory: Path) -> dict[str, dict]:
    """file → counts from every run manifest (the latest run wins for a file read twice)."""
    files: dict[str, dict] = {}
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        entries = manifest.get("files") or manifest.get("inputs") or []
        if isinstance(entries, dict):
            entries = [{"file": name, **counts} for name, counts in entries.items()]
        for entry in entries:
            name = entry.get("file") or entry.get("path")
            if name:
                files[name] = entry
    return files


def accounting_table(feed: str, events: pd.DataFrame, quarantine: list[dict], manifest: dict[str, dict]) -> pd.DataFrame:
    """One row per file of the feed. Without a manifest entry, accepted rows are counted from the
    events and superseded ones are unknown (0)."""
    accepted = events[events["source"] == feed].groupby("feed_file").size().to_dict()
    rejected = Counter(q["file"] for q in quarantine if q.get("feed") == feed)
    names = set(accepted) | set(rejected) | {n for n, e in manifest.items() if e.get("feed") == feed or n.startswith(f"{feed}/")}
    rows = []
    for name in sorted(names):
        entry = manifest.get(name, {})
        quarantined = entry.get("quarantined", rejected.get(name, 0))
        quarantined = sum(quarantined.values()) if isinstance(quarantined, dict) else int(quarantined or 0)
        acc = int(entry.get("accepted", accepted.get(name, 0)))
        superseded = int(entry.get("superseded", 0) or 0)
        read = int(entry.get("rows_read", acc + superseded + quarantined))
        rows.append({FILE_COLUMN: name, "rows_read": read, "accepted": acc, "superseded": superseded, "quarantined": quarantined,
                     "quarantine_share": quarantined / read if read else 0.0, "superseded_share": superseded / read if read else 0.0})
    return pd.DataFrame(rows, columns=[FILE_COLUMN, "rows_read", "accepted", "superseded", "quarantined", "quarantine_share", "superseded_share"])


def accounting_expectations(policy: Policy) -> list:
    return [
        gxe.ExpectColumnValuesToBeBetween(column="quarantine_share", max_value=policy.threshold("quarantine_share").get("max_share", 0.05),
                                          meta={"check": "quarantine_share", "field": None}),
        gxe.ExpectColumnValuesToBeBetween(column="superseded_share", max_value=policy.threshold("superseded_share").get("max_share", 0.5),
                                          meta={"check": "superseded_share", "field": None}),
    ]


def quarantine_reasons(feed: str, file: str, quarantine: list[dict], limit: int) -> dict:
    """Counts by reason and the first messages (file, line, field, message; never the raw row)."""
    mine = [q for q in quarantine if q.get("feed") == feed and q.get("file") == file]
    return {
        "reasons": dict(Counter(q.get("reason") for q in mine).most_common()),
        "examples": [{"file": q.get("file"), "line": q.get("line"), "field": q.get("field"), "message": q.get("message")} for q in mine[:limit]],
    }
