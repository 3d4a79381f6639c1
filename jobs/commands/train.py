"""``riskwatch train``: fit the domain classifier on the corpus and save the artifact."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

NAME = "train"
HELP = "train the domain classifier on models/corpus/ and save models/artifacts/domain_classifier.*"


def add_arguments(parser) -> None:
    from models.domain_classifier import DEFAULT_ARTIFACTS, DEFAULT_CORPUS

    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"labelled *.jsonl (default {DEFAULT_CORPUS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_ARTIFACTS, help=f"artifact folder (default {DEFAULT_ARTIFACTS})")
    parser.add_argument("--date", default=None,
                        help="training date recorded in the metadata, YYYY-MM-DD (default today); "
                        "pass it to make the metadata file reproducible")
    parser.add_argument("--random-state", type=int, default=0)


def run(args, beam_args) -> int:
    from jobs.commands.evaluate import print_report
    from models.domain_classifier import train

    trained_on = args.date or dt.date.today().isoformat()
    try:
        dt.date.fromisoformat(trained_on)
    except ValueError:
        print(f"riskwatch train: --date {trained_on!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    try:
        classifier = train(args.corpus, trained_on=trained_on, random_state=args.random_state)
    except (FileNotFoundError, ValueError) as exc:
        print(f"riskwatch train: {exc}", file=sys.stderr)
        return 2
    model_path, meta_path = classifier.save(args.out)
    meta = classifier.metadata
    print(f"trained on {meta['n_training_examples']} examples {meta['training_examples_by_origin']}, "
          f"data sha256 {meta['training_data_sha256'][:12]}, taxonomy {meta['taxonomy_version']}")
    print_report(meta.get("evaluation", {}), confusion=False)
    print(f"saved {model_path} ({model_path.stat().st_size / 1e6:.1f} MB) and {meta_path}")
    return 0
