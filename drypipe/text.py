"""Small pieces of the text drypipe shows users."""
from __future__ import annotations

from collections.abc import Sequence


def first_of(names: Sequence[str], most: int = 5, empty: str = "") -> str:
    """`a, b and 3 more`: the first `most` names, and how many others there are (`empty` for none)."""
    if not names:
        return empty
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def plural(count: int, one: str, many: str | None = None) -> str:
    """`1 task`, `2 tasks`: the count and the word in agreement (`many`: when not `one` + s)."""
    return f"{count} {one if count == 1 else many or one + 's'}"
