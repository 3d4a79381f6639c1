"""``riskwatch classify``: JSON lines in, the same lines with domain, confidence, domain_by, signals out.

Runs in-process in batches rather than through a Beam pipeline: the per-element cost of a
runner would dominate a job that classifies tens of thousands of lines per second. The batch
function is the one ``pipelines.classify.ClassifyEvents`` uses.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

NAME = "classify"
HELP = "classify a JSON-lines file (text, optional source, source_category) into risk domains and signals"
BATCH = 4096


def add_arguments(parser) -> None:
    from models.domain_classifier import DEFAULT_ARTIFACTS

    parser.add_argument("--input", type=Path, required=True, help="JSON lines with `text` (+ `source`, `source_category`)")
    parser.add_argument("--output", type=Path, required=True, help="JSON lines out")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACTS, help=f"artifact folder (default {DEFAULT_ARTIFACTS})")


def _batches(lines, path: Path):
    """Batches of records; a batch is decoded as one JSON array (fewer decoder calls), and only a
    batch that fails is decoded line by line to name the bad line."""
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    while chunk := list(itertools.islice(numbered, BATCH)):
        try:
            records = json.loads("[" + ",".join(line for _, line in chunk) + "]")
        except json.JSONDecodeError:
            records = [_decode(n, line, path) for n, line in chunk]
        if len(records) != len(chunk):  # a line holding two values separated by a comma
            records = [_decode(n, line, path) for n, line in chunk]
        for (number, _), record in zip(chunk, records):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{number}: needs an object with a string `text`")
        yield records


def _decode(number: int, line: str, path: Path):
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None


def run(args, beam_args) -> int:
    from models.domain_classifier import ArtifactMismatch, DomainClassifier
    from pipelines.classify import annotate
    from pipelines.signals import SignalLexicon

    try:
        classifier = DomainClassifier.load(args.model)
    except ArtifactMismatch as exc:
        print(f"riskwatch classify: {exc}", file=sys.stderr)
        return 2
    lexicon = SignalLexicon.from_schema()
    encode = json.JSONEncoder(ensure_ascii=False).encode
    count = 0
    try:
        with open(args.input, encoding="utf-8-sig") as src, open(args.output, "w", encoding="utf-8") as out:
            for batch in _batches(src, args.input):
                out.write("".join(encode(r) + "\n" for r in annotate(classifier, lexicon, batch)))
                count += len(batch)
    except (OSError, ValueError) as exc:
        print(f"riskwatch classify: {exc}", file=sys.stderr)
        return 2
    print(f"classified {count} lines → {args.output}")
    return 0
