"""Helpers of the Dendro executor: its settings, the per-task job record, the store that
publishes local input files, and the mapping of a task (its task-conf.json) to a Dendro job
definition.

The mapping (docs/dendro.md, "Running drypipe tasks on Dendro"):

- file input    -> input file; url = the upstream Dendro job's output URL when a Dendro task
                   produces it, else the file is published to the input store
- value / var   -> parameter, with the declared type (int, float, str, bool)
- file output   -> output file (fileBaseName = the declared file's name)
- var outputs   -> one more output file, `output_vars` (`output_vars.json`): a JSON object the
                   processor writes, {"name": value, ...}
"""
from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dendro_bridge import (
    DendroJobDefinition,
    DendroJobInputFile,
    DendroJobOutputFile,
    DendroJobParameter,
    DendroJobRequiredResources,
    SpecialJobOutput,
)
from dendro_bridge.api import env_setting, resolve_api_url
from drypipe import state as st
from drypipe.digests import file_sha256
from drypipe.errors import UserError
from drypipe.instance import write_atomic
from drypipe.plugins import setting_owner
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from drypipe.values import parse_var
from executors.dendro_plugin import PLUGIN, RECORD_FILE

# The Dendro output that carries a task's output variables, and its file name.
OUTPUT_VARS_OUTPUT = "output_vars"
OUTPUT_VARS_FILE = "output_vars.json"
# Record statuses after which launching the task again asks the service for a new job.
FAILED_STATUSES = ("failed", "killed")

STORE_ENV = "DRYPIPE_DENDRO_STORE"
STORE_PUBLIC_URL_ENV = "DRYPIPE_DENDRO_STORE_PUBLIC_URL"
DEFAULT_RESOURCES = {"numCpus": 1, "numGpus": 0, "memoryGb": 4, "timeSec": 3600}
_RESOURCE_ALIASES = {"num_cpus": "numCpus", "num_gpus": "numGpus", "memory_gb": "memoryGb", "time_sec": "timeSec"}
OPTION_KEYS = {
    "api_url": "service URL (default: env DENDRO_API_URL)",
    "api_key": "user API key (default: env DENDRO_API_KEY; prefer the env var: options are written to task-conf.json)",
    "store": f"fsspec URL where local input files are published (default: env {STORE_ENV})",
    "store_public_url": f"URL prefix under which compute resources read the store (env {STORE_PUBLIC_URL_ENV})",
    "presubmit": "submit the task as soon as its upstream Dendro jobs are submitted (default true)",
    "skip_cache": "always create a new job", "rerun_failing": "a cached failed job is run again",
    "delete_failing": "like rerun_failing, and delete the failed job",
    "target_compute_client_ids": "compute clients that may run the job (default any)",
    "cache_bust": "a salt of the job definition (a new value gives new jobs)",
    "tags": "extra job tags",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class NotReady(Exception):
    """An input of the task is not known yet (its producer has not completed or been submitted)."""


# -- settings -----------------------------------------------------------------------------------

@dataclass
class Settings:
    api_url: str
    api_key: str | None
    service: str
    app: str
    processor: str
    resources: DendroJobRequiredResources
    store: str | None = None
    store_public_url: str | None = None
    presubmit: bool = True
    skip_cache: bool = False
    rerun_failing: bool = False
    delete_failing: bool = False
    targets: list[str] | None = None
    cache_bust: str | None = None
    tags: list[str] = field(default_factory=list)


def settings_of(key: str, task_conf: dict[str, Any], run_options: dict[str, Any]) -> Settings:
    """The plugin's settings (dendro_service ...), then TaskConf.executor_options, then run-wide
    options, then env vars.  `task_conf`: the task_conf of task-conf.json."""
    def fail(message: str) -> UserError:
        return UserError(f"task {key}: TaskConf(executer_type='dendro'): {message}")

    conf = TaskConf.from_dict(task_conf)
    dendro = PLUGIN.settings_of(conf, key)
    service, app, processor = dendro.dendro_service, dendro.dendro_app, dendro.dendro_processor
    if not (service and app and processor):
        missing = [f for f, v in (("dendro_service", service), ("dendro_app", app), ("dendro_processor", processor))
                   if not v]
        raise fail(f"{', '.join(missing)} must be set")
    # The free-form options: those no plugin declares as a setting.
    own = {name: value for name, value in conf.executor_options.items() if setting_owner(name) is None}
    options = {**run_options, **own}
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise fail(f"unknown executor_options {', '.join(unknown)} (known: {', '.join(OPTION_KEYS)})")
    resources = dict(DEFAULT_RESOURCES)
    for name, value in (dendro.required_resources or {}).items():
        name = _RESOURCE_ALIASES.get(name, name)
        if name not in DEFAULT_RESOURCES:
            raise fail(f"unknown required_resources key {name!r} (use {', '.join(DEFAULT_RESOURCES)})")
        resources[name] = value
    try:
        required = DendroJobRequiredResources(**resources)
    except (TypeError, ValueError) as e:
        raise fail(f"required_resources: {e}") from None
    targets = options.get("target_compute_client_ids")
    tags = options.get("tags") or []
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise fail("executor_options target_compute_client_ids must be a list of strings")
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise fail("executor_options tags must be a list of strings")
    return Settings(
        api_url=resolve_api_url(options.get("api_url")),
        api_key=options.get("api_key") or env_setting("API_KEY"),
        service=service, app=app, processor=processor,
        resources=required,
        store=options.get("store") or os.environ.get(STORE_ENV) or None,
        store_public_url=options.get("store_public_url") or os.environ.get(STORE_PUBLIC_URL_ENV) or None,
        presubmit=bool(options.get("presubmit", True)),
        skip_cache=bool(options.get("skip_cache", False)),
        rerun_failing=bool(options.get("rerun_failing", False)),
        delete_failing=bool(options.get("delete_failing", False)),
        targets=targets, cache_bust=options.get("cache_bust"), tags=list(tags))


# -- the per-task record ----------------------------------------------------------------------------

def read_record(control_dir: Path) -> dict[str, Any] | None:
    """`.drypipe/<key>/dendro_job`: the task's Dendro job (id, definition hash, output URLs ...)."""
    try:
        record = json.loads((control_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("job_id") else None


def write_record(control_dir: Path, record: dict[str, Any]) -> None:
    write_atomic(control_dir / RECORD_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")


# -- the input store ----------------------------------------------------------------------------

def safe_base_name(path: str) -> str:
    """A file name usable as a Dendro fileBaseName (a URL path segment)."""
    name = _UNSAFE.sub("_", os.path.basename(path)) or "file"
    return name if name[0].isalnum() or name[0] == "_" else "_" + name


class InputStore:
    """Publishes local files content-addressed, `<store>/<sha256>/<file name>`, so that the
    same file gives the same URL (and so the same job definition) in every instance."""

    def __init__(self, url: str, public_url: str | None = None):
        import fsspec

        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise UserError(f"dendro input store {url}: {e}") from e
        self.root = self.root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if public_url:
            self.public_url = public_url.rstrip("/")
        elif "file" in protocols or "local" in protocols:
            self.public_url = Path(self.root).as_uri()
        else:
            self.public_url = url.rstrip("/")
        self._digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime, inode) -> sha256

    def publish(self, path: Path) -> str:
        stat = path.stat()
        stamp = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        digest = self._digests.get(stamp) or file_sha256(path)
        self._digests[stamp] = digest
        key = f"{digest}/{safe_base_name(path.name)}"
        target = f"{self.root}/{key}"
        if not self.fs.exists(target):  # write once: a temporary name, then a move
            self.fs.makedirs(f"{self.root}/{digest}", exist_ok=True)
            tmp = f"{self.root}/{digest}/.upload-{uuid.uuid4().hex}"
            self.fs.put_file(str(path), tmp)
            self.fs.mv(tmp, target)
        return f"{self.public_url}/{key}"


# -- task -> job definition -------------------------------------------------------------------------

@dataclass
class JobSpec:
    """What the executor submits for one task."""

    definition: DendroJobDefinition  # inputs from upstream jobs are SpecialJobOutput references
    plain: DendroJobDefinition  # the same, with plain URLs (what the service hashes)
    var_outputs: list[str]


def plain_definition(definition: DendroJobDefinition) -> DendroJobDefinition:
    return replace(definition, inputFiles=[
        replace(i, url=i.url.url) if isinstance(i.url, SpecialJobOutput) else i for i in definition.inputFiles])


class Mapper:
    """Builds the job definition of a task from its task-conf.json document.

    `upstream_job(key)` gives the current record of an upstream Dendro task (or None), and
    `store()` the input store; both are the executor's."""

    def __init__(self, root: Path, upstream_job: Callable[[str], dict[str, Any] | None],
                 store: Callable[[], InputStore]):
        self.root = root
        self.upstream_job = upstream_job
        self.store = store

    def control_dir(self, key: str) -> Path:
        return self.root / ".drypipe" / key

    def spec(self, key: str, doc: dict[str, Any], settings: Settings) -> JobSpec:
        inputs: list[DendroJobInputFile] = []
        parameters: list[DendroJobParameter] = []
        for item in doc["inputs"]:
            name, kind = item["name"], item["kind"]
            if kind == "value":
                parameters.append(DendroJobParameter(name=name, value=parse_var(item["value"], item["type"])))
            elif kind == "var":
                parameters.append(DendroJobParameter(name=name, value=self._variable(key, item)))
            elif kind == "file":
                inputs.append(self._input_file(key, item))
            else:
                raise UserError(f"task {key}: input {name!r} is a glob; a Dendro job takes single files as inputs")
        outputs: list[DendroJobOutputFile] = []
        var_outputs: list[str] = []
        for item in doc["outputs"]:
            if item["kind"] == "file":
                outputs.append(DendroJobOutputFile(name=item["name"], fileBaseName=safe_base_name(item["path"])))
            elif item["kind"] == "var":
                var_outputs.append(item["name"])
            else:
                raise UserError(f"task {key}: output {item['name']!r} is a fileset; "
                                "a Dendro job has named output files")
        if var_outputs:
            if any(o.name == OUTPUT_VARS_OUTPUT for o in outputs):
                raise UserError(f"task {key}: output {OUTPUT_VARS_OUTPUT!r} is reserved for output variables")
            outputs.append(DendroJobOutputFile(name=OUTPUT_VARS_OUTPUT, fileBaseName=OUTPUT_VARS_FILE))
        definition = DendroJobDefinition(appName=settings.app, processorName=settings.processor, inputFiles=inputs,
                                         outputFiles=outputs, parameters=parameters, cacheBust=settings.cache_bust)
        return JobSpec(definition, plain_definition(definition), var_outputs)

    def _variable(self, key: str, item: dict[str, Any]) -> Any:
        upstream = item["upstream"]
        if st.read_state(str(self.control_dir(upstream))) != st.COMPLETED:
            raise NotReady(f"input {item['name']!r} is a variable of task {upstream}, which has not completed")
        values = TaskRecord(self.root, upstream).output_vars()
        if item["output"] not in values:
            raise UserError(f"task {key}: upstream task {upstream} has no output variable {item['output']!r}")
        return parse_var(values[item["output"]], item["type"])

    def _input_file(self, key: str, item: dict[str, Any]) -> DendroJobInputFile:
        name, path, upstream = item["name"], item["path"], item.get("upstream")
        base = safe_base_name(path)
        if upstream:
            output = self._dendro_output(upstream, path)
            if output is not None:
                record = self.upstream_job(upstream)
                if record is not None and output in record.get("outputs", {}):
                    ref = SpecialJobOutput(job_id=record["job_id"], output_name=output, url=record["outputs"][output])
                    return DendroJobInputFile(name=name, fileBaseName=base, url=ref)
            if st.read_state(str(self.control_dir(upstream))) != st.COMPLETED:
                raise NotReady(f"input {name!r} is a file of task {upstream}, which has not completed")
        local = Path(path) if os.path.isabs(path) else self.root / path
        if not local.is_file():
            raise UserError(f"task {key}: input {name!r}: no file {local}")
        return DendroJobInputFile(name=name, fileBaseName=base, url=self.store().publish(local))

    def _dendro_output(self, upstream: str, path: str) -> str | None:
        """The output name of a Dendro task `upstream` whose declared file is `path`."""
        try:
            doc = TaskRecord(self.root, upstream).conf_document()
        except UserError:
            return None
        if (doc.get("task_conf") or {}).get("executer_type") != "dendro":
            return None
        relative = os.path.relpath(path, f"output/{upstream}")
        return next((o["name"] for o in doc["outputs"] if o["kind"] == "file" and o["path"] == relative), None)
