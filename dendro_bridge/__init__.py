"""Dendro job model, exact job-definition hash, HTTP client, self-hosted service and compute
resource.  Usable on its own: `from dendro_bridge import submit_job, DendroJobDefinition, ...`.

pairio, the prototype of Dendro, is supported too: `Pairio*` names are aliases, and
`PAIRIO_API_URL` / `PAIRIO_API_KEY` are read when the `DENDRO_*` variables are unset.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports are imported on first use: `drypipe` reads dendro_bridge.commands (its `dendro`
# command's one-line help) on every run, and must not load the HTTP client for that.
_EXPORTS = {
    "DendroApiError": "api",
    **dict.fromkeys(["DendroClient", "DendroClientError", "DendroJob", "find_jobs", "submit_job"], "client"),
    "job_definition_hash": "hash",
    **dict.fromkeys([
        "DendroJobDefinition", "DendroJobInputFile", "DendroJobOutputFile", "DendroJobParameter",
        "DendroJobRequiredResources", "PairioJobDefinition", "PairioJobInputFile", "PairioJobOutputFile",
        "PairioJobParameter", "PairioJobRequiredResources", "SpecialJobOutput", "ValidationError",
    ], "model"),
}
_ALIASES = {"PairioJob": "DendroJob"}

if TYPE_CHECKING:
    from dendro_bridge.api import DendroApiError
    from dendro_bridge.client import DendroClient, DendroClientError, DendroJob, find_jobs, submit_job
    from dendro_bridge.hash import job_definition_hash
    from dendro_bridge.model import (
        DendroJobDefinition,
        DendroJobInputFile,
        DendroJobOutputFile,
        DendroJobParameter,
        DendroJobRequiredResources,
        PairioJobDefinition,
        PairioJobInputFile,
        PairioJobOutputFile,
        PairioJobParameter,
        PairioJobRequiredResources,
        SpecialJobOutput,
        ValidationError,
    )

    PairioJob = DendroJob


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(_ALIASES.get(name, name))
    if module is None:
        raise AttributeError(f"module 'dendro_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dendro_bridge.{module}"), _ALIASES.get(name, name))
    globals()[name] = value
    return value


__all__ = [
    "DendroApiError", "DendroClient", "DendroClientError", "DendroJob", "DendroJobDefinition", "DendroJobInputFile",
    "DendroJobOutputFile", "DendroJobParameter", "DendroJobRequiredResources", "PairioJob", "PairioJobDefinition",
    "PairioJobInputFile", "PairioJobOutputFile", "PairioJobParameter", "PairioJobRequiredResources",
    "SpecialJobOutput", "ValidationError", "find_jobs", "job_definition_hash", "submit_job",
]
