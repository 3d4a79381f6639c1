"""How RiskWatch's elements cross Beam's stage boundaries.

Events are dicts of strings, numbers and timezone-aware datetimes. Beam's default coder for
untyped PCollections, ``FastPrimitivesCoder``, writes strings, numbers, lists and dicts natively but
*pickles* anything else: each datetime costs ~14 µs and ~140 bytes per crossing (the pickle holds
the zone's unpickling path), so an Event's four timestamps were ~90 % of its coding time and the
largest single cost of the county month's run (docs/notes/performance.md, "Session 3").

``ElementCoder`` is that same coder with a fallback that writes datetimes and dates as integers (and
the zone's IANA name) and pickles only what remains. ``register`` makes it Beam's fallback coder;
``pipelines.options.beam_options``, through which every RiskWatch pipeline gets its options, calls
it. The coder is then part of each pipeline's definition: any runner's Python workers decode with
it. Elements round-trip exactly: equal values, the same zone object, naive stays naive.

A frozen dataclass that crosses often (the stream's ``SeriesRecord``, once per sliding window it
falls in) can be marked ``@crosses_by_fields``: it is written as its class's import path and its
fields' values, each coded as above, instead of pickled (a third of the time, no pickled datetime).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib
from typing import Any
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.coders import coder_impl, coders

_PICKLED, _ZONED, _UTC, _NAIVE, _DATE, _FIELDS = range(6)
_FOLD = 8  # added to a datetime's kind: fold=1 matters (or is kept) even where the wall time is not repeated
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)
# Within ±2**51 µs of 1970 (years 1899–2041) seconds as a float are within 0.25 µs of the exact
# value, so fromtimestamp's rounding gives the microseconds back exactly, 3× faster than astimezone.
_FLOAT_EXACT = 2**51
# classes marked ``crosses_by_fields`` → (import path, field names); the path, not a number, so that
# every worker process decodes whatever order it imported them in
_BY_FIELDS: dict[type, tuple[bytes, tuple[str, ...]]] = {}
_BY_PATH: dict[bytes, type] = {}


def crosses_by_fields(cls: type) -> type:
    """Class decorator: ``cls`` (a frozen dataclass whose fields the coder writes natively, or as
    datetimes and dates) crosses stage boundaries as its fields' values."""
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
            and all(f.init for f in dataclasses.fields(cls))):
        raise TypeError(f"{cls.__qualname__} must be a frozen dataclass of init fields to cross by them")
    path = f"{cls.__module__}:{cls.__qualname__}".encode("ascii")
    _BY_FIELDS[cls] = path, tuple(f.name for f in dataclasses.fields(cls))
    _BY_PATH[path] = cls
    return cls


def _marked_class(path: bytes) -> type:
    cls = _BY_PATH.get(path)
    if cls is None:  # a worker that has not imported the class's module yet
        module, _, name = path.decode("ascii").partition(":")
        cls = functools.reduce(getattr, name.split("."), importlib.import_module(module))
        if cls not in _BY_FIELDS:
            raise TypeError(f"{name} is not marked to cross by its fields")
        _BY_PATH[path] = cls
    return cls


class _TimeValueCoderImpl(coder_impl.StreamCoderImpl):
    def __init__(self):
        self._pickled = coders.PickleCoder().get_impl()
        self._fields = coder_impl.FastPrimitivesCoderImpl(self)

    def encode_to_stream(self, value, stream, nested):
        kind = type(value)
        if kind is dt.datetime:
            zone, fold = value.tzinfo, _FOLD * value.fold
            if zone is None:
                stream.write_byte(_NAIVE + fold)
                stream.write_var_int64((value - _NAIVE_EPOCH) // _MICROSECOND)
                return
            if zone is dt.timezone.utc:
                stream.write_byte(_UTC + fold)
                stream.write_var_int64((value - _EPOCH) // _MICROSECOND)
                return
            # ZoneInfo.no_cache() zones are distinct objects on purpose: leave them to pickle
            if type(zone) is ZoneInfo and zone.key and ZoneInfo(zone.key) is zone:
                stream.write_byte(_ZONED + fold)
                stream.write_var_int64((value - _EPOCH) // _MICROSECOND)
                stream.write(zone.key.encode("ascii"), True)
                return
        elif kind is dt.date:
            stream.write_byte(_DATE)
            stream.write_var_int64(value.toordinal())
            return
        elif kind in _BY_FIELDS:
            path, names = _BY_FIELDS[kind]
            stream.write_byte(_FIELDS)
            stream.write(path, True)
            self._fields.encode_to_stream(tuple([getattr(value, name) for name in names]), stream, True)
            return
        stream.write_byte(_PICKLED)
        self._pickled.encode_to_stream(value, stream, nested)

    def decode_from_stream(self, stream, nested):
        kind = stream.read_byte()
        if kind == _PICKLED:
            return self._pickled.decode_from_stream(stream, nested)
        if kind == _DATE:
            return dt.date.fromordinal(stream.read_var_int64())
        if kind == _FIELDS:
            cls = _marked_class(stream.read_all(True))
            return cls(*self._fields.decode_from_stream(stream, True))
        base, fold = kind % _FOLD, kind // _FOLD
        micros = stream.read_var_int64()
        if base == _NAIVE:
            value = _NAIVE_EPOCH + dt.timedelta(microseconds=micros)
        else:
            zone = ZoneInfo(stream.read_all(True).decode("ascii")) if base == _ZONED else dt.timezone.utc
            if -_FLOAT_EXACT < micros < _FLOAT_EXACT:
                value = dt.datetime.fromtimestamp(micros / 1e6, zone)
            else:
                value = (_EPOCH + dt.timedelta(microseconds=micros)).astimezone(zone)
        # both give a repeated wall time its fold; a kept fold=1 elsewhere is restored
        return value.replace(fold=1) if fold else value


class TimeValueCoder(coders.Coder):
    """Datetimes and dates as integers; anything else pickled (``FastPrimitivesCoder``'s fallback)."""

    def _create_impl(self):
        return _TimeValueCoderImpl()

    def is_deterministic(self) -> bool:
        return False  # what it pickles is not

    def to_type_hint(self):
        return Any


class ElementCoder(coders.FastPrimitivesCoder):
    """``FastPrimitivesCoder`` whose fallback writes datetimes and dates as integers."""

    def __init__(self):
        super().__init__(fallback_coder=TimeValueCoder())


def register() -> None:
    """Make ``ElementCoder`` the coder of PCollections without a more specific one (once a process)."""
    if not isinstance(beam.coders.registry.get_coder(Any), ElementCoder):
        beam.coders.registry.register_fallback_coder(ElementCoder)
