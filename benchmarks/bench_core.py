"""RiskWatch on exactly the pandas reference's work, next to it: the like-for-like ratio of issue 9.

``benchmarks/bench_batch.py`` times the whole ``riskwatch batch`` job against
``benchmarks/reference_pandas.py``, which reads, normalises, classifies, counts per township × domain
× day and scores the township series; the job also links incidents, writes the warehouse, counts and
scores the villages, checks quality and writes the topics and the report. This benchmark runs, on the
FnApiRunner in one process as the job does, a pipeline made only of the job's own transforms, unchanged,
doing the reference's work on the same files (``build_core_pipeline``):

    inbox ─ IngestFeeds (read, normalise, mask, validate, classify, supersede; as the batch job sets it up)
          ─ DailyTallies (the job's counting) ─ township series only ─ DomainBatches ─ ScoreTallies
          ─ WriteScores

What it cannot leave out, because the job's transforms do it inseparably: the quarantine records and the
per-file accounting (``IngestFeeds``), the signals (``ClassifyChunks``), the village tallies and each
tally's subjects (``DailyCounts`` counts a record in its township's and its village's series at once; a
township's score scans its villages' bursts), the feed-day counts and data gaps (``ScoreTallies`` takes
them and the scores depend on them). What it leaves out, as the reference does: linking (each record is
its own incident, so it counts records, as the reference), the warehouse's Events and tallies, the village
scores, the quality checks, topics and report.

Both run as child processes on the same files, alternated (the order flipped every round); wall, CPU
seconds (user + system, the child's process tree) and peak memory as ``bench_batch.run_measured`` takes
them; then the medians, the ratio RiskWatch / reference, the score rows each wrote and how far
RiskWatch's township daily counts (the ``observed`` of its day score rows) are from the reference's.
They differ by design only where RiskWatch quarantines a row the reference keeps: characters that do not
decode (the reference decodes them as U+FFFD), a value outside the feed contract's vocabulary, a required
field the reference does not require (2025-10 of the county simulation: 58 records on 54 of 6,200 days;
every record both keep has the same day, township and domain on both sides):

    PYTHONPATH=. python benchmarks/bench_core.py --sim SIM --month 2025-10 --rounds 3 [--out DIR]

(SIM: a ``riskwatch simulate`` folder, e.g. the county's 2025-10 files alone, as ``bench_batch.py`` takes it.)

``--core-only`` runs the RiskWatch pipeline in this process and prints its figures (what the child runs).
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import pandas as pd

from benchmarks.bench_batch import _env, _print, run_measured, run_reference
from pipelines import pii
from pipelines.batch import MonthRange
from pipelines.ingest import IngestFeeds, default_ingest_time
from pipelines.options import beam_options
from pipelines.read import discover
from pipelines.runners import fewer_collections, run_to_completion
from pipelines.score import DailyTallies, DomainBatches, ScoreTallies
from pipelines.warehouse import FEED_DAYS, SERIES_TALLIES, WriteScores, read_scores

# a township × domain × day: the rows the two sides' daily counts are compared on
DAY_KEY = ["township_code", "domain", "period_start"]


def _township_series(tally) -> bool:
    (_, _, village, _), _ = tally[0]
    return village is None


def build_core_pipeline(pipeline: beam.Pipeline, *, inbox: str, gazetteer: str, key: bytes, months: MonthRange,
                        out: str, ingest_time: dt.datetime | None = None, model_dir: str | None = None) -> None:
    """The inbox's files → the township × domain score rows of ``months`` in ``<out>/warehouse/scores/``,
    through the batch job's transforms: its ingest (``pipelines.batch.run_batch_pipeline``'s arguments,
    a first run: no stored versions), its counting (``DailyTallies``, as ``ScoreEvents`` takes it, the
    village series left out) and its scoring (``ScoreTallies``)."""
    files = discover(inbox)
    ingest = IngestFeeds(inbox, gazetteer, key, ingest_time or default_ingest_time(files), files, order_files=files,
                         classify=True, model_dir=model_dir, tables=True)
    ingested = pipeline | "Ingest" >> ingest
    tallies = ingested["events"] | "Tallies" >> DailyTallies()
    townships = tallies[SERIES_TALLIES] | "TownshipSeries" >> beam.Filter(_township_series)
    batched = {SERIES_TALLIES: townships | "DomainBatches" >> DomainBatches(), FEED_DAYS: tallies[FEED_DAYS]}
    _ = (batched
         | "ScoreTallies" >> ScoreTallies(months.target_start, months.target_end, months.history_start,
                                          ingest.region_names)
         | "WriteScores" >> WriteScores(out))


def run_core(sim: Path, month: str, out: Path, beam_args: list[str]) -> dict:
    """The core pipeline in this process, with the collector's thresholds as every ``riskwatch`` command."""
    months = MonthRange(month, month)
    started = time.perf_counter()
    with fewer_collections():
        pipeline = beam.Pipeline(options=beam_options(beam_args))
        build_core_pipeline(pipeline, inbox=str(sim / "inbox"), gazetteer=str(sim / "gazetteer.csv"),
                            key=pii.load_key(), months=months, out=str(out))
        run_to_completion(pipeline)
    scores = read_scores(str(out), months.months)
    return {"pipeline_s": round(time.perf_counter() - started, 2), "score_rows": len(scores),
            "township_series": scores[["township_code", "domain"]].drop_duplicates().shape[0]}


def run_core_child(sim: Path, month: str, out: Path, beam_args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--core-only", "--sim", str(sim), "--month", month,
           "--out", str(out), *beam_args]
    figures = run_measured(cmd, _env())
    for line in figures["output"].splitlines():
        if line.startswith("pipeline_s="):
            figures.update(kv.split("=", 1) for kv in line.split())
    return figures


def daily_counts(scores: pd.DataFrame) -> pd.Series:
    """Score rows → the observed count of each township × domain × day scored."""
    days = scores[(scores["period"] == "day") & scores["village_code"].isna()]
    return days.assign(period_start=pd.to_datetime(days["period_start"]).dt.date).set_index(DAY_KEY)["observed"]


def compare_counts(riskwatch: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """How close RiskWatch's township daily counts are to the reference's: days in both, equal, and
    the records counted on each side (over all days, and on the days both score)."""
    ours, theirs = daily_counts(riskwatch), daily_counts(reference)
    both = ours.index.intersection(theirs.index)
    differ = ours[both] != theirs[both]
    ours_series, their_series = ours.index.droplevel(2).unique(), theirs.index.droplevel(2).unique()
    return {"days_riskwatch": len(ours), "days_reference": len(theirs), "days_both": len(both),
            "days_equal": int((~differ).sum()), "records_riskwatch": int(ours.sum()),
            "records_reference": int(theirs.sum()),
            "abs_difference_on_days_both": int((ours[both] - theirs[both]).abs().sum()),
            "series_only_riskwatch": len(ours_series.difference(their_series)),
            "series_only_reference": len(their_series.difference(ours_series))}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", required=True, type=Path, help="a `riskwatch simulate` output folder")
    parser.add_argument("--month", required=True, help="target month YYYY-MM (history: the 12 months before)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="output root (default: a temporary folder)")
    parser.add_argument("--core-only", action="store_true",
                        help="run the RiskWatch pipeline in this process and print its figures")
    parser.add_argument("beam_args", nargs="*", help="after --: Beam options for the RiskWatch pipeline")
    args = parser.parse_args(argv)
    if args.core_only:
        if args.out is None:
            parser.error("--core-only needs --out")
        print(" ".join(f"{k}={v}" for k, v in run_core(args.sim, args.month, args.out, args.beam_args).items()))
        return 0
    with tempfile.TemporaryDirectory(prefix="riskwatch-core-") as tmp:
        out = args.out or Path(tmp)
        core, reference = [], []
        for number in range(args.rounds):
            sides = [("riskwatch_core", core), ("reference", reference)]
            for name, runs in sides if number % 2 == 0 else sides[::-1]:
                figures = (run_core_child(args.sim, args.month, out / "riskwatch_core", args.beam_args)
                           if name == "riskwatch_core" else run_reference(args.sim, args.month, out))
                _print(name, figures)
                if figures["exit"]:
                    return 1
                runs.append(figures)
        print(" ".join(f"median_{name}_{key}={_median(runs, key)}" for name, runs in (("riskwatch_core", core),
              ("reference", reference)) for key in ("wall_s", "cpu_s", "peak_mib")))
        pairs = list(zip(core, reference))
        print("ratio_wall_per_round=" + ",".join(f"{c['wall_s'] / r['wall_s']:.2f}" for c, r in pairs)
              + " ratio_cpu_per_round=" + ",".join(f"{c['cpu_s'] / r['cpu_s']:.2f}" for c, r in pairs))
        print(f"ratio_wall={_median(core, 'wall_s') / _median(reference, 'wall_s'):.2f} "
              f"ratio_cpu={_median(core, 'cpu_s') / _median(reference, 'cpu_s'):.2f} "
              f"ratio_peak_memory={_median(core, 'peak_mib') / max(_median(reference, 'peak_mib'), 1):.2f}")
        riskwatch_scores = read_scores(str(out / "riskwatch_core"), [args.month])
        reference_scores = pd.read_parquet(out / "reference_scores.parquet")
        print(f"score_rows riskwatch_core={len(riskwatch_scores)} reference={len(reference_scores)}")
        print("township_daily_counts " + " ".join(f"{k}={v}" for k, v in
                                                  compare_counts(riskwatch_scores, reference_scores).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
