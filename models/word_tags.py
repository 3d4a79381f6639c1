"""Parts of speech of a jieba tokenizer's words, for the nouns a topic's title is picked from.

``dictionary_words(tokenizer, tags, text)`` gives what ``jieba.posseg.POSTokenizer(tokenizer)
.lcut(text, HMM=False)`` gives for the text's Chinese runs — each word of the tokenizer's route with
its dictionary tag — without importing ``jieba.posseg``: that import builds a tagger for jieba's
default tokenizer, reading the 350,000-line word-tag table, and a tagger for our tokenizer reads it
again line by line (~0.8 s of a county month's report step). Here the table is read once with one
``split``; a text is cut exactly as the tagger cuts it without its HMM (the same block pattern,
``get_DAG`` and ``calc`` of the tokenizer, single letters and digits set aside as the tagger's
``eng`` runs). Runs of other characters carry no dictionary word (the tagger tags them x, m or
eng) and are left out.
"""
from __future__ import annotations

import re
from typing import Iterator

# jieba.posseg's re_han_internal and re_eng1
_BLOCK = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._]+)")
_SINGLE_ENG = re.compile("^[a-zA-Z0-9]$")


def word_tags(tokenizer) -> dict[str, str]:
    """Word → part-of-speech tag: the tokenizer's dictionary file ("word frequency tag" per line),
    then the tags of the words added to it (``add_word(..., tag=...)``), as the tagger merges them."""
    with tokenizer.get_dict_file() as f:
        fields = f.read().decode("utf-8").split()
    if len(fields) % 3:
        raise ValueError("the tokenizer's dictionary does not hold three fields (word, frequency, tag) per line")
    tags = dict(zip(fields[0::3], fields[2::3]))
    tags.update(tokenizer.user_word_tag_tab)
    return tags


def dictionary_words(tokenizer, tags: dict[str, str], text: str) -> Iterator[tuple[str, str]]:
    """(word, tag) of the words of the text's Chinese runs, in order, as the tagger cuts them
    without its HMM (a word outside ``tags`` is tagged x)."""
    for block in _BLOCK.split(text):
        if not _BLOCK.match(block):
            continue
        route: dict = {}
        tokenizer.calc(block, tokenizer.get_DAG(block), route)
        x, end = 0, len(block)
        while x < end:
            y = route[x][1] + 1
            word = block[x:y]
            if not _SINGLE_ENG.match(word):
                yield word, tags.get(word, "x")
            x = y
