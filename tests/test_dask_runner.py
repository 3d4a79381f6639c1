"""The same Beam pipelines on the FnApiRunner and on a real dask.distributed cluster (two worker
processes on 127.0.0.1, see tests/dask_cluster.py) must write the same outputs."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipelines.options import beam_options
from pipelines.runners import ParDoWithOutputs, counter_values, dask_options, fewer_collections, run_to_completion
from tests.dask_cluster import DaskCluster, dask_cluster  # noqa: F401  (dask_cluster: pytest fixture)


class _WriteSorted(beam.DoFn):
    """Terminal step: one JSON file per output name, written from process (portable rule 3)."""

    def __init__(self, folder: str):
        self._folder = folder

    def process(self, keyed):
        name, values = keyed
        path = Path(self._folder) / f"{name}.json"
        path.write_text(json.dumps(sorted(values, key=json.dumps), ensure_ascii=False), encoding="utf-8")
        yield str(path)


def write_outputs(named: dict, folder: str):
    """Flatten every named PCollection into one terminal GroupByKey + write (portable rule 1)."""
    keyed = [pcoll | f"Key_{name}" >> beam.Map(lambda v, n=name: (n, v)) for name, pcoll in named.items()]
    return keyed | "AllOutputs" >> beam.Flatten() | "ByName" >> beam.GroupByKey() | "Write" >> beam.ParDo(_WriteSorted(folder))


def read_outputs(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


class _ParseAmount(beam.DoFn):
    """A dead-letter DoFn in the project's style: bad rows go to a tagged output with a reason."""

    def process(self, row):
        township, amount = row.split(",")
        try:
            yield township, int(amount)
        except ValueError:
            yield TaggedOutput("quarantine", {"row": row, "reason": "bad_type"})


ROWS = [f"镇{i % 7},{i}" if i % 11 else f"镇{i % 7},x{i}" for i in range(600)]


def _dead_letter_pipeline(pipeline, folder: str):
    parsed = pipeline | beam.Create(ROWS) | ParDoWithOutputs(_ParseAmount(), "quarantine", main="amounts")
    totals = parsed.amounts | beam.CombinePerKey(sum)
    counts = parsed.amounts | "Count" >> beam.combiners.Count.PerKey()
    write_outputs({"totals": totals, "counts": counts, "quarantine": parsed.quarantine}, folder)


def _run(options, tmp_path: Path, name: str) -> dict:
    folder = tmp_path / name
    folder.mkdir()
    pipeline = beam.Pipeline(options=options)
    _dead_letter_pipeline(pipeline, str(folder))
    result = run_to_completion(pipeline)
    return read_outputs(folder), result


def test_dead_letters_split_and_sums_equal_on_dask_cluster(dask_cluster, tmp_path):
    local, local_result = _run(beam_options([]), tmp_path, "local")
    on_dask, _ = _run(dask_options(dask_cluster.address), tmp_path, "dask")

    assert on_dask == local
    bad = [r for r in ROWS if ",x" in r]
    assert len(local["quarantine"]) == len(bad) == 55
    assert {q["reason"] for q in local["quarantine"]} == {"bad_type"}
    assert sum(total for _, total in local["totals"]) == sum(int(r.split(",")[1]) for r in ROWS if r not in bad)
    assert sum(n for _, n in local["counts"]) == len(ROWS) - len(bad)
    assert counter_values(local_result) == {}  # no counters in this pipeline, and no error


def test_dask_options_use_one_partition_per_worker_thread(dask_cluster):
    options = dask_options(dask_cluster.address).get_all_options()
    assert options["runner"].endswith("DaskRunner")
    assert options["address"] == dask_cluster.address
    assert options["npartitions"] == 2  # two single-threaded workers
    explicit = dask_options(dask_cluster.address, ["--dask_partition_size=50"]).get_all_options()
    assert explicit["npartitions"] is None and explicit["partition_size"] == 50


def _ingested_events(out: Path) -> list[dict]:
    """The fixture inbox's Events as written by the real ingest, classified with the saved model."""
    import pyarrow.parquet as pq

    from models.domain_classifier import DomainClassifier

    events = [e for path in sorted((out / "warehouse" / "events").rglob("*.parquet"))
              for e in pq.read_table(path).to_pylist()]
    for event, prediction in zip(events, DomainClassifier.load().predict_records(events)):
        event["domain"] = prediction.domain
    return events


def _run_daily_counts(events: list[dict], options, folder: Path) -> dict:
    from pipelines.score import DailyCounts

    folder.mkdir()
    pipeline = beam.Pipeline(options=options)
    daily = pipeline | beam.Create(events) | DailyCounts()
    write_outputs({"daily": daily}, str(folder))
    run_to_completion(pipeline)
    return read_outputs(folder)


def test_daily_counts_of_ingested_events_equal_on_dask_cluster(dask_cluster, ingest_run, tmp_path):
    _, out, _ = ingest_run
    events = _ingested_events(out)
    local = _run_daily_counts(events, beam_options([]), tmp_path / "local")
    on_dask = _run_daily_counts(events, dask_options(dask_cluster.address), tmp_path / "dask")

    assert on_dask == local
    counted = [e for e in events if e["domain"] != "none" and e["township_code"]]
    township_rows = [(key, tally) for key, tally in local["daily"] if key[0][2] is None]
    assert counted and township_rows
    # without linked incidents every record is its own incident, counted once per township series
    assert sum(t["incidents"] for _, t in township_rows) == len(counted)


class _EmitsUndeclared(beam.DoFn):
    def process(self, row):
        yield TaggedOutput("rejected", row)


class _EmitsFromFinishBundle(beam.DoFn):
    def process(self, row):
        yield row

    def finish_bundle(self):
        yield WindowedValue("late", 0, [GlobalWindow()])


def test_par_do_with_outputs_refuses_what_would_be_lost_on_some_runners():
    for fn, message in [(_EmitsUndeclared(), "undeclared output tag 'rejected'"),
                        (_EmitsFromFinishBundle(), "finish_bundle emits outputs")]:
        pipeline = beam.Pipeline(options=beam_options([]))
        _ = pipeline | beam.Create(["a"]) | ParDoWithOutputs(fn, "quarantine", main="rows")
        with pytest.raises(Exception, match=message):
            pipeline.run().wait_until_finish()


def test_cluster_processes_are_all_gone_after_close():
    import psutil

    with DaskCluster(workers=1) as cluster:
        roots = [psutil.Process(pid) for pid in [*cluster.worker_pids(), cluster.scheduler_pid()]]
        processes = [*roots, *(child for root in roots for child in root.children(recursive=True))]
        assert len(processes) >= 3  # scheduler, nanny and the nanny's worker process
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []


def test_fewer_collections_restores_the_collector_after_a_failing_job():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="job failed"):
        with fewer_collections(young_every=12_345):
            assert gc.get_threshold()[0] == 12_345
            raise RuntimeError("job failed")
    assert gc.get_threshold() == before
