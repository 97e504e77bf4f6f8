"""The job-definition hash of the Dendro service, computed as its Node code does.

SHA-1 of deterministic JSON of the definition, after sorting input files, output files
and parameters by name with JavaScript's `localeCompare` (ICU root collation).  pyuca's
Unicode Collation Algorithm reproduces that order; Python's `sorted` does not.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import pyuca

from dendro_bridge.jsjson import stringify_sorted
from dendro_bridge.model import DendroJobDefinition

_SORTED_LISTS = ("inputFiles", "outputFiles", "parameters")


@lru_cache(maxsize=1)
def _collator() -> pyuca.Collator:
    return pyuca.Collator()  # loads the collation table once (~0.3 s)


def locale_compare_key(name: str) -> tuple:
    """Sort key equivalent to JavaScript `a.localeCompare(b)` in Node."""
    return _collator().sort_key(name)


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
