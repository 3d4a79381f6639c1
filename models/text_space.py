"""Character n-gram TF-IDF of short texts: the matrix scikit-learn's
``TfidfVectorizer(analyzer="char", ngram_range=(lo, hi), sublinear_tf=True, preprocessor=f)`` gives,
with the n-grams counted by NumPy instead of a Python loop over every n-gram of every text.

Topic building fits one such space per township × domain (and per listed topic); in the
vectorizer, generating and counting the n-grams one by one was most of that cost. The counts
here are the vectorizer's to the entry — same vocabulary order, same order of the entries within
a row (scipy sums in that order) — and the weighting is scikit-learn's own ``TfidfTransformer``,
so the vectors and everything clustered on them are unchanged.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfTransformer

# CountVectorizer._white_spaces: its char analyzer folds runs of white space into one space
_WHITE_SPACES = re.compile(r"\s\s+")
_BITS = 21  # a code point fits in 21 bits; an absent character of a shorter n-gram is 0
_MAX_N = 3  # three 21-bit slots fill an int64


def _ngram_keys(codes: np.ndarray, n: int) -> np.ndarray:
    """Each position's n-gram as one integer (code point + 1 per slot, shorter n-grams padded with
    0): integer order is the strings' order, a prefix before its extensions."""
    keys = np.zeros(len(codes) - _MAX_N + 1, dtype=np.int64)
    for k in range(n):
        keys |= codes[k : len(codes) - _MAX_N + 1 + k] << (_BITS * (_MAX_N - 1 - k))
    return keys


def char_ngram_counts(texts: Sequence[str], ngram_range: tuple[int, int]) -> sparse.csr_matrix | None:
    """``CountVectorizer(analyzer="char", ngram_range=…, dtype=float64)``'s counts of already
    preprocessed ``texts``, None when they hold no n-gram (the vectorizer's "empty vocabulary").

    The vectorizer numbers n-grams as it first meets them (text by text, the shorter n-grams of a text
    first, left to right), keeps a row's entries in that order, then renumbers the columns in the
    n-grams' sorted order without reordering the entries: reproduced here, since the order in which
    a row's entries are summed decides the last bits of every dot product."""
    low, high = ngram_range
    if not 1 <= low <= high <= _MAX_N:
        raise ValueError(f"n-grams of 1 to {_MAX_N} characters, not {ngram_range}")
    docs = [_WHITE_SPACES.sub(" ", t) for t in texts]
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    # code points + 1 (0 marks "no character"), then padding so every position has _MAX_N slots
    codes = np.frombuffer("".join(docs).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64) + 1
    codes = np.concatenate([codes, np.zeros(_MAX_N - 1, dtype=np.int64)])
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    offset = np.arange(len(doc_of), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    # where each n-gram comes in the vectorizer's stream: text by text, within a text the shorter
    # n-grams first, each length left to right
    per_length = [np.maximum(lengths - n + 1, 0) for n in range(low, high + 1)]
    text_start = np.cumsum(sum(per_length)) - sum(per_length)
    keys, owners, seen_at, before = [], [], [], np.zeros(len(docs), dtype=np.int64)
    for n, count in zip(range(low, high + 1), per_length):
        fits = offset + n <= lengths[doc_of]
        owner = doc_of[fits]
        keys.append(_ngram_keys(codes, n)[fits])
        owners.append(owner)
        seen_at.append(text_start[owner] + before[owner] + offset[fits])
        before = before + count
    key, owner, seen_at = (np.concatenate(parts) for parts in (keys, owners, seen_at))
    total = len(key)
    if not total:
        return None
    # columns in the n-grams' sorted order, each with where the stream first meets it
    order = np.argsort(key)
    new = np.empty(total, dtype=bool)
    new[0] = True
    np.not_equal(key[order][1:], key[order][:-1], out=new[1:])
    starts = np.flatnonzero(new)
    first_seen = np.minimum.reduceat(seen_at[order], starts)
    column = np.empty(total, dtype=np.int64)
    column[order] = np.cumsum(new) - 1
    # one cell per text × n-gram, sorted by text and, within a text, by first meeting
    cell, count = np.unique(owner * total + first_seen[column], return_counts=True)
    row, first = np.divmod(cell, total)
    column_of = np.empty(total, dtype=np.int64)
    column_of[first_seen] = np.arange(len(starts))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(docs)))])
    index = np.int32 if len(cell) <= np.iinfo(np.int32).max else np.int64  # as the vectorizer picks
    return sparse.csr_matrix((count.astype(np.float64), column_of[first].astype(index), indptr.astype(index)),
                             shape=(len(docs), len(starts)))


def char_tfidf(texts: Sequence[str], preprocessor: Callable[[str], str],
               ngram_range: tuple[int, int] = (2, 3)) -> sparse.csr_matrix | None:
    """``TfidfVectorizer(analyzer="char", ngram_range=ngram_range, sublinear_tf=True,
    preprocessor=preprocessor).fit_transform(texts)``; None when the texts hold no n-gram."""
    counts = char_ngram_counts([preprocessor(t) for t in texts], ngram_range)
    if counts is None:
        return None
    weights = TfidfTransformer(sublinear_tf=True).fit(counts)
    return weights.transform(counts, copy=False)
