"""The like-for-like benchmark (benchmarks/bench_core.py) must measure the batch job's own work: on an
inbox where linking joins nothing (so the job's incidents are its records, which the benchmark counts),
its township scores are the job's, row for row."""
from __future__ import annotations

import apache_beam as beam

from benchmarks.bench_core import build_core_pipeline
from pipelines.batch import run_batch_pipeline
from pipelines.options import beam_options
from pipelines.runners import run_to_completion
from tests.conftest import INGEST_TIME, TEST_KEY
from tests.test_batch_dask import MONTH, _rows


def test_the_benchmark_scores_the_townships_as_the_batch_job(fixture_inbox, gazetteer_path, tmp_path):
    job, core = tmp_path / "job", tmp_path / "core"
    run_batch_pipeline(str(fixture_inbox), gazetteer_path, str(job), TEST_KEY, MONTH, ingest_time=INGEST_TIME)
    events = _rows(job / "warehouse" / "events")
    assert events and all(e["incident_id"] == e["event_id"] for e in events)

    pipeline = beam.Pipeline(options=beam_options([]))
    build_core_pipeline(pipeline, inbox=str(fixture_inbox), gazetteer=gazetteer_path, key=TEST_KEY, months=MONTH,
                        out=str(core), ingest_time=INGEST_TIME)
    run_to_completion(pipeline)

    job_scores = _rows(job / "warehouse" / "scores")
    townships = [row for row in job_scores if row["village_code"] is None]
    assert len(townships) < len(job_scores)  # the job also scores villages; the benchmark, as the reference, not
    assert _rows(core / "warehouse" / "scores") == townships
