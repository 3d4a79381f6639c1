"""Where the DaskRunner's time goes: a trivial N-element pipeline on the FnApiRunner and on a real
two-worker dask.distributed cluster (tests/dask_cluster.py), element-wise and batched.

    PYTHONPATH=. python benchmarks/bench_dask.py [--elements 200000] [--chunk 10000] [--profile DIR]

Each case prints wall seconds (pipeline construction + run), the number of Dask tasks its graph
has, and checks that every case computed the same per-key counts. ``--profile DIR`` writes a
pyinstrument text profile of the client side of each Dask case.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import apache_beam as beam

from pipelines.options import beam_options
from pipelines.runners import dask_options, run_to_completion
from tests.dask_cluster import DaskCluster

KEYS = 10


class _WriteResult(beam.DoFn):
    """The single terminal step (portable rule 1): the per-key counts as one JSON file."""

    def __init__(self, path: str):
        self._path = path

    def process(self, keyed):
        _, counts = keyed
        Path(self._path).write_text(json.dumps(sorted(counts)), encoding="utf-8")
        yield self._path


def _finish(counts, path: str):
    return (counts
            | "OneKey" >> beam.Map(lambda kv: (None, kv))
            | "Gather" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteResult(path)))


def elementwise(pipeline, n: int, chunk: int, path: str):
    counts = (pipeline
              | "Create" >> beam.Create(range(n))
              | "Double" >> beam.Map(lambda x: x * 2)
              | "Key" >> beam.Map(lambda x: (x % KEYS, 1))
              | "Count" >> beam.CombinePerKey(sum))
    _finish(counts, path)


def batched(pipeline, n: int, chunk: int, path: str):
    """The same computation over lists of `chunk` numbers, combined inside the batch before grouping."""
    def count_batch(xs):
        counts = [0] * KEYS
        for x in xs:
            counts[(x * 2) % KEYS] += 1
        return [(k, c) for k, c in enumerate(counts) if c]

    counts = (pipeline
              | "Create" >> beam.Create([(start, min(start + chunk, n)) for start in range(0, n, chunk)])
              | "Expand" >> beam.MapTuple(lambda lo, hi: range(lo, hi))
              | "CountBatch" >> beam.FlatMap(count_batch)
              | "Count" >> beam.CombinePerKey(sum))
    _finish(counts, path)


def dask_task_count(build, options, n: int, chunk: int) -> int:
    """Tasks in the graph the DaskRunner would submit (same translation, without a cluster)."""
    import dask
    from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner
    from apache_beam.runners.dask.overrides import dask_overrides

    pipeline = beam.Pipeline(options=options)
    build(pipeline, n, chunk, "/dev/null")
    bag_kwargs = DaskOptions._extract_bag_kwargs(
        options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True))
    pipeline.replace_all(dask_overrides())
    visitor = DaskRunner.to_dask_bag_visitor(bag_kwargs)
    pipeline.visit(visitor)
    (graph,) = dask.optimize(list(visitor.bags.values())[-1])
    return len(dict(graph.__dask_graph__()))


def timed(build, options, n: int, chunk: int, folder: Path, name: str, profile_dir: Path | None):
    path = str(folder / f"{name}.json")
    profiler = None
    if profile_dir is not None:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    build(pipeline, n, chunk, path)
    run_to_completion(pipeline)
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        profile_dir.mkdir(parents=True, exist_ok=True)
        (profile_dir / f"{name}.txt").write_text(profiler.output_text(unicode=False), encoding="utf-8")
    return wall, json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args(argv)
    n, chunk = args.elements, args.chunk
    results = {}
    with tempfile.TemporaryDirectory() as tmp, DaskCluster(workers=args.workers) as cluster:
        folder = Path(tmp)
        cases = [
            ("fnapi_elementwise", elementwise, beam_options([])),
            ("fnapi_batched", batched, beam_options([])),
            ("dask_elementwise_default_partitions", elementwise, dask_options(cluster.address, ["--dask_partition_size=128"])),
            ("dask_elementwise_partitions_per_thread", elementwise, dask_options(cluster.address)),
            ("dask_batched_partitions_per_thread", batched, dask_options(cluster.address)),
        ]
        for name, build, options in cases:
            tasks = dask_task_count(build, options, n, chunk) if name.startswith("dask") else "-"
            profile_dir = args.profile if name.startswith("dask") else None
            wall, counts = timed(build, options, n, chunk, folder, name, profile_dir)
            results[name] = counts
            print(f"{name} elements={n} wall_s={wall:.2f} elements_per_s={n / wall:.0f} dask_tasks={tasks}", flush=True)
    first = next(iter(results.values()))
    same = all(counts == first for counts in results.values())
    print(f"same_results={same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
