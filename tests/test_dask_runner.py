"""The same Beam pipelines on the FnApiRunner and on a real dask.distributed cluster (two worker
processes on 127.0.0.1, see tests/dask_cluster.py) must write the same outputs."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from pipelines.options import beam_options
from pipelines.runners import ParDoWithOutputs, counter_values, dask_options, run_to_completion
from tests.dask_cluster import dask_cluster  # noqa: F401  (pytest fixture)


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
