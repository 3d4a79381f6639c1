"""The warehouse's Events as the monthly report step reads them: each month's Parquet files read
once and shared by the quality checks, the topics and the report's trend.

``latest`` gives what ``pipelines.warehouse.read_events`` gives (one version per event_id, its
latest ingest, rows in event_id order: ``warehouse.latest_versions``);
``incidents_by_domain`` counts a year of incidents without turning its million Events into a
DataFrame.
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import schemas
from pipelines import warehouse

_VERSION_COLUMNS = ["event_id", "ingested_at"]


class MonthEvents:
    """A warehouse's Events by month. A month read whole (``all_versions``) is kept, and the
    narrower reads of it take its columns; other months are read column by column as asked."""

    def __init__(self, out: str):
        self._out = out
        self._schema = schemas.arrow_schema("event")
        self._whole: dict[str, pa.Table] = {}

    def _read(self, month: str, columns: list[str]) -> pa.Table:
        return warehouse.event_table(self._out, [month], columns)

    def _table(self, months: list[str], columns: list[str] | None = None) -> pa.Table:
        parts = []
        for month in months:
            if columns is None and month not in self._whole:
                self._whole[month] = self._read(month, self._schema.names)
            if month in self._whole:
                parts.append(self._whole[month].select(columns or self._schema.names))
            else:
                parts.append(self._read(month, columns))
        if not parts:
            return pa.schema([self._schema.field(c) for c in columns or self._schema.names]).empty_table()
        return pa.concat_tables(parts)

    def all_versions(self, months: list[str]) -> pd.DataFrame:
        """Every stored version (``read_events(..., latest_only=False)``): the quality checks look
        for records stored twice."""
        return self._table(months).to_pandas()

    def latest(self, months: list[str], columns: list[str] | None = None) -> pd.DataFrame:
        """``read_events(out, months, columns)``."""
        if columns:
            columns = list(dict.fromkeys([*columns, *_VERSION_COLUMNS]))
        return warehouse.latest_versions(self._table(months, columns)).to_pandas()

    def incidents_by_domain(self, months: list[str]) -> dict[tuple[str, str], int]:
        """(domain, month) → the incidents (an incident_id, else the event's own id) of the latest
        versions of these months' Events, by their month in county time; domain ``none`` and
        missing domains left out. What ``reports.summary.domain_trend`` counts from Events."""
        columns = [*_VERSION_COLUMNS, "domain", "incident_id", "reported_at"]
        table = warehouse.latest_versions(self._table(months, columns))
        domain, incident_id, times = (table.column(c) for c in ("domain", "incident_id", "reported_at"))
        local = pc.local_timestamp(times.cast(pa.timestamp(times.type.unit, tz=schemas.TIMEZONE)))
        keyed = pa.table({
            "domain": domain,
            "month": pc.add(pc.multiply(pc.year(local), 12), pc.subtract(pc.month(local), 1)),
            # an incident_id that is missing or empty leaves the event its own incident
            "incident": pc.if_else(pc.and_kleene(pc.is_valid(incident_id), pc.not_equal(incident_id, "")),
                                   incident_id, table.column("event_id")),
        }).filter(pc.and_kleene(pc.is_valid(domain), pc.not_equal(domain, "none")))
        counts = keyed.group_by(["domain", "month"]).aggregate([("incident", "count_distinct")])
        found = {}
        for d, index, n in zip(*(counts.column(c).to_pylist() for c in ("domain", "month", "incident_count_distinct"))):
            month = f"{index // 12:04d}-{index % 12 + 1:02d}"
            if month in months:
                found[(d, month)] = n
        return found
