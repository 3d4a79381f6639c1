"""The batch job's Beam pipeline on the FnApiRunner and on a real two-worker dask.distributed
cluster (tests/dask_cluster.py), on the same small simulated county month.

    PYTHONPATH=. python benchmarks/bench_batch_dask.py [--population 20000] [--months 2] [--workers 2]

Prints the rows, wall seconds and events/s of each run (pipeline only: ingest, classify, link,
score and the sinks; not the report), and whether both wrote the same outputs. Then the monthly
run as it happens in the field, on the FnApiRunner: the earlier months are already in the
warehouse (a first run without the last month's files) and the last month's files arrive; the
incremental run must write what the run over the whole inbox wrote.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import datetime as dt
import time
from pathlib import Path

from models.topics import shift_month
from pipelines.batch import MonthRange, run_batch_pipeline
from pipelines.runners import DASK_RUNNER
from simulator import simulate
from tests.dask_cluster import DaskCluster
from tests.test_batch_dask import batch_outputs

KEY = b"bench-key"
INGEST_TIME = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)  # one clock for every run: ingested_at is compared


def _move_month(inbox: Path, to: Path, month: str) -> list[Path]:
    """Move the files of `month` (by name) from `inbox` to `to` (mtimes kept); returns their relpaths."""
    moved = []
    for path in sorted(p for p in inbox.rglob("*") if p.is_file() and month in p.name):
        rel = path.relative_to(inbox)
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, to / rel)
        moved.append(rel)
    return moved


def _measure(name: str, sim: Path, out: Path, months: MonthRange, beam_args: list[str]) -> dict:
    started = time.monotonic()
    _, manifest = run_batch_pipeline(str(sim / "inbox"), str(sim / "gazetteer.csv"), str(out), KEY, months,
                                     beam_args=beam_args, progress=lambda _: None, ingest_time=INGEST_TIME)
    seconds = time.monotonic() - started
    totals = manifest["totals"]
    print(f"{name:12s} rows_read={totals['rows_read']} events={totals['accepted']} "
          f"quarantined={totals['quarantined']} wall_s={seconds:.1f} events_per_s={totals['accepted'] / seconds:.0f}",
          flush=True)
    return batch_outputs(out, manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=20000)
    parser.add_argument("--start", default="2026-09")
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-dask-") as tmp:
        sim = Path(tmp) / "sim"
        summary = simulate(sim, args.start, args.months, seed=args.seed, population=args.population)
        last = shift_month(args.start, args.months - 1)
        months = MonthRange(last, last)
        print(f"simulated {summary.rows} rows, {args.start}..{last}; scoring {last}", flush=True)
        local = _measure("FnApiRunner", sim, Path(tmp) / "local", months, [])
        with DaskCluster(workers=args.workers) as cluster:
            on_dask = _measure("DaskRunner", sim, Path(tmp) / "dask", months, [
                f"--runner={DASK_RUNNER}", f"--dask_client_address={cluster.address}",
                f"--dask_npartitions={args.workers}"])
        print(f"same_outputs={on_dask == local}")

        held = Path(tmp) / "held"
        moved = _move_month(sim / "inbox", held, last)
        _measure("first_run", sim, Path(tmp) / "incremental", months, [])
        for rel in moved:
            shutil.move(held / rel, sim / "inbox" / rel)
        incremental = _measure("incremental", sim, Path(tmp) / "incremental", months, [])
        print(f"incremental_files={len(moved)} same_as_whole_inbox="
              f"{(incremental['events'], incremental['scores']) == (local['events'], local['scores'])}")


if __name__ == "__main__":
    main()
