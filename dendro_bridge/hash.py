"""The job-definition hash of the Dendro service, computed as its Node code does.

SHA-1 of deterministic JSON of the definition, after sorting input files, output files
and parameters by name with JavaScript's `localeCompare`: ICU's collation for the default
locale (`en-US`, the same as ICU's root collation), tertiary strength, canonical
equivalence on.  Python's `sorted` gives another order.

The sort key comes from ICU itself (PyICU, with ICU bundled, from the `icukit-pyicu`
package), so the order is current ICU's, as in a current Node.  Where that package cannot
be installed, pyuca's Unicode Collation Algorithm is the fallback: its table is older
(Unicode 9 on Python 3.11), so it agrees on ASCII names but not on every character
(`collation()` says which is in use).
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dendro_bridge.jsjson import stringify_sorted
from dendro_bridge.model import DendroJobDefinition

_SORTED_LISTS = ("inputFiles", "outputFiles", "parameters")
_local = threading.local()


@dataclass(frozen=True)
class _Collation:
    sort_key: Callable[[str], Any]
    version: str  # what `collation()` says


def _icu() -> _Collation | None:
    try:
        import icu
    except ImportError:
        return None

    def collator() -> Any:
        # One collator per thread: the service computes hashes on several request threads.
        c = getattr(_local, "collator", None)
        if c is None:
            c = icu.Collator.createInstance(icu.Locale("en_US"))
            c.setAttribute(icu.UCollAttribute.NORMALIZATION_MODE, icu.UCollAttributeValue.ON)
            _local.collator = c
        return c

    def key(name: str) -> bytes:
        sort_key: bytes = collator().getSortKey(name)
        return sort_key

    return _Collation(key, f"ICU {icu.ICU_VERSION} (Unicode {icu.UNICODE_VERSION})")


@lru_cache(maxsize=1)
def _collation() -> _Collation:
    found = _icu()
    if found is not None:
        return found
    import pyuca

    collator = pyuca.Collator()  # loads the collation table once (~0.3 s)
    return _Collation(collator.sort_key, f"pyuca (UCA {collator.UCA_VERSION} table)")


def collation() -> str:
    """Which collation the hash uses: 'ICU <version> (Unicode <version>)' or pyuca's."""
    return _collation().version


def locale_compare_key(name: str) -> Any:
    """Sort key equivalent to JavaScript `a.localeCompare(b)` in Node."""
    return _collation().sort_key(name)


def canonical_definition(definition: DendroJobDefinition | dict[str, Any]) -> dict[str, Any]:
    """The definition as hashed: wire form with the three lists sorted by name (stable sort)."""
    wire = definition.to_wire() if isinstance(definition, DendroJobDefinition) else dict(definition)
    for key in _SORTED_LISTS:
        if key in wire:
            wire[key] = sorted(wire[key], key=lambda item: locale_compare_key(item["name"]))
    return wire


def job_definition_hash(definition: DendroJobDefinition | dict[str, Any]) -> str:
    """Hex SHA-1 of a job definition, as the service computes `jobDefinitionHash`."""
    text = stringify_sorted(canonical_definition(definition))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
