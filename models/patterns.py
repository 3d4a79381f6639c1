"""Regular expressions over many words, for the lexicons' place suffixes, village names and
grievance terms."""
from __future__ import annotations

import re
from typing import Iterable, Mapping


def longest_first(words: Iterable[str], after: Mapping[str, str] | None = None) -> str:
    """A regular expression matching, at each position, the longest of ``words`` that starts there
    and is followed by what its pattern in ``after`` allows (a lookahead): what their alternation,
    sorted longest first, matches. Written as a trie, since a flat alternation of a county's hundreds
    of village names or name boundaries is tried word by word at every character of every text."""
    after = after or {}
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = word

    def pattern(node: dict) -> str:
        # the longer words first, then the word that ends here (the empty branch when nothing follows it)
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:
            branches.append(after.get(node[""], ""))
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return pattern(trie)
