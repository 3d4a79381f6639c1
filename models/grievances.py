"""Kinds of grievance: what an event complains about, in the words a topic title uses.

The vocabulary is data (``grievances`` in schemas/topics.yaml): per domain, a phrase such as
``逾期交房`` or ``婚姻家庭纠纷`` with the words that say it in a work order ("延期交付", "老公").
An event takes the phrase of the longest of those words its text contains, so "养猪场污水" is
``养殖污染`` (养猪场) rather than ``污水直排`` (污水), and two events that say the same thing in
different words share one phrase.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

from models.patterns import longest_first


class GrievanceVocabulary:
    """Phrase of an event's grievance, per domain."""

    def __init__(self, lexicon: Mapping):
        self._terms: dict[str, list[tuple[str, str]]] = {}
        for domain, entries in (lexicon.get("grievances") or {}).items():
            ordered = []
            for order, entry in enumerate(entries):
                for term in entry["terms"]:
                    ordered.append((-len(term), order, str(term), entry["phrase"]))
            self._terms[domain] = [(term, phrase) for _, _, term, phrase in sorted(ordered)]
        # each domain's terms as one pattern, and each term's place in the order above (its first)
        self._patterns: dict[str, tuple[re.Pattern, dict[str, int]]] = {}
        for domain, terms in self._terms.items():
            rank: dict[str, int] = {}
            for i, (term, _) in enumerate(terms):
                rank.setdefault(term, i)
            if rank:
                self._patterns[domain] = (re.compile(longest_first(rank)), rank)

    def phrase(self, domain: str, text: str) -> str | None:
        """The grievance phrase of a text of this domain, or None when it names none: that of the
        first of the domain's terms, longest first, that the text holds.

        Found by a pattern giving, at every place of the text where a term starts, the longest
        term starting there, rather than by looking for each term in turn (some fifty per text):
        the first term held is among those given, since a longer one starting at its place would
        come before it."""
        found = self._patterns.get(domain)
        if found is None:
            return None
        pattern, rank = found
        first, place = None, 0
        while place <= len(text) and (m := pattern.search(text, place)) is not None:
            i = rank[m.group()]
            if first is None or i < first:
                first = i
            place = m.start() + 1
        return None if first is None else self._terms[domain][first][1]

    def phrases(self, domain: str) -> set[str]:
        return {phrase for _, phrase in self._terms.get(domain, ())}

    def terms(self) -> Iterable[str]:
        """Every term of every domain (so the tokenizer keeps them whole)."""
        return {term for terms in self._terms.values() for term, _ in terms}
