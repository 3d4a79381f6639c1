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
from models.word_tags import dictionary_words
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
def tagger(builder):
    # the builder reads its table before jieba's tagger takes the added words' tags over
    builder.word_tag_table
    import jieba.posseg

    return jieba.posseg.POSTokenizer(builder.tokenizer)


def _tagger_nouns(tagger, text):
    return [(w.word, w.flag) for w in tagger.lcut(text, HMM=False) if w.flag in model._NOUN_TAGS]


def test_word_tags_are_the_taggers_table_with_the_added_words(builder, tagger):
    tagger.lcut("逾期交房")  # the tagger merges the words added to the tokenizer on its first cut
    assert builder.word_tag_table == tagger.word_tag_tab
    assert builder.word_tag_table["逾期交房"] == "n"  # a grievance term added as a noun


def test_nouns_equal_the_taggers_on_the_fixture_texts(builder, tagger):
    for text in FIXTURE_TEXTS:
        for form in (text, builder.feature_text(text)):
            ours = [(w, t) for w, t in dictionary_words(builder.tokenizer, builder.word_tag_table, form)
                    if t in model._NOUN_TAGS]
            assert ours == _tagger_nouns(tagger, form), form


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_nouns_equal_the_taggers_on_any_text(builder, tagger, text):
    ours = [(w, t) for w, t in dictionary_words(builder.tokenizer, builder.word_tag_table, text)
            if t in model._NOUN_TAGS]
    assert ours == _tagger_nouns(tagger, text)


def test_a_batch_of_texts_gets_each_texts_own_mentions(builder):
    docs = FIXTURE_TEXTS + list(reversed(FIXTURE_TEXTS))  # every text twice, names cut twice
    batch = builder.finder.mentions_of(docs)
    assert batch == [builder.finder.mentions(t) for t in docs]
    assert sum(1 for m in batch if m) >= len(FIXTURE_TEXTS)  # the fixture names places
