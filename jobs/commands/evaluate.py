"""``riskwatch evaluate``: per-domain precision, recall, F1, support and confusion matrices."""
from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "evaluate"
SIGNALS_EVAL = Path("signals") / "signals_eval.jsonl"  # under the corpus folder; texts with their signal codes
HELP = ("evaluate the saved domain classifier on the independent set and on held-out generated / "
        "simulated examples (table and JSON)")


def add_arguments(parser) -> None:
    from models.domain_classifier import DEFAULT_ARTIFACTS, DEFAULT_CORPUS

    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"corpus folder (default {DEFAULT_CORPUS})")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACTS, help=f"artifact folder (default {DEFAULT_ARTIFACTS})")
    parser.add_argument("--simulation", type=Path, action="append", default=[],
                        help="also evaluate on every record of a `riskwatch simulate` output folder (its natural "
                        "mix of domains); use a run whose seed did not feed the training corpus; repeatable")
    parser.add_argument("--json", type=Path, help="also write the metrics as JSON to this file")
    parser.add_argument("--no-confusion", action="store_true", help="omit the confusion matrices from the table")


def _width(text: str) -> int:
    return sum(2 if ord(c) > 0x2E7F else 1 for c in text)


def _table(rows: list[list[str]]) -> str:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(" " * (w - _width(c)) + c for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def format_metrics(name: str, metrics: dict, confusion: bool = True) -> str:
    rows = [["domain", "precision", "recall", "f1", "support"]]
    for domain, m in metrics["per_domain"].items():
        rows.append([domain, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])])
    rows.append(["macro-F1", "", "", f"{metrics['macro_f1']:.3f}", str(metrics["n"])])
    rows.append(["accuracy", "", "", f"{metrics['accuracy']:.3f}", ""])
    by = ", ".join(f"{k}={v}" for k, v in metrics.get("domain_by", {}).items())
    text = f"== {name}  (n={metrics['n']}; domain_by: {by})\n{_table(rows)}"
    if confusion:
        labels = metrics["labels"]
        short = [label[:6] for label in labels]
        grid = [["truth \\ predicted", *short]] + [[label, *map(str, row)] for label, row in zip(labels, metrics["confusion"])]
        text += "\n" + _table(grid)
    return text


def format_signal_metrics(name: str, metrics: dict) -> str:
    rows = [["signal", "precision", "recall", "f1", "support"]]
    for code, m in metrics.items():
        if code != "exact":
            rows.append([code, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])])
    rows.append(["exact match", "", "", f"{metrics['exact']:.3f}", ""])
    return f"== {name}\n{_table(rows)}"


def print_report(evaluation: dict, confusion: bool = True) -> None:
    for name, metrics in evaluation.items():
        print(format_metrics(name, metrics, confusion))
        print()


def run(args, beam_args) -> int:
    import pandas as pd

    from models.domain_classifier import ArtifactMismatch, DomainClassifier, evaluate, evaluation_sets
    from models.simulated_corpus import simulated_examples
    from pipelines.signals import SignalLexicon, signal_metrics

    try:
        classifier = DomainClassifier.load(args.model)
    except ArtifactMismatch as exc:
        print(f"riskwatch evaluate: {exc}", file=sys.stderr)
        return 2
    evaluation = {name: evaluate(classifier, frame) for name, frame in evaluation_sets(args.corpus).items()}
    for folder in args.simulation:
        try:
            examples = pd.DataFrame(simulated_examples(folder, cap=None))
        except FileNotFoundError as exc:
            print(f"riskwatch evaluate: {exc}", file=sys.stderr)
            return 2
        evaluation[f"simulation:{folder.name}"] = evaluate(classifier, examples)
    if not evaluation:
        print(f"riskwatch evaluate: nothing to evaluate in {args.corpus}", file=sys.stderr)
        return 2
    print(f"model {classifier.metadata.get('model_version')} trained {classifier.metadata.get('trained_on')}, "
          f"data sha256 {classifier.metadata.get('training_data_sha256', '')[:12]}")
    print_report(evaluation, confusion=not args.no_confusion)
    signal_set = args.corpus / SIGNALS_EVAL
    if signal_set.exists():
        labelled = [json.loads(line) for line in signal_set.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts, truth = [r["text"] for r in labelled], [r["signals"] for r in labelled]
        lexicon = SignalLexicon.from_schema()
        evaluation["signals"] = signal_metrics(lexicon, texts, truth)
        evaluation["signals_without_negation"] = signal_metrics(lexicon.without_negation(), texts, truth)
        print(format_signal_metrics(f"signals ({len(texts)} labelled texts)", evaluation["signals"]))
        print(format_signal_metrics("signals with negation handling switched off", evaluation["signals_without_negation"]))
        print()
    if args.json:
        args.json.write_text(json.dumps(evaluation, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"metrics → {args.json}")
    return 0
