"""Runner-neutral building blocks and options for running RiskWatch on a distributed engine.

The transforms here are plain Beam and behave the same on every runner; they exist because some
runners (Beam 2.77's DaskRunner) implement only part of the model. See docs/runners.md and the
"Rules for portable transforms" in docs/notes/performance.md.
"""
from __future__ import annotations

import contextlib
import gc

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import TaggedOutput

from pipelines.options import beam_options

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def dask_worker_threads(address: str, timeout_s: float = 30.0) -> int:
    """Total worker threads of the dask.distributed cluster at `address`."""
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:
        return sum(worker["nthreads"] for worker in client.scheduler_info(n_workers=-1)["workers"].values())


def dask_options(address: str, beam_args: list[str] | None = None, partitions: int | None = None,
                 **overrides) -> PipelineOptions:
    """Options that run a pipeline on the Dask cluster at `address` (e.g. ``tcp://10.0.0.5:8786``).

    The DaskRunner fixes the number of partitions at ``Create`` and keeps it through every later
    stage; its default (128 values per partition) puts a ``Create`` of a few dozen file paths into
    a single partition, i.e. on one worker thread. Unless the caller says otherwise, use one
    partition per worker thread of the cluster.
    """
    args = [f"--runner={DASK_RUNNER}", f"--dask_client_address={address}", *(beam_args or [])]
    if partitions is None and not any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in args):
        partitions = dask_worker_threads(address)
    if partitions:
        args.append(f"--dask_npartitions={partitions}")
    return beam_options(args, **overrides)


# Objects allocated (net) between young collections; the interpreter's default is 700.
YOUNG_COLLECTION_EVERY = 200_000


@contextlib.contextmanager
def fewer_collections(young_every: int = YOUNG_COLLECTION_EVERY):
    """Run a job with CPython's cyclic collector scanning less often; restores its thresholds after.

    A local runner keeps the pipeline's buffered elements as Python objects in this process, and
    the collector's full scans walk all of them: 27 % of the CPU of the county month's run
    (53 of 194 CPU-s, 87 full scans) at the default thresholds, 4 CPU-s at these — with the
    same peak memory, since the pipeline's own objects are freed by reference counting; the full
    scans that still run (every 100 young ones) collect the rare cycles. The young scans walk
    what is alive when they run — the scorer's parsed history, a group's Events: every 200,000
    allocations instead of every 50,000, the county month's incremental run spends 1.9 instead of
    3.3 CPU-s collecting (29 instead of 175 collections), at the same peak memory.
    """
    before = gc.get_threshold()
    gc.set_threshold(young_every, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_to_completion(pipeline: beam.Pipeline):
    """Run `pipeline`, wait for it, and release what the runner holds open; returns the result.

    The DaskRunner's result keeps its ``distributed.Client`` connected after the job; left open it
    keeps the process and the scheduler's client slot alive.
    """
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
    return result


def counter_values(result) -> dict[str, int]:
    """Committed counter values as ``{"namespace:name": value}``; empty where a runner has none.

    Beam Metrics are best effort across runners (the DaskRunner raises ``NotImplementedError``):
    figures a manifest or a report must contain are computed as data, these are diagnostics.
    """
    try:
        counters = result.metrics().query()["counters"]
    except NotImplementedError:
        return {}
    values: dict[str, int] = {}
    for counter in counters:
        key = f"{counter.key.metric.namespace}:{counter.key.metric.name}"
        values[key] = values.get(key, 0) + (counter.committed or 0)
    return values


class _TagsAsValues(beam.DoFn):
    """Runs `fn` and emits each of its outputs as a ``(tag, value)`` pair on the main output."""

    def __init__(self, fn: beam.DoFn, tags: tuple[str, ...]):
        self._fn = fn
        self._tags = tags

    def setup(self):
        self._fn.setup()

    def start_bundle(self):
        self._fn.start_bundle()

    def process(self, element, *args, **kwargs):
        for output in self._fn.process(element, *args, **kwargs) or ():
            if isinstance(output, TaggedOutput):
                if output.tag not in self._tags:
                    raise ValueError(f"{type(self._fn).__name__} emitted undeclared output tag {output.tag!r}")
                yield output.tag, output.value
            else:
                yield None, output

    def finish_bundle(self):
        # Outputs from finish_bundle are dropped by some runners (rule 3): refuse them loudly.
        outputs = self._fn.finish_bundle()
        if outputs is not None and any(True for _ in outputs):
            raise ValueError(f"{type(self._fn).__name__}.finish_bundle emits outputs; emit from process")

    def teardown(self):
        self._fn.teardown()


class _Outputs(dict):
    """Tag → PCollection, also readable as attributes like Beam's ``DoOutputsTuple``."""

    def __getattr__(self, tag):
        try:
            return self[tag]
        except KeyError:
            raise AttributeError(tag) from None


class ParDoWithOutputs(beam.PTransform):
    """``ParDo(fn).with_outputs(*tags, main=main)`` that splits the outputs correctly on every runner.

    `fn` yields main outputs and ``TaggedOutput(tag, value)`` as usual (``process`` only, with
    positional/keyword side inputs as `args`/`kwargs`; DoFn parameters such as ``TimestampParam``
    are not passed through). The result maps `main` and every tag to its PCollection.
    """

    def __init__(self, fn: beam.DoFn, *tags: str, main: str, args=(), kwargs=None):
        super().__init__()
        self._fn = fn
        self._tags = tags
        self._main = main
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})

    def expand(self, pcoll):
        tagged = pcoll | "Run" >> beam.ParDo(_TagsAsValues(self._fn, self._tags), *self._args, **self._kwargs)
        outputs = _Outputs()
        for name, tag in [(self._main, None), *[(t, t) for t in self._tags]]:
            outputs[name] = tagged | f"Select_{name}" >> beam.FlatMap(_select, tag)
        return outputs


def _select(pair, tag):
    if pair[0] == tag:
        yield pair[1]
