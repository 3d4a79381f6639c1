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

Fewest of all: Events that travel together as one element, an Arrow table as the bytes of an
Arrow IPC stream (``EventTables``). The batch job's new Events leave the supersede step as one table
per shard (``pipelines.ingest.IngestFeeds(tables=True)``), and Events read back from the warehouse
as the table they were read as; both reach linking per township-month (``PackedRows``); linking
holds a township-month's Events together, and the batch job's writers and counters take them from
there, and the Events linking leaves alone, as tables (``is_event_table``).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import apache_beam as beam
import pyarrow as pa

from pipelines.validate import EventPacker
from schemas import event_arrow_schema


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


def table_events(table: pa.Table, schema: pa.Schema, packer: EventPacker):
    """A table of Events in the warehouse's layout (``schema``: ``event_arrow_schema``) → its
    Events, exactly as the pipeline carries them."""
    table = table.cast(schema)
    # Timestamps as epoch milliseconds: the packed form EventPacker turns back into datetimes.
    columns = [c.cast(pa.int64()).to_pylist() if pa.types.is_timestamp(c.type) else c.to_pylist()
               for c in table.columns]
    for values in zip(*columns):
        yield packer.unpack(values)


class PackedRows:
    """(table of Events in the warehouse's layout, annotations: (key, value) pairs every one of them
    takes) ⇄ one element (Arrow IPC stream bytes, annotations) → the Event dicts.

    Beam encodes bytes as they are: a few thousand stored Events cross a shuffle as one element
    instead of each being dispatched, encoded, buffered and decoded on its own."""

    def __init__(self):
        self._schema = event_arrow_schema()
        self._packer = EventPacker()

    @staticmethod
    def pack(table: pa.Table, annotations: tuple = ()) -> tuple[bytes, tuple]:
        return EventTables.to_bytes(table), tuple(annotations)

    def unpack_all(self, values: Iterable[tuple[bytes, tuple]]) -> list[dict]:
        """Several elements → their Events. The tables of one set of annotations are made Events
        together: reading a column out costs about as much for a few rows as for thousands, and a
        link group gets its new Events in dozens of small tables (one per supersede shard)."""
        events = []
        for marks, table in self.tables(values):
            made = list(table_events(table, self._schema, self._packer))
            if marks:
                for event in made:
                    event.update(marks)
            events += made
        return events

    def tables(self, values: Iterable[tuple[bytes, tuple]]) -> list[tuple[tuple, pa.Table]]:
        """Several elements → [(annotations, one table of their Events in the warehouse's layout)], one
        per set of annotations, in the order ``unpack_all`` gives their Events, each in one chunk."""
        tables = defaultdict(list)
        for data, marks in values:
            tables[tuple(marks)].append(EventTables.from_bytes(data))
        return [(marks, pa.concat_tables(parts).cast(self._schema).combine_chunks()) for marks, parts in tables.items()]


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


def is_event_table(element) -> bool:
    """Whether an element of Events is many as (annotations, table bytes) (``EventTables``: a supersede
    shard's, ``pipelines.ingest.IngestFeeds(tables=True)``, or a link group's,
    ``pipelines.link.LinkIncidentsInParts(grouped=True)``), not one Event (a dict)."""
    return type(element) is tuple


class EventTables:
    """Packed Events (``EventPacker``'s tuples) ⇄ an Arrow table of the warehouse's Event schema, which
    crosses stage boundaries as the bytes of an Arrow IPC stream.

    A township-month's linked Events travel from linking to the writers and the counters as one
    such table (``pipelines.link.LinkIncidentsInParts(grouped=True)``). As bytes, a table crosses a
    boundary, and the SDK's sampling of element sizes (which encodes a sampled element whole), at
    the cost of a copy: ~0.3 µs per Event to write the stream once, against ~8 µs for a packed
    Event's per-field coding at each crossing, and ~4.6 µs for a table pickled at each (the county
    month's Events)."""

    def __init__(self):
        self.packer = EventPacker()
        self.schema = event_arrow_schema()

    def table(self, rows: list) -> pa.Table:
        columns = list(zip(*rows)) if rows else [[] for _ in self.schema]
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, self.schema)], schema=self.schema)

    @staticmethod
    def to_bytes(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    @staticmethod
    def from_bytes(data: bytes) -> pa.Table:
        return pa.ipc.open_stream(data).read_all()

    def records(self, data: bytes | pa.Table, names: list[str]) -> list[dict]:
        """Per row of a table (or its bytes): {name: value} of ``names``, timestamps as epoch milliseconds
        (as packed)."""
        table = self.from_bytes(data) if isinstance(data, bytes) else data
        columns = []
        for name in names:
            column = table.column(name)
            if pa.types.is_timestamp(column.type):
                column = column.cast(pa.int64())
            columns.append(column.to_pylist())
        return [dict(zip(names, values)) for values in zip(*columns)]
