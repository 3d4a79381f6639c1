"""Plain-text tables for the terminal, aligned for Chinese text."""
from __future__ import annotations

from typing import Sequence


def display_width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(c) > 0x2E7F else 1 for c in text)


def text_table(rows: Sequence[Sequence]) -> str:
    """The first row is the header; a rule goes under it."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c + " " * (w - display_width(c)) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "-" * max(display_width(line) for line in lines))
    return "\n".join(lines)
