"""The Dendro executor's descriptor: the service, app and processor of a task, its job id as
its handle; Dendro tasks are submitted ahead of their upstream jobs' end, and the service
fails them when one of those fails."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drypipe.plugins import ExecutorPlugin, handle_from_json

if TYPE_CHECKING:
    from drypipe.task_record import TaskRecord

RECORD_FILE = "dendro_job"  # the task's Dendro job (executors/dendro_jobs.py)


@dataclass
class DendroSettings:
    dendro_service: str | None = field(default=None, metadata={"help": "the Dendro service (its name)"})
    dendro_app: str | None = field(default=None, metadata={"help": "the Dendro app that runs the task"})
    dendro_processor: str | None = field(default=None, metadata={"help": "the app's processor"})
    required_resources: dict[str, Any] | None = field(default=None, metadata={
        "help": "the job's resources: numCpus, numGpus, memoryGb, timeSec (default 1, 0, 4, 3600)"})


def job_handle(record: TaskRecord) -> str | None:
    return handle_from_json(record, RECORD_FILE, "job_id")


def cache_origin(record: TaskRecord) -> str | None:
    """A task whose job the service found in its cache (it did not run again)."""
    try:
        job = json.loads(record.path(RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return f"from Dendro cache, job {job['job_id']}" if isinstance(job, dict) and job.get("cache_hit") else None


PLUGIN: ExecutorPlugin[DendroSettings] = ExecutorPlugin(
    name="dendro",
    executor="executors.dendro:DendroExecutor",
    settings=DendroSettings,
    handle=job_handle,
    origin=cache_origin,
    submits_ahead=True,
)
