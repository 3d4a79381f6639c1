"""The monthly batch pipeline, unchanged, on the FnApiRunner and on a real dask.distributed cluster
(two worker processes, tests/dask_cluster.py): events, quarantine, manifest accounting and score
rows must be the same."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.batch import MonthRange, run_batch_pipeline
from pipelines.runners import DASK_RUNNER
from tests.conftest import INGEST_TIME, TEST_KEY
from tests.dask_cluster import dask_cluster  # noqa: F401  (pytest fixture)

MONTH = MonthRange("2026-10", "2026-10")


def _rows(folder: Path) -> list[dict]:
    rows = [row for path in sorted(folder.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str, ensure_ascii=False))


def batch_outputs(out: Path, manifest: dict) -> dict:
    """What a batch run wrote under `out`, as comparable content (rows sorted; not file bytes)."""
    quarantine = [json.loads(line) for path in sorted((out / "quarantine").glob("*.jsonl"))
                  for line in path.read_text(encoding="utf-8").splitlines()]
    return {
        "events": _rows(out / "warehouse" / "events"),
        "scores": _rows(out / "warehouse" / "scores"),
        "quarantine": sorted(quarantine, key=lambda q: json.dumps(q, sort_keys=True, ensure_ascii=False)),
        "files": manifest["files"],
        "totals": manifest["totals"],
        "written": manifest["written"],
    }


def _run(inbox: str, gazetteer_path: str, out: Path, beam_args: list[str]) -> dict:
    _, manifest = run_batch_pipeline(inbox, gazetteer_path, str(out), TEST_KEY, MONTH, beam_args=beam_args,
                                     ingest_time=INGEST_TIME)
    return batch_outputs(out, manifest)


def test_batch_pipeline_writes_the_same_outputs_on_dask_cluster(dask_cluster, fixture_inbox, gazetteer_path, tmp_path):
    # A relative inbox: the workers run in another working directory and must still find the files.
    inbox = os.path.relpath(fixture_inbox)
    local = _run(inbox, gazetteer_path, tmp_path / "local", [])
    on_dask = _run(inbox, gazetteer_path, tmp_path / "dask",
                   [f"--runner={DASK_RUNNER}", f"--dask_client_address={dask_cluster.address}", "--dask_npartitions=2"])

    assert local["events"] and local["quarantine"] and local["scores"]
    assert all(entry["balanced"] for entry in local["files"])
    for name in ("files", "totals", "written", "quarantine", "events", "scores"):
        assert on_dask[name] == local[name], name
    # Dead letters stayed out of the warehouse, and every event was classified and linked exactly once.
    totals = local["totals"]
    assert len(local["events"]) == totals["accepted"] and len(local["quarantine"]) == totals["quarantined"]
    assert len({e["event_id"] for e in local["events"]}) == len(local["events"])
    assert all(e["domain"] and e["incident_id"] for e in local["events"])
    # The manifest lists every file the run wrote, with its row count.
    written = {w["path"]: w["rows"] for w in local["written"]}
    assert sum(n for p, n in written.items() if p.startswith("warehouse/events/")) == totals["accepted"]
    assert sum(n for p, n in written.items() if p.startswith("quarantine/")) == totals["quarantined"]
    assert sum(n for p, n in written.items() if p.startswith("warehouse/scores/")) == len(local["scores"])
