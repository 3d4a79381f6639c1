"""Kinds of grievance: what an event complains about, in the words a topic title uses.

The vocabulary is data (``grievances`` in schemas/topics.yaml): per domain, a phrase such as
``逾期交房`` or ``婚姻家庭纠纷`` with the words that say it in a work order ("延期交付", "老公").
An event takes the phrase of the longest of those words its text contains, so "养猪场污水" is
``养殖污染`` (养猪场) rather than ``污水直排`` (污水), and two events that say the same thing in
different words share one phrase.
"""
from __future__ import annotations

from typing import Iterable, Mapping


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

    def phrase(self, domain: str, text: str) -> str | None:
        """The grievance phrase of a text of this domain, or None when it names none."""
        for term, phrase in self._terms.get(domain, ()):
            if term in text:
                return phrase
        return None

    def phrases(self, domain: str) -> set[str]:
        return {phrase for _, phrase in self._terms.get(domain, ())}

    def terms(self) -> Iterable[str]:
        """Every term of every domain (so the tokenizer keeps them whole)."""
        return {term for terms in self._terms.values() for term, _ in terms}
