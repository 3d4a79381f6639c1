"""The text work of topic building done faster must give what the libraries give: the character
TF-IDF equals scikit-learn's vectorizer entry for entry (in the same order: it decides the last bits
of the distances), the nouns equal jieba's tagger's, and the subject finder's batch gives each text's
own mentions. On the hand-written fixture texts and on generated ones."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from models import topics as model
from models.text_space import char_ngram_counts, char_tfidf
from models.word_tags import TextWords
from tests.topic_fixtures import GAZETTEER, history_events, month_events

FIXTURE_TEXTS = [e["text"] for e in month_events() + history_events()]
# CJK (with a rare extension-A character), Latin letters and digits, punctuation, masks, white space
# of several kinds, a character outside the BMP
_ALPHABET = "城关镇幸福里小区物业拖欠工资逾期交房宏达建筑工程有限公司㐀abcXYZ019,，。！*＊ \t\n\u3000😀._#+&%-"
texts = st.lists(st.text(alphabet=_ALPHABET, max_size=30), min_size=1, max_size=8)


def _sklearn(docs):
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True,
                                 preprocessor=model.TopicBuilder.feature_text)
    try:
        return vectorizer.fit_transform(docs)
    except ValueError:  # "empty vocabulary"
        return None


def _assert_same_matrix(ours, theirs):
    if theirs is None:
        assert ours is None
        return
    assert ours.shape == theirs.shape
    assert np.array_equal(ours.indptr, theirs.indptr)
    assert np.array_equal(ours.indices, theirs.indices)  # same order within each row, not only same set
    assert np.array_equal(ours.data, theirs.data)
    assert ours.has_sorted_indices == theirs.has_sorted_indices


def test_char_tfidf_equals_the_vectorizer_on_the_fixture_texts():
    docs = FIXTURE_TEXTS + FIXTURE_TEXTS[:5]  # repeated texts too
    ours = char_tfidf(docs, model.TopicBuilder.feature_text)
    _assert_same_matrix(ours, _sklearn(docs))
    # and the distances clustering reads from them, to the bit
    assert np.array_equal((ours @ ours.T).toarray(), (_sklearn(docs) @ _sklearn(docs).T).toarray())


@settings(max_examples=300, deadline=None)
@given(texts)
def test_char_tfidf_equals_the_vectorizer_on_any_texts(docs):
    _assert_same_matrix(char_tfidf(docs, model.TopicBuilder.feature_text), _sklearn(docs))


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 3), (2, 2), (3, 3)])
@settings(max_examples=60, deadline=None)
@given(docs=texts)
def test_counts_equal_the_vectorizers_for_other_ngram_lengths(ngram_range, docs):
    try:
        theirs = CountVectorizer(analyzer="char", ngram_range=ngram_range, lowercase=False,
                                 dtype=np.float64).fit_transform(docs)
    except ValueError:
        theirs = None
    ours = char_ngram_counts(docs, ngram_range)
    if theirs is None:
        assert ours is None
    else:
        assert np.array_equal(ours.indptr, theirs.indptr) and np.array_equal(ours.indices, theirs.indices)
        assert np.array_equal(ours.data, theirs.data) and ours.shape == theirs.shape


def test_texts_without_any_ngram_have_no_space():
    assert char_tfidf(["", "a", "，。"], model.TopicBuilder.feature_text) is None
    with pytest.raises(ValueError, match="1 to 3"):
        char_ngram_counts(["abcd"], (2, 4))


@pytest.fixture(scope="module")
def builder():
    return model.TopicBuilder(GAZETTEER)


@pytest.fixture(scope="module")
def full_tokenizer(builder):
    """jieba's tokenizer with its whole dictionary and the builder's added words."""
    import jieba

    tokenizer = jieba.Tokenizer()
    for word in builder.words._added:
        tokenizer.add_word(word, freq=2000, tag="n")
    return tokenizer


@pytest.fixture(scope="module")
def tagger(full_tokenizer):
    import jieba.posseg

    return jieba.posseg.POSTokenizer(full_tokenizer)


def _tagger_nouns(tagger, text):
    return [(w.word, w.flag) for w in tagger.lcut(text, HMM=False) if w.flag in model._NOUN_TAGS]


def _our_nouns(builder, text):
    return [(w, t) for w, t in builder.words.tagged(text) if t in model._NOUN_TAGS]


def test_the_dictionary_loads_as_the_texts_need_it(full_tokenizer):
    words = TextWords(type(full_tokenizer)())
    words.add_word("逾期交房", freq=2000, tag="n")
    plain = type(full_tokenizer)()
    plain.add_word("逾期交房", freq=2000, tag="n")
    assert set(words.tokenizer.FREQ) == {"逾", "逾期", "逾期交", "逾期交房"}  # the added word and its prefixes
    words.tagged("逾期交房")
    # the dictionary words of these characters came in, the added word kept its frequency and tag
    assert words.tokenizer.FREQ["逾期"] == plain.FREQ["逾期"] > 0
    assert words.tokenizer.FREQ["逾期交房"] == 2000 and words.tags["逾期交房"] == "n"
    assert "小区" not in words.tokenizer.FREQ
    assert words.tokenizer.total == plain.total
    # the words of these characters, each prefix of them; prefixes of other words only in jieba's
    # (a missing prefix reads as jieba's 0)
    assert {w: f for w, f in plain.FREQ.items() if f and set(w) <= set("逾期交房")} == {
        w: f for w, f in words.tokenizer.FREQ.items() if f}
    assert all(plain.FREQ[w] == f for w, f in words.tokenizer.FREQ.items())


def test_word_tags_are_the_taggers_table_with_the_added_words(builder, tagger):
    tagger.lcut("逾期交房")  # the tagger merges the words added to the tokenizer on its first cut
    for text in FIXTURE_TEXTS:
        builder.words.tagged(text)
    assert builder.words.tags and all(tagger.word_tag_tab[w] == t for w, t in builder.words.tags.items())
    assert builder.words.tags["逾期交房"] == "n"  # a grievance term added as a noun


def test_nouns_equal_jiebas_on_the_fixture_texts(builder, tagger):
    for text in FIXTURE_TEXTS:
        for form in (text, builder.feature_text(text)):
            assert _our_nouns(builder, form) == _tagger_nouns(tagger, form), form


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_nouns_equal_jiebas_on_any_text(builder, tagger, text):
    assert _our_nouns(builder, text) == _tagger_nouns(tagger, text)


def test_a_batch_of_texts_gets_each_texts_own_mentions(builder):
    docs = FIXTURE_TEXTS + list(reversed(FIXTURE_TEXTS))  # every text twice, names cut twice
    batch = builder.finder.mentions_of(docs)
    assert batch == [builder.finder.mentions(t) for t in docs]
    assert sum(1 for m in batch if m) >= len(FIXTURE_TEXTS)  # the fixture names places


def _partition(labels):
    groups = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return sorted(groups.values())


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=2, max_value=40), st.integers(min_value=0, max_value=2**32 - 1),
       st.sampled_from([0.05, 0.3, 0.8]), st.booleans())
def test_average_linkage_forms_the_clusters_of_scikit_learn(n, seed, threshold, coarse):
    from sklearn.cluster import AgglomerativeClustering

    rng = np.random.default_rng(seed)
    points = rng.random((n, 4))
    if coarse:  # equal distances: ties in the merge order
        points = np.round(points, 1) + 0.01
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    distances = np.clip(1.0 - points @ points.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    theirs = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                     distance_threshold=threshold).fit_predict(distances)
    assert _partition(model.average_linkage(distances, threshold)) == _partition(theirs)


_NAME_CHARS = "城关幸福里小区宏达村新王家庄河口"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=_NAME_CHARS, min_size=2, max_size=5), min_size=1, max_size=6),
       st.lists(st.text(alphabet=_NAME_CHARS + "，。ab😀\0", max_size=25), max_size=8))
def test_name_starts_let_through_every_text_that_holds_a_name(names, docs):
    starts = model._NameStarts(names)
    docs = docs + [d + names[0] for d in docs[:2]]
    may = starts.may_hold(docs)
    assert len(may) == len(docs)
    for doc, flag in zip(docs, may):
        if any(name in doc for name in names):
            assert flag, (doc, names)


def test_name_starts_pass_over_texts_without_a_name():
    starts = model._NameStarts(["幸福村", "河口"])
    assert starts.may_hold(["去幸福村的路上", "", "河口", "幸福里小区", "口河"]) == [True, False, True, False, False]
    assert model._NameStarts(["村"]).may_hold(["任何文字", ""]) == [True, True]  # a one-character name


def test_keyword_terms_are_content_words_not_times_names_or_fragments(builder):
    text = "梁先生来电反映，半个小时前停在路边的车玻璃被砸了，包被拿走，实在受不了了，今天上午肖卫东家又被偷了两次"
    terms = builder.content_terms(text, [])
    assert {"车玻璃被砸", "被拿走"} <= set(terms)
    for noise in ("梁先生", "半个", "半个小时", "小时前停", "前停", "实在", "今天上午", "两次", "肖卫东"):
        assert not any(noise in term for term in terms), (noise, terms)
