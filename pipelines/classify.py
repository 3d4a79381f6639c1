"""``ClassifyEvents``: fills ``domain``, ``domain_confidence``, ``domain_by`` and ``signals``.

Events are grouped with ``BatchElements`` and classified by a DoFn that loads the model once per
worker in ``setup``. Beam's ``RunInference`` with the scikit-learn handler would need a
``KeyedModelHandler`` plus pre- and post-processing to turn Event dicts into the model's
DataFrame and to apply the taxonomy priors and signals, which need the text and the feed again;
the batched DoFn does the same in one step, with nothing to re-join. Model loading is the only
shared resource and ``setup`` holds it per DoFn instance.
"""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics

from models.domain_classifier import DomainClassifier
from pipelines.signals import SignalLexicon

NAMESPACE = "riskwatch.classify"


def annotate(classifier: DomainClassifier, lexicon: SignalLexicon, events: list[dict]) -> list[dict]:
    """Copies of the events with domain, domain_confidence, domain_by and signals filled in."""
    predictions = classifier.predict_records(events)
    found = lexicon.extract_batch([e.get("text") for e in events], [e.get("people_involved") for e in events])
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


class _ClassifyBatch(beam.DoFn):
    def __init__(self, model_dir: str | None):
        self.model_dir = model_dir
        self.classifier = None
        self.lexicon = None
        self.loaded = False
        self.counters = {}

    def setup(self):
        self.classifier = DomainClassifier.load(Path(self.model_dir) if self.model_dir else None)
        self.lexicon = SignalLexicon.from_schema()
        self.batches = Metrics.distribution(NAMESPACE, "batch_size")
        self.loaded = True  # counted with the first batch: metrics set in setup() are not reported

    def _count(self, name: str):
        if name not in self.counters:
            self.counters[name] = Metrics.counter(NAMESPACE, name)
        self.counters[name].inc()

    def process(self, batch: list[dict]):
        if self.loaded:
            Metrics.counter(NAMESPACE, "model_loads").inc()
            self.loaded = False
        self.batches.update(len(batch))
        for event in annotate(self.classifier, self.lexicon, batch):
            self._count(f"domain_{event['domain']}")
            self._count(f"by_{event['domain_by']}")
            yield event


class ClassifyEvents(beam.PTransform):
    """Event dicts → the same dicts with domain, domain_confidence, domain_by and signals."""

    def __init__(self, model_dir: str | Path | None = None, min_batch_size: int = 64, max_batch_size: int = 2048):
        super().__init__()
        self.model_dir = str(model_dir) if model_dir else None
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size

    def expand(self, events):
        return (
            events
            | "Batch" >> beam.BatchElements(min_batch_size=self.min_batch_size, max_batch_size=self.max_batch_size)
            | "Classify" >> beam.ParDo(_ClassifyBatch(self.model_dir))
        )
