"""Events across stage boundaries: packed (``PackedEvent``, ``FlattenEvents``), or fewer of them
(``apply_each``).

A runner encodes an element each time it passes from one fused stage to the next: at a shuffle,
and at a Flatten of PCollections made in different stages (the FnApiRunner writes every input
into one buffer that the consumers' stage reads). An Event dict is encoded with its ~30 key
strings and its four datetimes (through ``pipelines.element_coder``'s Python fallback) each time;
``EventPacker``'s tuple carries only the values, datetimes as integers. On the county month's
Events a packed crossing took about half the CPU of a dict's (docs/notes/performance.md,
"Session 6"), so Events cross Flattens and shuffles packed and are unpacked where they are used.

Fewer crossings are better still: a transform that starts with element-wise steps before its
shuffle can take several PCollections of Events (``apply_each``) and flatten only after those
steps, so each Event crosses once, at the shuffle, instead of also at a Flatten in front of it.
"""
from __future__ import annotations

import apache_beam as beam

from pipelines.validate import EventPacker


class PackedEvent:
    """Event dict ⇄ (packed Event, other keys) for a crossing. Keys that are not Event fields (a
    caller's annotations) travel beside the packed tuple; a partial record (not every Event
    field) travels as it is, ``(None, record)``."""

    def __init__(self):
        self._packer = EventPacker()
        self._fields = frozenset(self._packer.names)

    def pack(self, record: dict) -> tuple:
        try:
            packed = self._packer.pack(record)
        except KeyError:
            return None, record
        # Most records are Events exactly: their "others" are known empty without a key scan,
        # which cost more than the packing.
        if len(record) == len(self._fields):
            return packed, ()
        return packed, tuple((k, v) for k, v in record.items() if k not in self._fields)

    def unpack(self, value: tuple) -> dict:
        packed, others = value
        if packed is None:
            return others
        event = self._packer.unpack(packed)
        event.update(others)
        return event


class _Pack(beam.DoFn):
    def setup(self):
        self._packed = PackedEvent()

    def process(self, event):
        yield self._packed.pack(event)


class _Unpack(beam.DoFn):
    def setup(self):
        self._packed = PackedEvent()

    def process(self, value):
        yield self._packed.unpack(value)


class FlattenEvents(beam.PTransform):
    """Event PCollections → one, as ``beam.Flatten`` would, each Event crossing into the consumers'
    stage packed: packed in its producer's stage, unpacked in the consumers'."""

    def expand(self, pcolls):
        packed = [pcoll | f"Pack{i}" >> beam.ParDo(_Pack()) for i, pcoll in enumerate(pcolls)]
        return packed | "Flatten" >> beam.Flatten() | "Unpack" >> beam.ParDo(_Unpack())


def apply_each(events, label: str, make) -> list:
    """``make()`` (a new PTransform) applied to each PCollection of ``events`` (one, or a tuple or
    list of several), each in its producer's stage → the outputs, to be flattened (``flatten``)."""
    inputs = tuple(events) if isinstance(events, (tuple, list)) else (events,)
    return [pcoll | (label if len(inputs) == 1 else f"{label}{i}") >> make() for i, pcoll in enumerate(inputs)]


def flatten(parts: list, label: str):
    """Several PCollections → one (a single one as it is: no Flatten, no crossing)."""
    return parts[0] if len(parts) == 1 else parts | label >> beam.Flatten()
