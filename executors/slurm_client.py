"""Thin wrappers around the Slurm client commands (`sbatch`, `squeue`, `sacct`, `scancel`,
`scontrol`): one subprocess per call, outputs parsed into plain values.

Nothing here knows about tasks; `executors.slurm` maps tasks to jobs.  The commands are
found on PATH, as a user's shell on a login node finds them.
"""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from drypipe.errors import BackendUnavailable, UserError
from drypipe.executor import Outcome

log = logging.getLogger("drypipe.slurm")

# Job states in which the job still exists (or will run): the task is alive.
ALIVE_STATES = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
    "POWER_UP_NODE", "UPDATE_DB",
})

# What a finished job means for a task that recorded no final state itself.
# (outcome as the scheduler understands it: killed / timed-out / failed / lost)
ENDED_STATES: dict[str, Outcome] = {
    "CANCELLED": "killed",
    "TIMEOUT": "timed-out",
    "DEADLINE": "timed-out",
    "FAILED": "failed",
    "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed",
    "NODE_FAIL": "lost",
    "PREEMPTED": "lost",
    "REVOKED": "lost",
    "COMPLETED": "lost",  # the batch script ended normally, yet the task wrote no final state
}

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float  # TotalCPU: user + system time of all the job's steps
    max_rss_kib: int  # the largest MaxRSS of its steps (batch, extern, srun steps)


@dataclass(frozen=True)
class JobStatus:
    state: str  # e.g. RUNNING, CANCELLED (sacct's "CANCELLED by 0" is cut to CANCELLED)
    reason: str = ""
    usage: Usage | None = None  # from sacct, once the job ended and its steps were accounted

    @property
    def alive(self) -> bool:
        return self.state in ALIVE_STATES


@dataclass(frozen=True)
class ClusterConfig:
    max_array_size: int
    accounting: bool  # False when sacct cannot work (AccountingStorageType=accounting_storage/none)


class SlurmUnavailable(BackendUnavailable):
    """A query failed for a reason that says nothing about the jobs (controller down, timeout)."""


def _run(args: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    log.debug("slurm: %s", " ".join(args) if len(args) < 12 else " ".join(args[:12]) + " ...")
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
    except FileNotFoundError:
        raise UserError(
            f"`{args[0]}` not found on PATH: the slurm executor must run where the Slurm client "
            "commands are installed (a cluster login node)"
        ) from None


def error_text(stderr: str) -> str:
    """The informative part of a Slurm command's stderr, on one line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Try ")]
    errors = [ln for ln in lines if "error" in ln.lower() or "unrecognized" in ln.lower() or "invalid" in ln.lower()]
    return "; ".join(errors or lines) or "no error message"


def read_config() -> ClusterConfig:
    """MaxArraySize and whether accounting (sacct) exists, from one `scontrol show config`."""
    try:
        result = _run(["scontrol", "show", "config"], timeout=60)
    except (subprocess.TimeoutExpired, UserError) as e:
        log.warning("slurm: cannot read the cluster configuration (%s); assuming defaults", e)
        return ClusterConfig(DEFAULT_MAX_ARRAY_SIZE, True)
    values = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    try:
        max_array_size = int(values.get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE))
    except ValueError:
        max_array_size = DEFAULT_MAX_ARRAY_SIZE
    storage = values.get("AccountingStorageType", "")
    accounting = storage != "accounting_storage/none"
    return ClusterConfig(max(1, max_array_size), accounting)


_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def is_job_id(text: str | None) -> TypeGuard[str]:
    return text is not None and bool(_JOB_ID.match(text))


# sbatch's messages when the controller cannot be reached: the job itself is not at fault.
_CONTROLLER_DOWN = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
                    "Slurm temporarily unable")


def submit(args: list[str]) -> str:
    """Run an `sbatch --parsable ...` command line; the job id, or UserError with sbatch's error."""
    try:
        result = _run(args)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"sbatch did not answer within {COMMAND_TIMEOUT:.0f} s (is slurmctld up?)") from None
    if result.returncode != 0:
        message = f"sbatch failed (exit code {result.returncode}): {error_text(result.stderr)}"
        if any(s in result.stderr for s in _CONTROLLER_DOWN):
            raise SlurmUnavailable(message)
        raise UserError(message)
    if result.stderr.strip():
        log.warning("sbatch: %s", result.stderr.strip())
    job_id = result.stdout.strip().splitlines()[-1].split(";")[0] if result.stdout.strip() else ""
    if not job_id.isdigit():
        raise UserError(f"sbatch printed no job id: {result.stdout.strip()!r}")
    return job_id


def squeue(job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """Status of every job (array elements expanded) among `job_ids`, finished ones included
    while Slurm still lists them (MinJobAge).  Keyed by `123` or `123_4`.  One `squeue` call."""
    args = squeue_args(job_ids)
    if args is None:
        return {}
    try:
        result = _run(args)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable("squeue timed out") from None
    statuses = parse_squeue(result.returncode, result.stdout, result.stderr)
    if statuses is None:
        raise SlurmUnavailable(f"squeue failed: {error_text(result.stderr)}")
    return statuses


def squeue_args(job_ids: Iterable[str]) -> list[str] | None:
    """The squeue command whose output parse_squeue reads (None: no job to ask about)."""
    ids = sorted(set(job_ids), key=_id_order)
    return ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"] if ids else None


def parse_squeue(returncode: int, stdout: str, stderr: str) -> dict[str, JobStatus] | None:
    """The statuses in the output of squeue_args' command; None when it failed."""
    if returncode != 0:
        # Every id unknown (all purged after MinJobAge): squeue errors instead of printing nothing.
        return {} if "Invalid job id" in stderr else None
    return _parse_status_lines(stdout, "|")


def squeue_by_name(job_name: str, fmt: str) -> list[list[str]] | None:
    """Lines of `squeue --name=NAME -o FMT` (fields separated by `|`), or None on failure."""
    try:
        result = _run(["squeue", "-h", "-t", "all", f"--name={job_name}", "-o", fmt])
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    return [line.split("|") for line in result.stdout.splitlines() if line.strip()]


class AccountingDisabled(Exception):
    pass


def sacct(job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """States of jobs from the accounting database, with their usage once they ended: one
    `sacct` call.  Keyed by `123` or `123_4` (an array's elements each on their own line)."""
    ids = sorted(set(job_ids), key=_id_order)
    if not ids:
        return {}
    try:
        result = _run(["sacct", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,MaxRSS,TotalCPU"])
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable("sacct timed out") from None
    if result.returncode != 0:
        if "accounting storage is disabled" in result.stderr.lower() or "slurmdbd" in result.stderr.lower():
            raise AccountingDisabled(error_text(result.stderr))
        raise SlurmUnavailable(f"sacct failed: {error_text(result.stderr)}")
    return _parse_sacct(result.stdout)


def _parse_sacct(text: str) -> dict[str, JobStatus]:
    """`JobID|State|ExitCode|MaxRSS|TotalCPU` lines: a job's line (`123`, `123_4`), then its
    steps' (`123_4.batch`, `123_4.0`), which alone carry MaxRSS."""
    jobs: dict[str, list[str]] = {}
    peak: dict[str, int] = {}  # job -> the largest MaxRSS of its steps
    for line in text.splitlines():
        parts = (line.split("|") + [""] * 4)[:5]  # the usage fields may be missing
        if not parts[0] or not parts[1]:
            continue
        job, dot, _ = parts[0].partition(".")
        if not dot:
            jobs[job] = parts
        elif parts[3]:
            try:
                peak[job] = max(peak.get(job, 0), parse_memory_kib(parts[3]))
            except ValueError:
                log.warning("slurm: sacct MaxRSS %r of %s not understood", parts[3], parts[0])
    statuses = {}
    for job, parts in jobs.items():
        _, state_text, exit_code, _, total_cpu = parts
        state = state_text.split()[0] if state_text.split() else state_text
        usage = None
        if state not in ALIVE_STATES and job in peak and total_cpu:
            try:
                usage = Usage(parse_duration(total_cpu), peak[job])
            except ValueError:
                log.warning("slurm: sacct TotalCPU %r of %s not understood", total_cpu, job)
        statuses[job] = JobStatus(state, f"exit code {exit_code}" if exit_code else "", usage)
    return statuses


_MEMORY_UNITS = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3, "P": 1024 ** 4}


def parse_memory_kib(text: str) -> int:
    """sacct's MaxRSS (`2264K`, `1.50M`, `3G`; a bare number is bytes) in KiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text.strip())
    if not match:
        raise ValueError(f"not a memory size: {text!r}")
    return round(float(match[1]) * _MEMORY_UNITS[match[2]])


def parse_duration(text: str) -> float:
    """sacct's TotalCPU (`00:01.234`, `1:02:03`, `1-02:03:04`, `1-02:03:04.5`) in seconds."""
    days, dash, clock = text.strip().rpartition("-")
    fields = clock.split(":")
    if (dash and not days.isdigit()) or not 2 <= len(fields) <= 3 or not all(
            re.fullmatch(r"\d+(\.\d+)?", f) for f in fields):
        raise ValueError(f"not a duration: {text!r}")
    seconds = 0.0
    for field in fields:
        seconds = seconds * 60 + float(field)
    return seconds + int(days or 0) * 86400


def scancel(job_ids: Iterable[str], signal: str | None = None, batch: bool = False) -> str:
    """Cancel (or signal) jobs in one `scancel` call; returns its error text ('' if none)."""
    ids = sorted(set(job_ids), key=_id_order)
    if not ids:
        return ""
    args = ["scancel"]
    if signal:
        args.append(f"--signal={signal}")
    if batch:
        args.append("--batch")
    try:
        result = _run(args + ids, timeout=60)
    except subprocess.TimeoutExpired:
        return "scancel timed out"
    return error_text(result.stderr) if result.returncode != 0 else ""


def _parse_status_lines(text: str, sep: str) -> dict[str, JobStatus]:
    statuses = {}
    for line in text.splitlines():
        parts = line.split(sep, 2)
        if len(parts) >= 2 and parts[0]:
            reason = parts[2].strip() if len(parts) > 2 else ""
            status = JobStatus(parts[1].strip(), "" if reason == "None" else reason)
            for job_id in expand_job_id(parts[0].strip()):
                statuses[job_id] = status
    return statuses


def expand_job_id(text: str) -> list[str]:
    """`123_[0-2,5%2]` -> 123_0 123_1 123_2 123_5 (unsplit array elements); others as they are.
    A pending array cancelled before any element started shows as plain `123`."""
    head, sep, tail = text.partition("_")
    if not sep or not tail.startswith("["):
        return [text]
    ids: list[str] = []
    for part in tail.strip("[]").split("%")[0].split(","):
        low, dash, high = part.partition("-")
        if low.isdigit() and (not dash or high.isdigit()):
            ids.extend(f"{head}_{i}" for i in range(int(low), int(high if dash else low) + 1))
    return ids


def _id_order(job_id: str) -> tuple[int, int, str]:
    head, _, tail = job_id.partition("_")
    return (int(head) if head.isdigit() else 0, int(tail) if tail.isdigit() else -1, job_id)
