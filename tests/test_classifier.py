"""Domain classifier: training determinism, artifact round trip, priors, ordinary requests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

import schemas
from models import domain_classifier as dc
from models.features import NgramTfidf, ngram_hashes, normalise_text, normalise_texts, source_key


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """The hand-written examples plus every fourth generated one: fast to train, all domains."""
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copy(dc.DEFAULT_CORPUS / "handwritten.jsonl", folder / "handwritten.jsonl")
    lines = (dc.DEFAULT_CORPUS / "generated.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "generated.jsonl").write_text("\n".join(lines[::4]) + "\n", encoding="utf-8")
    independent = (dc.DEFAULT_CORPUS / dc.INDEPENDENT_EVAL).read_text(encoding="utf-8").splitlines()
    (folder / dc.INDEPENDENT_EVAL).write_text("\n".join(independent[::5]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def small_model(small_corpus) -> dc.DomainClassifier:
    return dc.train(small_corpus, trained_on="2026-01-31")


@pytest.fixture(scope="module")
def shipped() -> dc.DomainClassifier:
    return dc.DomainClassifier.load()


PROBES = pd.DataFrame(
    [
        {"text": "包工头拖欠我们三个月工资不给", "source": "hotline_12345", "source_category": "投诉"},
        {"text": "報警稱電動車被偷", "source": "police_110", "source_category": "刑事"},
        {"text": "咨询医保怎么交", "source": None, "source_category": None},
        {"text": "", "source": "grid", "source_category": "其他"},
    ]
)


def test_training_is_deterministic(small_corpus, small_model):
    again = dc.train(small_corpus, trained_on="2026-01-31")
    np.testing.assert_array_equal(
        small_model.pipeline.predict_proba(PROBES), again.pipeline.predict_proba(PROBES)
    )
    assert small_model.metadata == again.metadata


def test_training_never_fits_on_the_independent_set_or_held_out_rows(small_corpus, small_model):
    corpus = dc.load_corpus(small_corpus)
    assert set(corpus["origin"]) == {"handwritten", "generated"}
    assert small_model.metadata["n_training_examples"] == int((~corpus["held_out"]).sum())
    assert corpus.loc[corpus["origin"] == "handwritten", "held_out"].sum() == 0
    assert set(small_model.metadata["evaluation"]) == {"independent", "held_out_generated"}


def test_artifact_round_trip(tmp_path, small_model):
    model_path, meta_path = small_model.save(tmp_path)
    loaded = dc.DomainClassifier.load(tmp_path)
    np.testing.assert_array_equal(small_model.pipeline.predict_proba(PROBES), loaded.pipeline.predict_proba(PROBES))
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["taxonomy_version"] == str(schemas.taxonomy()["version"])
    assert len(meta["training_data_sha256"]) == 64
    assert meta["trained_on"] == "2026-01-31"
    assert sorted(meta["classes"]) == sorted(schemas.domain_codes())
    assert 0 <= meta["evaluation"]["independent"]["macro_f1"] <= 1
    assert model_path.stat().st_size < 20e6


@pytest.mark.parametrize(
    "field, value, message",
    [("taxonomy_version", "1999.1", "trained for taxonomy 1999.1"), ("sklearn_version", "0.24.2", "scikit-learn 0.24.2")],
)
def test_loading_refuses_a_mismatched_artifact(tmp_path, small_model, field, value, message):
    _, meta_path = small_model.save(tmp_path)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta[field] = value
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(dc.ArtifactMismatch, match=message) as error:
        dc.DomainClassifier.load(tmp_path)
    assert "riskwatch train" in str(error.value)


def test_missing_artifact_says_how_to_make_one(tmp_path):
    with pytest.raises(dc.ArtifactMismatch, match="riskwatch train"):
        dc.DomainClassifier.load(tmp_path)


def test_corpus_sha_changes_with_the_data(tmp_path, small_corpus):
    shutil.copytree(small_corpus, tmp_path / "c")
    before = dc.corpus_sha256(tmp_path / "c")
    with open(tmp_path / "c" / "handwritten.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "咨询公交卡办理", "domain": "none"}, ensure_ascii=False) + "\n")
    after = dc.corpus_sha256(tmp_path / "c")
    assert after != before
    # the independent set is not training data
    (tmp_path / "c" / dc.INDEPENDENT_EVAL).write_text("", encoding="utf-8")
    assert dc.corpus_sha256(tmp_path / "c") == after


def test_unknown_label_in_corpus_is_refused(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "某事", "domain": "weather"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="weather"):
        dc.load_corpus(tmp_path)


@pytest.mark.parametrize(
    "text, source, category",
    [
        ("咨询一下灵活就业人员社保怎么缴费", "hotline_12345", "咨询"),
        ("我想问问城乡居民医保今年交多少钱，在哪里交", "hotline_12345", "咨询"),
        ("我家门口的路灯坏了，晚上黑乎乎的，麻烦派人来修", "hotline_12345", "求助"),
        ("小区路灯不亮", None, None),
        ("请问身份证补办需要带什么材料", "hotline_12345", "咨询"),
        ("表扬社区工作人员服务热情", "hotline_12345", "表扬"),
    ],
)
def test_ordinary_requests_are_none(shipped, text, source, category):
    [prediction] = shipped.predict_records([{"text": text, "source": source, "source_category": category}])
    assert prediction.domain == "none", (text, prediction)


@pytest.mark.parametrize(
    "text, domain",
    [
        ("工地老板拖欠二十多个农民工工资，工人堵在项目部门口", "labor_wage"),
        ("开发商逾期一年不交房，业主在售楼处聚集", "housing_construction"),
        ("因拆迁补偿款分配问题两户村民打起来了", "land_demolition"),
        ("接到冒充公安的电话，转了五万到安全账户", "financial_fraud"),
        ("化工厂夜里偷排废水，河里的鱼都死了", "environment_health"),
    ],
)
def test_underlying_issue_drives_the_domain(shipped, text, domain):
    [prediction] = shipped.predict_records([{"text": text}])
    assert prediction.domain == domain, (text, prediction)
    assert 0 < prediction.confidence <= 1


def test_priors_decide_only_below_the_threshold(small_model):
    unsure = dc.DomainClassifier(small_model.pipeline, small_model.metadata, fallback_below=1.01)
    records = [
        {"text": "拖欠工资", "source": "hotline_12345", "source_category": "投诉"},
        {"text": "两人在门口争吵", "source": "police_110", "source_category": "纠纷"},
    ]
    wage, quarrel = unsure.predict_records(records)
    assert (wage.domain, wage.by) == ("labor_wage", "rule")
    assert (quarrel.domain, quarrel.by) == ("civil_dispute", "source")
    # the reported confidence stays the model's probability of the returned domain
    proba = small_model.pipeline.predict_proba(pd.DataFrame(records))
    assert wage.confidence == pytest.approx(proba[0, list(small_model.classes).index("labor_wage")], abs=1e-4)
    sure = small_model.predict_records(records)
    assert all(p.by == "model" for p in sure if p.confidence >= dc.FALLBACK_BELOW)


def test_priors_come_from_the_taxonomy():
    priors = dc.Priors.from_taxonomy(schemas.taxonomy())
    assert priors.keyword_domains(normalise_text("被電信詐騙")) == {"financial_fraud"}
    assert priors.source_domain[("police_110", "纠纷")] == "civil_dispute"
    assert priors.keyword_domains("今天天气不错") == set()


def test_evaluate_reports_per_domain_and_confusion(small_model):
    frame = dc.read_jsonl(dc.DEFAULT_CORPUS / dc.INDEPENDENT_EVAL).iloc[::10]
    metrics = dc.evaluate(small_model, frame)
    labels = schemas.domain_codes()
    assert metrics["labels"] == labels
    assert np.array(metrics["confusion"]).sum() == len(frame)
    assert sum(m["support"] for m in metrics["per_domain"].values()) == len(frame)
    assert sum(metrics["domain_by"].values()) == len(frame)


def test_character_block_equals_sklearn_tfidf():
    texts = ["路灯不亮路灯不亮", "路灯坏了", "被骗了五万", "工资没发,路灯也坏了"]
    frame = pd.DataFrame({"text": texts})
    ours = NgramTfidf(char_range=(1, 2), word_range=(2, 2), min_df=1).fit(frame)
    reference = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    expected = reference.transform(texts).toarray()
    got = ours.transform(frame)[:, : ours.n_char_features_].toarray()
    assert ours.n_char_features_ == len(reference.vocabulary_)
    for gram, ref_column in reference.vocabulary_.items():
        _, _, [key] = ngram_hashes([gram], len(gram), len(gram))
        our_column = int(np.flatnonzero(ours.vocabulary_[: ours.n_char_features_] == key)[0])
        np.testing.assert_allclose(got[:, our_column], expected[:, ref_column], rtol=1e-6)


def test_word_block_holds_dictionary_words_only():
    frame = pd.DataFrame({"text": ["路灯不亮", "路灯坏了"]})
    ours = NgramTfidf(char_range=(1, 1), word_range=(2, 2), min_df=1).fit(frame)
    words = ours.vocabulary_[ours.n_char_features_ :]
    _, _, expected = ngram_hashes(["路灯"], 2, 2)
    _, _, not_words = ngram_hashes(["灯不", "灯坏"], 2, 2)
    assert set(expected) <= set(words) and not set(not_words) & set(words)
    matrix = ours.transform(frame)[:, ours.n_char_features_ :].toarray()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1)


def test_normalise_text_folds_width_script_and_masks():
    assert normalise_text("電話[手机号]ＡＢＣ１２３") == "电话〇abc123"
    assert normalise_text(None) == ""


def test_bundled_model_is_retrained_once_for_another_scikit_learn(tmp_path, monkeypatch):
    import sklearn

    from models import domain_classifier as dc

    monkeypatch.setenv("RISKWATCH_CACHE", str(tmp_path))
    monkeypatch.setattr(sklearn, "__version__", "0.0.test")
    retrained = dc.DomainClassifier.load()
    cached = list(tmp_path.glob("classifier-sklearn0.0.test-*"))
    assert len(cached) == 1 and (cached[0] / "domain_classifier.joblib").exists()
    assert retrained.metadata["sklearn_version"] == "0.0.test"
    again = dc.DomainClassifier.load()
    texts = [{"text": "咨询一下社保卡怎么补办", "source": "hotline_12345", "source_category": "咨询"},
             {"text": "老板拖欠我们三个月工资不给", "source": "hotline_12345", "source_category": "投诉"}]
    assert [p.domain for p in again.predict_records(texts)] == [p.domain for p in retrained.predict_records(texts)]
    assert [p.domain for p in retrained.predict_records(texts)] == ["none", "labor_wage"]


# Texts made of what department texts hold around the normalisation rules: traditional and
# simplified characters, full-width forms, mask brackets and the words that close them, digits,
# Greek capital sigma (lower-cased by context), spaces and NUL.
_PIECES = ["報警", "稱", "樓上", "噪音", "打坏", "回覆", "拖欠工资", "（", "）", "[", "]", "【", "】", "号", "名", "姓名", "手机号",
           "张", "**", "1234567", "13912345678", "ＡＢＣ", "１２", "Σ", "ΑΣ", " ", "　", "\x00", "聚集", "跳楼", "a"]
_texts = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join) | st.none()


@settings(max_examples=60, deadline=None)
@given(st.lists(_texts, min_size=1, max_size=12))
def test_a_batch_normalises_each_text_as_it_would_alone(texts):
    # One text ending "（张" and the next starting "号）" once became one mask token across the
    # separator: the batch came back one text short and classification failed.
    assert normalise_texts(texts) == [normalise_text(t) for t in texts]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_texts, st.sampled_from(["hotline_12345", "police_110", "grid", "other", None]),
                          st.sampled_from(["投诉", "刑事", "矛盾纠纷", "其他", "未知类别", "", None])), min_size=1, max_size=20))
def test_fitted_features_give_the_pipelines_probabilities(shipped, records):
    frame = pd.DataFrame(records, columns=dc.COLUMNS)
    proba = shipped.features.proba(normalise_texts(frame["text"]), source_key(frame)[:, 0].tolist())
    assert np.array_equal(proba, shipped.pipeline.predict_proba(frame))
    # records of text cells skip the frame: the same predictions as through one
    as_records = [dict(zip(dc.COLUMNS, record)) for record in records]
    assert shipped.predict_records(as_records) == shipped.predict_frame(frame)


def test_the_linear_model_is_applied_as_the_calibrated_classifier_applies_it(shipped):
    # the shipped model takes the direct path; without it (any other classifier) the same floats
    frame = pd.concat([PROBES, pd.DataFrame([{"text": "", "source": "other", "source_category": None}])],
                      ignore_index=True).reindex(columns=dc.COLUMNS)
    texts, keys = normalise_texts(frame["text"]), source_key(frame)[:, 0].tolist()
    assert shipped.features.linear is not None
    direct = shipped.features.proba(texts, keys)
    general = dc.FittedFeatures(shipped.pipeline)
    general.linear = None
    assert np.array_equal(direct, general.proba(texts, keys))
    assert np.array_equal(direct, shipped.pipeline.predict_proba(frame))


def test_an_artifact_of_another_shape_is_refused(small_model):
    other = Pipeline([("classifier", small_model.pipeline.steps[-1][1])])
    with pytest.raises(dc.ArtifactMismatch, match="riskwatch train"):
        dc.FittedFeatures(other)


def test_batches_that_used_to_fail_are_classified(shipped):
    # two texts that once merged into one mask token; a batch without any known n-gram
    assert len(shipped.predict_records([{"text": "联系人（张"}, {"text": "号）反映噪音"}])) == 2
    [lone] = shipped.predict_records([{"text": "𠀀𠀁"}])
    assert lone.domain in shipped.classes
