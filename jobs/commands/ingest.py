"""``riskwatch ingest``: read every file in an inbox, write Events, quarantine and a run manifest."""
from __future__ import annotations

import sys

from jobs.terminal import text_table
from pipelines import pii

NAME = "ingest"
HELP = "ingest department feed files (12345, 110, grid) into Events, quarantine and a run manifest"


def add_arguments(parser) -> None:
    parser.add_argument("--inbox", required=True, help="folder with hotline_12345/, police_110/, grid/ sub-folders")
    parser.add_argument("--gazetteer", required=True, help="region gazetteer CSV (code,name,level,parent_code,aliases)")
    parser.add_argument("--out", required=True, help="output root: warehouse/, quarantine/, manifests/")
    parser.add_argument("--key-file", help=f"file holding the HMAC key for caller phones (else ${pii.KEY_ENV})")
    parser.add_argument("--ingest-time", help="the run's clock, ISO 8601 (default: newest input file's mtime); "
                        "stamps ingested_at and bounds future_time")
    parser.add_argument("--event-shards", type=int, default=1, help="Parquet files per month (default 1)")


def accounting_table(manifest: dict) -> str:
    """Per-file read / accepted / superseded / quarantined-by-reason, and totals, as plain text."""
    rows = [("文件", "读取", "入库", "被覆盖", "隔离", "隔离原因", "未定位")]
    for entry in manifest["files"]:
        reasons = ", ".join(f"{r}={n}" for r, n in entry["quarantined"].items()) or "-"
        rows.append((entry["file"], entry["rows_read"], entry["accepted"], entry["superseded"],
                     sum(entry["quarantined"].values()), reasons, entry["unresolved_regions"]))
    t = manifest["totals"]
    reasons = ", ".join(f"{r}={n}" for r, n in t["quarantined_by_reason"].items()) or "-"
    rows.append(("合计", t["rows_read"], t["accepted"], t["superseded"], t["quarantined"], reasons, t["unresolved_regions"]))
    return text_table(rows)


def run(args, beam_args) -> int:
    from pipelines.ingest import AccountingError, parse_ingest_time, run_ingest

    try:
        key = pii.load_key(args.key_file)
    except pii.MissingKeyError as exc:
        print(f"riskwatch ingest: {exc}", file=sys.stderr)
        return 2
    try:
        ingest_time = parse_ingest_time(args.ingest_time) if args.ingest_time else None
    except ValueError as exc:
        print(f"riskwatch ingest: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_ingest(args.inbox, args.gazetteer, args.out, key, ingest_time, beam_args, args.event_shards)
    except AccountingError as exc:
        print(f"riskwatch ingest: FAILED: {exc}", file=sys.stderr)
        return 1
    print(accounting_table(result.manifest))
    print(f"manifest: {result.manifest_path}")
    return 0
