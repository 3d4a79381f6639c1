"""The batch job's ledger of ingested inbox files, so that a monthly run ingests only new files.

``<out>/warehouse/ledger.json`` lists every inbox file (relpath, sha256) whose records are in the
batch job's event partitions, and a fingerprint of what turned rows into those Events (the
gazetteer, the pseudonymisation key, the classifier). It is written atomically after a successful
run only. A run may be incremental when every file of the ledger is still in the inbox with the
same content and the fingerprint is the same; otherwise (first run, a file changed or vanished, a
new gazetteer, key or model) it re-reads the whole inbox.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

from apache_beam.io.filesystems import FileSystems

from pipelines.read import FeedFile
from pipelines.sinks import to_json, write_atomically


def ledger_path(out: str) -> str:
    return FileSystems.join(out, "warehouse", "ledger.json")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What an incremental run expects to find in the warehouse besides events: per-month tallies
# (pipelines.warehouse.StoreTallies). A warehouse written without them is rebuilt from the inbox.
# /2: series tallies carry the subjects their incidents name (models.subjects); history tallies
# without them would make every subject look new. /3: and the villages of their records (the
# village scan, models.risk_score.VillageSeries).
WAREHOUSE_LAYOUT = "events+tallies/3"


def run_fingerprint(gazetteer_path: str, key: bytes, model: dict) -> str:
    """What makes an ingested Event what it is, besides its file, and the warehouse layout:
    re-ingest everything when it changes.

    The key enters as an HMAC of a constant, so the ledger does not disclose it.
    """
    digest = hashlib.sha256()
    digest.update(WAREHOUSE_LAYOUT.encode("ascii"))
    digest.update(file_sha256(gazetteer_path).encode("ascii"))
    digest.update(hmac.new(key, b"riskwatch-ledger", hashlib.sha256).digest())
    digest.update(json.dumps(model, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Ledger:
    fingerprint: str
    files: dict[str, str]  # relpath → sha256

    def new_files(self, files: list[FeedFile], sha256: dict[str, str], fingerprint: str) -> list[FeedFile] | None:
        """The files to ingest incrementally, or None when the whole inbox must be read again."""
        if fingerprint != self.fingerprint:
            return None
        if any(sha256.get(relpath) != digest for relpath, digest in self.files.items()):
            return None
        return [f for f in files if f.relpath not in self.files]


def read_ledger(out: str) -> Ledger | None:
    path = ledger_path(out)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        data = json.loads(f.read().decode("utf-8"))
    return Ledger(data["fingerprint"], dict(data["files"]))


def write_ledger(out: str, ledger: Ledger) -> None:
    data = {"fingerprint": ledger.fingerprint, "files": dict(sorted(ledger.files.items()))}
    write_atomically(ledger_path(out), to_json(data, indent=1).encode("utf-8"))
