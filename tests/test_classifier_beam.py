"""ClassifyEvents on a small FnApiRunner pipeline, and the train / evaluate / classify commands."""
from __future__ import annotations

import json
import shutil

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from jobs import cli
from models import domain_classifier as dc
from pipelines.classify import NAMESPACE, ClassifyChunks, ClassifyEvents, annotate
from pipelines.options import beam_options
from pipelines.signals import SignalLexicon

EVENTS = [
    {"event_id": "police_110:1", "source": "police_110", "source_category": "刑事",
     "text": "报警称电动车在楼下被偷", "people_involved": None, "signals": None},
    {"event_id": "hotline_12345:2", "source": "hotline_12345", "source_category": "咨询",
     "text": "咨询灵活就业人员社保怎么缴费", "people_involved": None, "signals": []},
    {"event_id": "grid:3", "source": "grid", "source_category": "矛盾纠纷",
     "text": "某工地拖欠农民工工资，工人在项目部门口拉横幅，扬言要跳楼", "people_involved": 25, "signals": ["repeat"]},
]


def _run(events, **kwargs):
    pipeline = beam.Pipeline(options=beam_options([]))
    out = pipeline | beam.Create(events, reshuffle=False) | ClassifyEvents(**kwargs)
    summary = out | beam.Map(lambda e: (e["event_id"], e["domain"], e["domain_by"], tuple(e["signals"])))
    return pipeline, out, summary


def test_classify_events_fills_domain_and_signals():
    pipeline, out, summary = _run(EVENTS)
    assert_that(
        summary,
        equal_to([
            ("police_110:1", "public_order", "model", ()),
            ("hotline_12345:2", "none", "model", ()),
            ("grid:3", "labor_wage", "model", ("repeat", "gathering", "extreme_act", "many_people")),
        ]),
        label="domains",
    )
    assert_that(
        out | beam.Map(lambda e: (sorted(e), 0 < e["domain_confidence"] <= 1)),
        equal_to([(sorted([*EVENTS[0], "domain", "domain_confidence", "domain_by"]), True)] * 3),
        label="fields kept",
    )
    pipeline.run().wait_until_finish()


def test_chunks_of_events_are_classified_in_place_as_single_events_are():
    events = [dict(EVENTS[i % 3], event_id=f"e:{i}") for i in range(30)]
    expected = [(e["event_id"], e["domain"], e["domain_by"], tuple(e["signals"]), round(e["domain_confidence"], 9))
                for e in annotate(dc.DomainClassifier.load(), SignalLexicon.from_schema(), events)]
    pipeline = beam.Pipeline(options=beam_options([]))
    listed = (pipeline | beam.Create([events[:7], events[7:25], events[25:]], reshuffle=False)
              | ClassifyChunks(max_batch_size=5))
    assert_that(listed | "Sizes" >> beam.Map(len), equal_to([7, 18, 5]), label="chunks kept whole")
    assert_that(listed | "Flat" >> beam.FlatMap(lambda chunk: [
        (e["event_id"], e["domain"], e["domain_by"], tuple(e["signals"]), round(e["domain_confidence"], 9)) for e in chunk]),
        equal_to(expected), label="same annotations")
    pipeline.run().wait_until_finish()


def test_model_is_loaded_once_per_worker_and_events_are_batched():
    events = [dict(EVENTS[i % 3], event_id=f"e:{i}") for i in range(300)]
    pipeline, _, summary = _run(events, max_batch_size=100)
    assert_that(summary | beam.combiners.Count.Globally(), equal_to([300]))
    result = pipeline.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    loads = sum(c.committed for c in metrics["counters"] if c.key.metric.name == "model_loads")
    assert loads == 1
    [batches] = [d.committed for d in metrics["distributions"] if d.key.metric.name == "batch_size"]
    assert batches.sum == 300 and batches.count < 300 / 2 and batches.max <= 100
    by_model = sum(c.committed for c in metrics["counters"] if c.key.metric.name == "by_model")
    assert by_model + sum(c.committed for c in metrics["counters"] if c.key.metric.name in ("by_rule", "by_source")) == 300


def test_classify_command(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in [
            {"id": 1, "text": "我家门口路灯坏了好几天", "source": "hotline_12345", "source_category": "求助"},
            {"id": 2, "text": "開發商延期交房一年多，業主在售樓處聚集維權"},
            {"id": 3, "text": "现场没有聚集，两人因停车位吵架", "source": "police_110", "source_category": "纠纷"},
        ]) + "\n\n",
        encoding="utf-8",
    )
    target = tmp_path / "out.jsonl"
    assert cli.main(["classify", "--input", str(source), "--output", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [r["domain"] for r in rows] == ["none", "housing_construction", "civil_dispute"]
    assert [r["signals"] for r in rows] == [[], ["gathering"], []]
    assert all(r["domain_by"] in ("model", "rule", "source") and 0 < r["domain_confidence"] <= 1 for r in rows)
    assert "classified 3 lines" in capsys.readouterr().out


def test_classify_command_rejects_a_line_without_text(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "路灯坏了"}\n{"content": "no text field"}\n', encoding="utf-8")
    assert cli.main(["classify", "--input", str(source), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "in.jsonl:2: needs an object with a string `text`" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    shutil.copy(dc.DEFAULT_CORPUS / "handwritten.jsonl", folder)
    lines = (dc.DEFAULT_CORPUS / dc.INDEPENDENT_EVAL).read_text(encoding="utf-8").splitlines()
    (folder / dc.INDEPENDENT_EVAL).write_text("\n".join(lines[::8]) + "\n", encoding="utf-8")
    return folder


def test_train_then_evaluate_commands(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "artifacts"
    assert cli.main(["train", "--corpus", str(tiny_corpus), "--out", str(out), "--date", "2026-02-01"]) == 0
    meta = json.loads((out / "domain_classifier.json").read_text(encoding="utf-8"))
    assert meta["trained_on"] == "2026-02-01" and meta["training_files"] == ["handwritten.jsonl"]
    capsys.readouterr()
    report = tmp_path / "metrics.json"
    assert cli.main(["evaluate", "--corpus", str(tiny_corpus), "--model", str(out), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "== independent" in printed and "macro-F1" in printed and "truth \\ predicted" in printed
    metrics = json.loads(report.read_text(encoding="utf-8"))
    assert list(metrics) == ["independent"]
    assert metrics["independent"]["n"] == len(dc.read_jsonl(tiny_corpus / dc.INDEPENDENT_EVAL))
    assert metrics["independent"] == meta["evaluation"]["independent"]


def test_train_rejects_a_bad_date(tmp_path, tiny_corpus, capsys):
    assert cli.main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path), "--date", "yesterday"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_classify_command_names_a_line_that_is_not_json(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "路灯坏了"}\n\n{"text": "被骗了"\n', encoding="utf-8")
    assert cli.main(["classify", "--input", str(source), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "in.jsonl:3: not JSON" in capsys.readouterr().err
