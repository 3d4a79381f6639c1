"""Labelled examples from a simulator run: ``models/corpus/simulated.jsonl``.

Reads the department files of a ``riskwatch simulate`` output folder with the ingest reader (so the
texts are what the pipeline would see: each department's headers, GBK CSVs, workbooks, traditional
characters) and labels them with ``truth/records.csv``. Broken and duplicate rows are skipped,
identical texts kept once, and each domain capped so that the simulator's frequent situations do
not swamp the hand-written corpus: the model must never depend on the simulator's phrasing alone.

Run: ``PYTHONPATH=. python -m models.simulated_corpus SIM_DIR [--cap 300] [--out FILE]``.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from models.domain_classifier import DEFAULT_CORPUS, write_jsonl
from pipelines.read import FileReader, discover

DEFAULT_CAP = 300


def simulated_examples(sim_dir: Path, cap: int | None = DEFAULT_CAP, seed: int = 0) -> list[dict]:
    """Labelled examples of a simulator run; ``cap=None`` keeps every record (its natural mix of
    domains, duplicate texts included) for evaluation."""
    sim_dir = Path(sim_dir)
    with open(sim_dir / "truth" / "records.csv", encoding="utf-8", newline="") as f:
        truth = {
            (r["feed"], r["file"], int(r["line"])): r["domain"]
            for r in csv.DictReader(f)
            if not r["broken_reason"] and not r["duplicate_of"]
        }
    by_domain: dict[str, dict[str, dict]] = {}
    for feed_file in discover(str(sim_dir / "inbox")):
        reader = FileReader(feed_file.feed)
        rows, _ = reader.read(feed_file.relpath, Path(feed_file.path).read_bytes())
        for row in rows:
            domain = truth.get((feed_file.feed, row["file"], row["line"]))
            if domain is None or not row["values"]:
                continue
            fields = {reader.headers.map(row["header"]).get(k): v for k, v in row["values"].items()}
            text = str(fields.get("text") or "").strip()
            if text:
                category = fields.get("source_category")
                example = {"text": text, "source": feed_file.feed,
                           "source_category": str(category).strip() if category else None, "domain": domain}
                # keyed by text when capping (each text once), by position when keeping all
                key = text if cap is not None else (feed_file.relpath, row["line"])
                by_domain.setdefault(domain, {}).setdefault(key, example)
    rng = random.Random(seed)
    examples = []
    for domain in sorted(by_domain):
        unique = sorted(by_domain[domain].values(), key=lambda e: e["text"])
        examples += unique if cap is None else rng.sample(unique, min(cap, len(unique)))
    return examples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sim_dir", type=Path, help="a `riskwatch simulate` output folder (inbox/, truth/)")
    parser.add_argument("--cap", type=int, default=DEFAULT_CAP, help=f"examples per domain (default {DEFAULT_CAP})")
    parser.add_argument("--out", type=Path, default=DEFAULT_CORPUS / "simulated.jsonl")
    args = parser.parse_args(argv)
    examples = simulated_examples(args.sim_dir, args.cap)
    write_jsonl(args.out, examples)


if __name__ == "__main__":
    main()
