"""Throughput of the domain classifier on one core: descriptions per second, median of runs.

Measures ``pipelines.classify.annotate`` (model + priors + signals, what the Beam DoFn and
``riskwatch classify`` run per batch) and its parts, on descriptions drawn from the corpus and
the independent set, lengthened by half with a repeated tail to resemble real work orders.

Run: ``PYTHONPATH=. python benchmarks/bench_classify.py [--n 20000] [--runs 5] [--batch 4096]``
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

# one core: BLAS and OpenMP threads would otherwise borrow the others
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import pandas as pd  # noqa: E402

from models.domain_classifier import COLUMNS, DEFAULT_CORPUS, DomainClassifier, read_jsonl, training_files  # noqa: E402
from jobs import cli  # noqa: E402
from pipelines.classify import annotate  # noqa: E402
from pipelines.signals import SignalLexicon  # noqa: E402


def descriptions(n: int) -> list[dict]:
    frames = [read_jsonl(p) for p in training_files(DEFAULT_CORPUS)]
    frames.append(read_jsonl(DEFAULT_CORPUS / "eval_independent.jsonl"))
    pool = pd.concat(frames, ignore_index=True)[COLUMNS].to_dict("records")
    out = []
    for i in range(n):
        record = dict(pool[i % len(pool)])
        record["text"] = f"{record['text']}{record['text'][: len(record['text']) // 2]}{i}"
        out.append(record)
    return out


def rates(fn, records: list[dict], batch: int, runs: int) -> tuple[float, float]:
    """(per CPU second, per wall-clock second), medians over runs.

    CPU time of this process is the figure for "one core" on a machine shared with other jobs;
    wall-clock time is what an idle core would also show.
    """
    cpu, wall = [], []
    for _ in range(runs):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for i in range(0, len(records), batch):
            fn(records[i : i + batch])
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return len(records) / statistics.median(cpu), len(records) / statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()
    classifier = DomainClassifier.load()
    lexicon = SignalLexicon.from_schema()
    records = descriptions(args.n)
    mean_len = sum(len(r["text"]) for r in records) / len(records)
    print(f"{len(records)} descriptions, mean {mean_len:.0f} characters, batch {args.batch}, median of {args.runs} runs")
    parts = {
        "classify (model + priors + signals)": lambda b: annotate(classifier, lexicon, b),
        "  model + priors only": classifier.predict_records,
        "  signals only": lambda b: lexicon.extract_batch([r["text"] for r in b]),
    }
    print(f"{'':38s} {'per CPU-s':>10s} {'per wall-s':>11s}")
    for name, fn in parts.items():
        per_cpu, per_wall = rates(fn, records, args.batch, args.runs)
        print(f"{name:38s} {per_cpu:>10,.0f} {per_wall:>11,.0f}  descriptions/s")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.jsonl", Path(folder) / "out.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        argv = ["classify", "--input", str(source), "--output", str(target)]
        with contextlib.redirect_stdout(io.StringIO()):
            per_cpu, per_wall = rates(lambda _: cli.main(argv), [None], 1, args.runs)
        print(f"{'riskwatch classify (JSONL in and out)':38s} {per_cpu * len(records):>10,.0f} "
              f"{per_wall * len(records):>11,.0f}  descriptions/s")


if __name__ == "__main__":
    main()
