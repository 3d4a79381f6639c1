"""``ClassifyEvents`` and ``ClassifyChunks``: fill ``domain``, ``domain_confidence``, ``domain_by`` and ``signals``.

Where Events already travel in lists (the batch job's ingest carries each file's rows in chunks),
``ClassifyChunks`` classifies each list in place: one model call per list, no shuffle. Single
Events (``ClassifyEvents``) are keyed by a hash of their ``event_id`` into a fixed number of
shards, grouped, and each shard is classified in chunks of at most ``max_batch_size`` inside
``process``: one model call per chunk, nothing emitted from ``finish_bundle`` (``BatchElements``
emits its last batch there, which the DaskRunner drops). The model is loaded through ``apache_beam.utils.shared.Shared``: one copy per
worker process even on runners that call ``setup`` once per partition. Beam's ``RunInference``
with the scikit-learn handler would need a ``KeyedModelHandler`` plus pre- and post-processing to
turn Event dicts into the model's DataFrame and to apply the taxonomy priors and signals, which
need the text and the feed again; the DoFn does the same in one step, with nothing to re-join.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from models.domain_classifier import DomainClassifier
from models.features import normalise_texts
from pipelines.signals import SignalLexicon
from pipelines.validate import EventPacker, event_shard

NAMESPACE = "riskwatch.classify"


def annotate(classifier: DomainClassifier, lexicon: SignalLexicon, events: list[dict]) -> list[dict]:
    """Copies of the events with domain, domain_confidence, domain_by and signals filled in."""
    # The model and the signals read the same normalised texts: normalised once, as one batch.
    texts = normalise_texts([e.get("text") for e in events])
    predictions = classifier.predict_records(events, texts)
    found = lexicon.extract_batch(texts, [e.get("people_involved") for e in events], normalised=True)
    return [
        {
            **event,
            "domain": prediction.domain,
            "domain_confidence": prediction.confidence,
            "domain_by": prediction.by,
            # signals set upstream (e.g. repeat callers) are kept, without duplicates
            "signals": list(dict.fromkeys([*event["signals"], *signals])) if event.get("signals") else signals,
        }
        for event, prediction, signals in zip(events, predictions, found)
    ]


class _LoadedModel:
    """The classifier and the signal lexicon, held together in ``Shared`` (which needs an object
    that can be weakly referenced)."""

    def __init__(self, model_dir: str | None):
        self.classifier = DomainClassifier.load(Path(model_dir) if model_dir else None)
        self.lexicon = SignalLexicon.from_schema()


class _Classify(beam.DoFn):
    """Loads the model once per worker; ``classified`` annotates a list of Events in model calls of
    at most ``max_batch_size``."""

    def __init__(self, model_dir: str | None, max_batch_size: int):
        self.model_dir = model_dir
        self.max_batch_size = max_batch_size
        self.shared = Shared()
        self.counters = {}

    def setup(self):
        loads = []

        def load():
            loads.append(1)
            return _LoadedModel(self.model_dir)

        self.model = self.shared.acquire(load, tag=self.model_dir or "default")
        self.packer = EventPacker()
        self.batches = Metrics.distribution(NAMESPACE, "batch_size")
        self.loaded = bool(loads)  # counted with the first batch: metrics set in setup() are not reported

    def _count(self, name: str, n: int):
        if name not in self.counters:
            self.counters[name] = Metrics.counter(NAMESPACE, name)
        self.counters[name].inc(n)

    def classified(self, events: list[dict]):
        if self.loaded:
            Metrics.counter(NAMESPACE, "model_loads").inc()
            self.loaded = False
        for start in range(0, len(events), self.max_batch_size):
            batch = events[start:start + self.max_batch_size]
            self.batches.update(len(batch))
            annotated = annotate(self.model.classifier, self.model.lexicon, batch)
            # counted per batch: two counter increments per Event were ~5 % of classifying it
            for (domain, by), n in Counter((e["domain"], e["domain_by"]) for e in annotated).items():
                self._count(f"domain_{domain}", n)
                self._count(f"by_{by}", n)
            yield from annotated


class _ClassifyShard(_Classify):
    def process(self, keyed):
        events = [self.packer.unpack(e) if isinstance(e, tuple) else e for e in keyed[1]]
        events.sort(key=lambda e: e["event_id"])  # chunks independent of shuffle order
        yield from self.classified(events)


class _ClassifyChunk(_Classify):
    def process(self, events: list[dict]):
        yield list(self.classified(events))


class ClassifyChunks(beam.PTransform):
    """Lists of Events (e.g. the ingest's chunks of one file) → the same lists classified, one model
    call per list (or per ``max_batch_size``): no shuffle, where ``ClassifyEvents`` groups single
    Events into shards first."""

    def __init__(self, model_dir: str | Path | None = None, max_batch_size: int = 2048):
        super().__init__()
        self.model_dir = str(model_dir) if model_dir else None
        self.max_batch_size = max_batch_size

    def expand(self, chunks):
        return chunks | "ClassifyChunk" >> beam.ParDo(_ClassifyChunk(self.model_dir, self.max_batch_size))


class ClassifyEvents(beam.PTransform):
    """Event dicts → the same dicts with domain, domain_confidence, domain_by and signals.

    ``shards`` bounds the parallelism and the size of one group (a county year is ~1M events:
    ~16k per shard at 64); ``max_batch_size`` the events per model call.
    """

    def __init__(self, model_dir: str | Path | None = None, max_batch_size: int = 2048, shards: int = 64):
        super().__init__()
        self.model_dir = str(model_dir) if model_dir else None
        self.max_batch_size = max_batch_size
        self.shards = shards

    def expand(self, events):
        shards, packer = self.shards, EventPacker()
        return (
            events
            # Events cross the shuffle packed (a dict of datetimes costs ~20× more to encode than
            # its tuple); other records, e.g. a text to classify with its feed, as they are.
            | "KeyByShard" >> beam.Map(
                lambda e: (event_shard(e["event_id"], shards), packer.pack(e) if packer.fits(e) else e))
            | "GroupShards" >> beam.GroupByKey()
            | "Classify" >> beam.ParDo(_ClassifyShard(self.model_dir, self.max_batch_size))
        )
