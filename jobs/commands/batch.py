"""``riskwatch batch``: the monthly job — ingest, validate, classify, link, score, topics, report.

Exit codes a scheduler can act on: 0 done; 1 the job ran but failed (rows lost, a critical data
problem); 2 it could not start (bad arguments, missing inbox, gazetteer, key or model).
"""
from __future__ import annotations

import logging
import sys

from pipelines import pii
from pipelines.backfill import DEFAULT_PART_MB

NAME = "batch"
HELP = "run the monthly job for a month (or --from/--to for a backfill) and write its report"
log = logging.getLogger("riskwatch.batch")


def add_arguments(parser) -> None:
    parser.add_argument("--inbox", required=True, help="folder with hotline_12345/, police_110/, grid/ sub-folders")
    parser.add_argument("--gazetteer", required=True, help="region gazetteer CSV (code,name,level,parent_code,aliases)")
    parser.add_argument("--out", required=True, help="output root: warehouse/, quarantine/, reports/, manifests/")
    parser.add_argument("--month", help="the month to report on, YYYY-MM")
    parser.add_argument("--from", dest="first", help="first month of a backfill, YYYY-MM")
    parser.add_argument("--to", dest="last", help="last month of a backfill, YYYY-MM")
    parser.add_argument("--key-file", help=f"file holding the HMAC key for caller phones (else ${pii.KEY_ENV})")
    parser.add_argument("--ingest-time", help="the run's clock, ISO 8601 (default: newest input file's mtime)")
    parser.add_argument("--model-dir", help="classifier artifact folder (default: the bundled model)")
    parser.add_argument("--full", action="store_true",
                        help="re-read the whole inbox instead of only files not yet in the warehouse "
                        "(after upgrading RiskWatch or changing a feed contract)")
    parser.add_argument("--part-mb", type=int, default=None,
                        help="read more files than this many MB (a backfill) in parts of whole months, one "
                        "pipeline run each, so memory follows a part, not the inbox (default "
                        f"{DEFAULT_PART_MB}; 0 = one run)")


def progress_printer(stream=None):
    """Stage lines: with elapsed time on a terminal, as plain log lines otherwise (cron, Airflow)."""
    import time

    stream = stream or sys.stderr
    started = time.monotonic()
    if stream.isatty():
        return lambda message: print(f"[{time.monotonic() - started:6.1f}s] {message}", file=stream, flush=True)
    return log.info


def run(args, beam_args) -> int:
    from models.domain_classifier import ArtifactMismatch, DomainClassifier
    from pipelines.batch import BatchJobError, MonthRange, critical_findings, parse_month, run_batch
    from pipelines.ingest import AccountingError, parse_ingest_time

    try:
        if args.month and (args.first or args.last):
            raise BatchJobError("give either --month or --from/--to, not both")
        if not (args.month or args.first):
            raise BatchJobError("which month? give --month YYYY-MM (or --from/--to for a backfill)")
        first = parse_month(args.month or args.first)
        months = MonthRange(first, parse_month(args.last) if args.last else first)
        key = pii.load_key(args.key_file)
        ingest_time = parse_ingest_time(args.ingest_time) if args.ingest_time else None
        DomainClassifier.load(args.model_dir)  # fail before the pipeline starts, with the loader's message
    except (BatchJobError, pii.MissingKeyError, ArtifactMismatch, ValueError) as exc:
        print(f"riskwatch batch: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_batch(args.inbox, args.gazetteer, args.out, key, months, beam_args=beam_args,
                           ingest_time=ingest_time, model_dir=args.model_dir, progress=progress_printer(),
                           incremental=not args.full,
                           part_bytes=(DEFAULT_PART_MB if args.part_mb is None else args.part_mb) * 2**20)
    except BatchJobError as exc:
        print(f"riskwatch batch: {exc}", file=sys.stderr)
        return 2
    except AccountingError as exc:
        print(f"riskwatch batch: FAILED: {exc}", file=sys.stderr)
        return 1
    for month, paths in result.reports.items():
        print(f"{month}: {paths['report.html']}")
    print(f"manifest: {result.manifest_path}")
    critical = critical_findings(result)
    if critical:
        print("riskwatch batch: FAILED: critical data-quality findings (see quality/ and the report):", file=sys.stderr)
        for line in critical:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
