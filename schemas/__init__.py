"""Data contracts as data: feed contracts, the Event, the taxonomy, signals, the gazetteer format.

These loaders are thin on purpose: a county changes the YAML files, never this module.
Set RISKWATCH_SCHEMAS to a directory to use a county's own copies instead of the bundled ones.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pyarrow as pa
import yaml

BUNDLED_DIR = Path(__file__).resolve().parent
FEEDS = ("hotline_12345", "police_110", "grid")
TIMEZONE = "Asia/Shanghai"


def schemas_dir() -> Path:
    return Path(os.environ.get("RISKWATCH_SCHEMAS") or BUNDLED_DIR)


# libyaml's loader when PyYAML was built with it: the same documents, ~8x faster (topics.yaml is
# read by every process and DoFn that names subjects).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | os.PathLike):
    """A YAML file as ``yaml.safe_load`` reads it."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_SAFE_LOADER)


@functools.lru_cache(maxsize=None)
def _load_yaml(path: str) -> dict:
    return read_yaml(path)


def load(name: str) -> dict:
    """A schema file by its name relative to the schemas directory, e.g. ``taxonomy.yaml``."""
    return _load_yaml(str(schemas_dir() / name))


def feed_contract(feed: str) -> dict:
    if feed not in FEEDS:
        raise ValueError(f"unknown feed {feed!r}; expected one of {', '.join(FEEDS)}")
    return load(f"feeds/{feed}.yaml")


def taxonomy() -> dict:
    return load("taxonomy.yaml")


def domain_codes(include_none: bool = True) -> list[str]:
    tax = taxonomy()
    codes = [d["code"] for d in tax["domains"]]
    return codes + [tax["none"]["code"]] if include_none else codes


def domain_names_zh() -> dict[str, str]:
    tax = taxonomy()
    names = {d["code"]: d["name_zh"] for d in tax["domains"]}
    names[tax["none"]["code"]] = tax["none"]["name_zh"]
    return names


def signals() -> dict:
    return load("signals.yaml")


def event_fields() -> list[dict]:
    return load("event.yaml")["fields"]


def _arrow_type(name: str) -> pa.DataType:
    if name.startswith("timestamp["):
        unit, tz = name[len("timestamp["):-1].split(", tz=")
        return pa.timestamp(unit, tz=tz)
    if name.startswith("list<"):
        return pa.list_(_arrow_type(name[len("list<"):-1]))
    return pa.type_for_alias(name)


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow/Parquet schema of a table described by ``<name>.yaml`` (e.g. event, score)."""
    return pa.schema(
        [pa.field(f["name"], _arrow_type(f["type"]), nullable=not f.get("required")) for f in load(f"{name}.yaml")["fields"]]
    )


def event_arrow_schema() -> pa.Schema:
    """The Parquet schema of warehouse/events/, built from event.yaml."""
    return arrow_schema("event")
