"""Words of a jieba tokenizer with their parts of speech, for the nouns a topic's title is picked from
and the terms of its keywords, with the dictionary loaded only as far as the texts need it.

``TextWords(tokenizer)`` gives what ``jieba.posseg.POSTokenizer(tokenizer).lcut(text, HMM=False)``
gives for the text's Chinese runs (``tagged``: each word of the tokenizer's route with its
dictionary tag) — without the 500,000-entry
prefix dictionary that jieba unmarshals from its cache on first use (~0.7 s of a county month's
report step) and without importing ``jieba.posseg`` (whose import builds a tagger for jieba's
default tokenizer, reading the word-tag table, which a tagger for our tokenizer reads again line by
line). The dictionary file is read once with one ``split``; a word enters the tokenizer's prefix
dictionary (and the tag table) when every one of its characters has been met in a text to cut.

Why the cut is the same: jieba looks up only substrings of the text it cuts (``get_DAG``'s walk over
the prefixes starting at each character, ``calc``'s word frequencies, ``cut``'s check of a run of
single characters), so the words and prefixes made of other characters are never asked for; a
prefix missing (None) and a prefix entry (0) read alike in every lookup. The total frequency is the
whole dictionary's, and a word added to the tokenizer (``add_word``) keeps its own frequency and
tag over the dictionary's, as in jieba, whichever comes in first.

For the same reason a block of a text (a run jieba cuts on its own) is cut once: the words it can
hold were all in when it was first met, and a word coming in later holds a character it lacks. Texts
share many blocks (feature texts mask names and digits: "市民来电反映", "要求处理"), so each block's
words and tags are kept (up to ``MAX_BLOCKS``).
"""
from __future__ import annotations

import re

import numpy as np

# jieba.posseg's re_han_internal and re_eng1
_BLOCK = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._]+)")
_SINGLE_ENG = re.compile("^[a-zA-Z0-9]$")
MAX_BLOCKS = 500_000  # a worker's tokenizer lives for many months: start over beyond this many


class TextWords:
    """A jieba tokenizer (not yet initialised) whose prefix dictionary fills in as texts are cut.
    Create once per worker; add words through ``add_word``, not the tokenizer's own."""

    def __init__(self, tokenizer):
        with tokenizer.get_dict_file() as f:
            content = f.read().decode("utf-8")
        fields = content.split()
        if len(fields) % 3:
            raise ValueError("the tokenizer's dictionary does not hold three fields (word, frequency, tag) per line")
        self.tokenizer = tokenizer
        self._words, self._freqs, self._tags = fields[0::3], fields[1::3], fields[2::3]
        tokenizer.FREQ = {}
        # jieba's gen_pfdict: the sum over every line (a word listed twice counts twice)
        tokenizer.total = sum(map(int, self._freqs))
        tokenizer.initialized = True
        self.tags: dict[str, str] = {}  # word → tag: the admitted dictionary words and the added ones
        self._added: set[str] = set()  # words of add_word: their frequency stands
        self._tagged: set[str] = set()  # words of add_word with a tag: their tag stands
        self._seen: set[str] = set()
        codes = np.frombuffer("".join(self._words).encode("utf-32-le"), dtype=np.uint32)
        lengths = np.fromiter(map(len, self._words), dtype=np.int64, count=len(self._words))
        self._word_of = np.repeat(np.arange(len(self._words)), lengths)
        self._order = np.argsort(codes, kind="stable")
        self._sorted_codes = codes[self._order]
        # characters of each word not met yet (a repeated character counts as often as it occurs)
        self._missing = lengths
        self._tagged_blocks: dict[str, list[tuple[str, str]]] = {}  # block → its (word, tag) (``tagged``)

    def add_word(self, word: str, freq: int, tag: str | None = None) -> None:
        """``tokenizer.add_word``: the word's frequency and tag stand over the dictionary's."""
        self.tokenizer.add_word(word, freq=freq, tag=tag)
        self._added.add(word)
        if tag:
            self.tags[word] = tag
            self._tagged.add(word)

    def admit(self, text: str) -> None:
        """Put the dictionary words all of whose characters the texts met so far into the
        tokenizer, with their prefixes and tags (in file order: a word listed twice takes the last)."""
        new = set(text).difference(self._seen)
        if not new:
            return
        self._seen |= new
        chars = np.array(sorted(map(ord, new)), dtype=np.uint32)
        starts = np.searchsorted(self._sorted_codes, chars, side="left")
        ends = np.searchsorted(self._sorted_codes, chars, side="right")
        positions = np.concatenate([self._order[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
        if not len(positions):
            return
        touched = self._word_of[positions]
        np.subtract.at(self._missing, touched, 1)
        ready = np.unique(touched[self._missing[touched] == 0])
        freq, words, tags = self.tokenizer.FREQ, self._words, self._tags
        for i in ready.tolist():
            word = words[i]
            if word not in self._added:
                freq[word] = int(self._freqs[i])
            if word not in self._tagged:
                self.tags[word] = tags[i]
            for k in range(1, len(word)):
                freq.setdefault(word[:k], 0)

    def tagged(self, text: str) -> list[tuple[str, str]]:
        """(word, tag) of the words of the text's Chinese runs, in order, as the tagger cuts them
        without its HMM (a word outside the dictionary is tagged x)."""
        self.admit(text)
        known = self._tagged_blocks
        if len(known) > MAX_BLOCKS:
            known.clear()
        found: list[tuple[str, str]] = []
        for block in _BLOCK.split(text):
            if _BLOCK.match(block):
                words = known.get(block)
                if words is None:
                    words = known[block] = self._tag_block(block)
                found += words
        return found

    def _tag_block(self, block: str) -> list[tuple[str, str]]:
        tokenizer, tags = self.tokenizer, self.tags
        route: dict = {}
        tokenizer.calc(block, tokenizer.get_DAG(block), route)
        found = []
        x, end = 0, len(block)
        while x < end:
            y = route[x][1] + 1
            word = block[x:y]
            if not _SINGLE_ENG.match(word):
                found.append((word, tags.get(word, "x")))
            x = y
        return found
