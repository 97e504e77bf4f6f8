"""Runs one claimed job in its own working directory and reports the outcome to the service.

`files` processors are driven from here: inputs are downloaded, the command runs, outputs
and console output are uploaded, and the status is set.  `dendro-sdk` processors report
for themselves; here they only get the environment the Dendro SDK expects, a time limit,
and a final status if they exit without setting one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dendro_bridge.api import redact_signed_urls
from dendro_bridge.appspec import find_processor
from dendro_bridge.compute.api import ComputeApi
from dendro_bridge.compute.runner import ProcessorCommand, ProcessorRunner, RunOutcome

log = logging.getLogger("dendro_bridge.compute")
_ERROR_TAIL_CHARS = 500


@dataclass
class LocalApp:
    """An app this compute resource can run: its normalized spec and the spec file's folder."""

    spec: dict[str, Any]
    app_dir: Path

    def processor(self, name: str) -> dict[str, Any] | None:
        return find_processor(self.spec, name)


@dataclass
class JobRun:
    job: dict[str, Any]
    app: LocalApp
    work_dir: Path
    api: ComputeApi
    runner: ProcessorRunner
    cancel: threading.Event
    keep_work_dir: bool = False

    @property
    def job_id(self) -> str:
        job_id: str = self.job["jobId"]
        return job_id

    @property
    def console_path(self) -> Path:
        return self.work_dir / "console_output.txt"


def run_job(run: JobRun) -> None:
    """Never raises: any error becomes the job's failure message."""
    processor = run.app.processor(run.job["jobDefinition"]["processorName"])
    run.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        if processor is None:
            raise RuntimeError(f"processor {run.job['jobDefinition']['processorName']} is not in the local app spec")
        if processor["protocol"] == "dendro-sdk":
            _run_sdk_processor(run, processor)
        else:
            _run_files_processor(run, processor)
    except Exception as e:  # noqa: BLE001 - reported to the service as the job's error
        _report_failure(run, f"{type(e).__name__}: {e}")
    finally:
        if not run.keep_work_dir:
            shutil.rmtree(run.work_dir, ignore_errors=True)


def _base_env(run: JobRun, processor: dict[str, Any]) -> dict[str, str]:
    """The variables the Dendro compute client gives a job's container."""
    return {
        **os.environ,
        "JOB_ID": run.job_id, "JOB_PRIVATE_KEY": run.job["jobPrivateKey"],
        "COMPUTE_CLIENT_ID": run.api.client_id, "PROCESSOR_EXECUTABLE": processor["executable"],
        "DENDRO_API_URL": run.api.base_url,
        "JOB_TIMEOUT_SEC": str(math.ceil(run.job["requiredResources"]["timeSec"])),  # the SDK parses an int
        "DENDRO_JOB_WORKING_DIR": str(run.work_dir), "DENDRO_JOB_CLEANUP_DIR": str(run.work_dir / "cleanup"),
    }


def _execute(run: JobRun, argv: list[str], env: dict[str, str]) -> RunOutcome:
    command = ProcessorCommand(argv=argv, cwd=run.work_dir, env=env, console_path=run.console_path,
                               timeout_sec=float(run.job["requiredResources"]["timeSec"]),
                               required_resources=run.job["requiredResources"])
    return run.runner.run(command, run.cancel)


def is_safe_path_part(value: Any) -> bool:
    """One file or folder name: no separators, no NUL, not '', '.' or '..' (so not absolute)."""
    return isinstance(value, str) and value not in ("", ".", "..") and not any(c in value for c in "/\\\0")


def job_file_path(work_dir: Path, kind: str, file: dict[str, Any]) -> Path:
    """`work_dir/<kind>/<name>/<fileBaseName>` of an input or output file. The names come
    from the service, so they are untrusted: a name that would leave the job's directory
    is refused."""
    for key in ("name", "fileBaseName"):
        if not is_safe_path_part(file.get(key)):
            raise ValueError(f"refusing {kind[:-1]} file with unsafe {key} {file.get(key)!r}")
    return work_dir / kind / str(file["name"]) / str(file["fileBaseName"])


def _run_files_processor(run: JobRun, processor: dict[str, Any]) -> None:
    run.api.set_status(run.job, "running")
    definition = run.job["jobDefinition"]
    # Every path is checked before anything is written.
    input_paths = [(inp, job_file_path(run.work_dir, "inputs", inp)) for inp in definition["inputFiles"]]
    output_paths = {out["name"]: job_file_path(run.work_dir, "outputs", out) for out in definition["outputFiles"]}
    inputs: dict[str, str] = {}
    for inp, path in input_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        run.api.download(run.job, inp["url"], str(path))
        inputs[inp["name"]] = str(path)
    outputs: dict[str, str] = {}
    for name, path in output_paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        outputs[name] = str(path)
    parameters = {p["name"]: p["defaultValue"] for p in processor["parameters"] if "defaultValue" in p}
    parameters.update({p["name"]: p.get("value") for p in definition["parameters"]})
    job_file = run.work_dir / "dendro-job.json"
    job_file.write_text(json.dumps({"jobId": run.job_id, "appName": definition["appName"],
                                    "processorName": definition["processorName"], "inputs": inputs,
                                    "outputs": outputs, "parameters": parameters}, indent=2))
    as_text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parameters.items()}
    try:
        argv = [arg.format(python=sys.executable, app_dir=run.app.app_dir, inputs=inputs, outputs=outputs,
                           parameters=as_text, job_file=job_file) for arg in processor["command"]]
    except (KeyError, IndexError, ValueError) as e:
        raise RuntimeError(f"cannot fill in the command of processor {processor['name']}: {e!r}") from e
    env = {**_base_env(run, processor), "DENDRO_JOB_FILE": str(job_file)}

    outcome = _execute(run, argv, env)
    if outcome.canceled:
        _fail_if_still_active(run, "stopped by the compute resource")
        return
    if outcome.succeeded:
        missing = [name for name, path in outputs.items() if not os.path.isfile(path)]
        if missing:
            raise RuntimeError(f"processor did not write output {missing[0]!r} ({outputs[missing[0]]})")
        for name, written in outputs.items():
            run.api.upload(run.job, written, "output", output_name=name)
        _upload_console(run)
        run.api.set_status(run.job, "completed")
        log.info("job %s completed", run.job_id)
    else:
        _report_failure(run, _failure_message(run, outcome))


def _run_sdk_processor(run: JobRun, processor: dict[str, Any]) -> None:
    argv = [arg.format(python=sys.executable, app_dir=run.app.app_dir) for arg in processor["command"]]
    env = _base_env(run, processor)
    # The SDK starts `dendro internal-job-monitor` processes: find that command beside the
    # interpreter (e.g. a venv's bin/) when the command names one by path.
    if os.path.isabs(argv[0]):
        env["PATH"] = os.pathsep.join([os.path.dirname(argv[0]), env.get("PATH", "")])
    outcome = _execute(run, argv, env)
    if outcome.canceled:
        message = "stopped by the compute resource"
    elif outcome.succeeded:
        message = "processor exited without reporting completion"
    else:
        message = _failure_message(run, outcome)
    _fail_if_still_active(run, message)


def _fail_if_still_active(run: JobRun, message: str) -> None:
    """Report a failure unless the service already has a final status (set by the SDK, or
    by a cancel, which is why the process was stopped)."""
    job = run.api.get_job(run.job_id)
    if job is not None and job["status"] in ("starting", "running"):
        _report_failure(run, message)
    else:
        log.info("job %s %s", run.job_id, job["status"] if job else "was deleted")


def _failure_message(run: JobRun, outcome: RunOutcome) -> str:
    if outcome.timed_out:
        return f"timed out after {run.job['requiredResources']['timeSec']} s"
    tail = ""
    if run.console_path.exists():
        lines = [ln for ln in run.console_path.read_text(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1][-_ERROR_TAIL_CHARS:] if lines else ""
    return f"processor exited with code {outcome.exit_code}" + (f": {tail}" if tail else "")


def _upload_console(run: JobRun) -> None:
    if run.console_path.exists():
        run.api.upload(run.job, str(run.console_path), "consoleOutput")


def _report_failure(run: JobRun, message: str) -> None:
    """Best effort: upload the console output, then mark the job failed."""
    message = redact_signed_urls(message)  # exception texts and console tails may quote one
    log.warning("job %s failed: %s", run.job_id, message)
    try:
        _upload_console(run)
        run.api.set_status(run.job, "failed", message)
    except Exception as e:  # noqa: BLE001 - e.g. the job was canceled meanwhile
        log.warning("could not report the failure of job %s: %s", run.job_id, e)
