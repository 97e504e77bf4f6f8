"""Dendro job model, exact job-definition hash, HTTP client, self-hosted service and compute
resource.  Usable on its own: `from dendro_bridge import submit_job, DendroJobDefinition, ...`.

pairio, the prototype of Dendro, is supported too: `Pairio*` names are aliases, and
`PAIRIO_API_URL` / `PAIRIO_API_KEY` are read when the `DENDRO_*` variables are unset.
"""
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

__all__ = [
    "DendroApiError", "DendroClient", "DendroClientError", "DendroJob", "DendroJobDefinition", "DendroJobInputFile",
    "DendroJobOutputFile", "DendroJobParameter", "DendroJobRequiredResources", "PairioJob", "PairioJobDefinition",
    "PairioJobInputFile", "PairioJobOutputFile", "PairioJobParameter", "PairioJobRequiredResources",
    "SpecialJobOutput", "ValidationError", "find_jobs", "job_definition_hash", "submit_job",
]
