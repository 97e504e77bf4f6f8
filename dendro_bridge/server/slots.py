"""Compute slots: which runnable jobs fit a compute client beside the jobs it already runs.

A slot has the service's fields and no others: `numCpus`, `numGpus`, `memoryGb`, `timeSec`
(maximums), `minNumCpus`, `minNumGpus`, `minMemoryGb`, `minTimeSec` and `multiplicity`.
"""
from __future__ import annotations

from typing import Any

RESOURCES = ("numCpus", "numGpus", "memoryGb", "timeSec")
# The hosted service's default: one slot of 4 CPUs, 0 GPUs, 8 GB, 3600 s.
DEFAULT_SLOT = {
    "numCpus": 4, "numGpus": 0, "memoryGb": 8, "timeSec": 3600,
    "minNumCpus": 0, "minNumGpus": 0, "minMemoryGb": 0, "minTimeSec": 0, "multiplicity": 1,
}
SLOT_KEYS = frozenset(DEFAULT_SLOT)


def _min_key(resource: str) -> str:
    return f"min{resource[0].upper()}{resource[1:]}"


# Names that earlier versions of this service stored (`numCpusMax`, `numCpusMin` ...).
_LEGACY_KEYS = {**{f"{r}Max": r for r in RESOURCES}, **{f"{r}Min": _min_key(r) for r in RESOURCES}}


def upgrade_slot(slot: dict[str, Any]) -> dict[str, Any]:
    """A slot with the service's field names, from one that may use the legacy names."""
    return {_LEGACY_KEYS.get(k, k): v for k, v in slot.items()}


def check_slot(slot: Any) -> dict[str, Any]:
    """A complete slot (missing keys take the default); raises ValueError when invalid.
    The legacy names are accepted and stored under the service's names."""
    if isinstance(slot, dict):
        slot = upgrade_slot(slot)
    if not isinstance(slot, dict) or set(slot) - SLOT_KEYS:
        raise ValueError(f"a compute slot takes only {', '.join(sorted(SLOT_KEYS))}")
    full = {**DEFAULT_SLOT, **slot}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in full.values()):
        raise ValueError("compute slot values must be non-negative numbers")
    if not isinstance(full["multiplicity"], int) or full["multiplicity"] < 1:
        raise ValueError("a compute slot's multiplicity must be a positive integer")
    return full


def _fits(slot: dict[str, Any], required: dict[str, Any]) -> bool:
    return all(slot[_min_key(r)] <= required[r] <= slot[r] for r in RESOURCES)


class SlotPool:
    """Greedy assignment of jobs to slots: a job takes the first fitting slot with room."""

    def __init__(self, slots: list[dict[str, Any]]):
        self.slots = [{**DEFAULT_SLOT, **upgrade_slot(s)} for s in slots]
        self.free = [s["multiplicity"] or 1 for s in self.slots]

    def take(self, required: dict[str, Any]) -> bool:
        for i, slot in enumerate(self.slots):
            if self.free[i] > 0 and _fits(slot, required):
                self.free[i] -= 1
                return True
        return False


def select_jobs(slots: list[dict[str, Any]], running: list[dict[str, Any]],
                candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates that fit in the slots left over by the running jobs, in order."""
    pool = SlotPool(slots)
    for job in running:
        pool.take(job["requiredResources"])
    return [job for job in candidates if pool.take(job["requiredResources"])]
