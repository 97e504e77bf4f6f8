"""The task record: the one owner of the files of `.drypipe/<key>/` (the bash half is
`resources/task-lib.sh`).

Every file of a control directory is read and written here, and every transition writes
them in an order that is safe at every crash point (docs/instance.md has the table).  The
rules the order follows:

- the state marker is the truth; every other file is trusted only as far as the marker says
  (a `signature` describes the outputs only while the marker is `completed`);
- a transition that invalidates a result moves the marker out of `completed` *before* it
  touches the result (outputs, output variables, signature), and one that produces a result
  writes the result *before* the marker moves to `completed`;
- files a reader may see at any time are replaced atomically (write a temporary name, rename).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.instance import DRYPIPE_DIR, OUTPUT_DIR, Instance, shown_path, write_atomic, write_new

if TYPE_CHECKING:
    from drypipe.task_conf import TaskConf

CONF_FILE = "task-conf.json"
SCRIPT_FILE = "task"
ENV_FILE = "task-env.sh"
PID_FILE = "pid"
LOG_FILE = "drypipe.log"
OUT_LOG_FILE = "out.log"
OUTPUT_VARS_FILE = "output_vars"  # JSON, for Python readers
OUTPUT_VARS_SH_FILE = "output_vars.sh"  # bash, sourced by downstream tasks
SIGNATURE_FILE = "signature"
CACHED_FILE = "cached"
ATTEMPT_FILE = "attempt"  # "<attempt> <of attempts>" from the first retry on (absent: attempt 1)
KILL_REQUEST = "kill requested"  # the drypipe.log event of `drypipe kill`: its killed.N is not retried

USAGE_EVENT = "usage"  # `usage cpu=<seconds> max_rss_kib=<KiB>`, see TaskRecord.record_usage
_END_EVENTS = ("state.completed", "state.failed", "state.killed", "state.timed-out", "state.lost")


@dataclass
class Timing:
    key: str
    started: float | None  # epoch seconds of the last run's first step
    ended: float | None
    cpu: float | None = None  # user + system seconds of the steps, when the task runtime recorded them
    max_rss: int | None = None  # peak resident memory in KiB, when the process that waited for the task measured it

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


def log_path(instance: Instance, key: str) -> str:
    """A task's out.log as every command shows it: pasteable from the current directory."""
    return shown_path(instance.control_dir(key) / OUT_LOG_FILE)


_BASH_TIME = re.compile(r"^(?:(\d+)m)?([\d.,]+)s$")


def _bash_seconds(text: str) -> float:
    """`1m2.500s` (bash `times` format) -> 62.5."""
    m = _BASH_TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    return int(m.group(1) or 0) * 60 + float(m.group(2).replace(",", "."))


@dataclass(frozen=True)
class PidRecord:
    """`pid` file: who runs the task.  `valid` False: empty or garbage (a write cut short)."""

    pid: int = 0
    start_time: str = "0"
    host: str | None = None
    valid: bool = True


class TaskRecord:
    """The files of one task of an instance."""

    def __init__(self, instance_root: str | os.PathLike[str], key: str):
        self.instance_root = Path(instance_root)
        self.key = key
        self.control_dir = self.instance_root / DRYPIPE_DIR / key
        self.output_dir = self.instance_root / OUTPUT_DIR / key

    @classmethod
    def at(cls, control_dir: str | os.PathLike[str]) -> TaskRecord:
        """The record of the task whose control dir is `control_dir`."""
        control = Path(control_dir)
        return cls(control.parent.parent, control.name)

    def path(self, name: str) -> Path:
        return self.control_dir / name

    # -- state -----------------------------------------------------------------------------

    def state(self) -> str | None:
        return st.read_state(str(self.control_dir))

    def move(self, old: str | None, new: str) -> bool:
        """Rename the marker (create it when `old` is None); False if it is no longer `old`."""
        return st.transition(str(self.control_dir), old, new)

    def record_state(self, old: str | None, new: str, reason: str = "", when: float | None = None,
                     by: str | None = None) -> bool:
        """A transition recorded for someone else (a task that cannot record it itself): the
        marker moves, then `state.<new> <reason>` goes to drypipe.log.  False if it had moved."""
        if not self.move(old, new):
            return False
        self.log(f"state.{new} {reason}".rstrip(), when, by)
        return True

    # -- definition ------------------------------------------------------------------------

    def conf_document(self) -> dict[str, Any]:
        """task-conf.json, or a UserError naming the task and the file."""
        path = self.path(CONF_FILE)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return doc
        except (OSError, ValueError) as e:
            raise UserError(f"task {self.key}: unreadable {path}: {e}") from e

    def task_conf(self) -> TaskConf:  # imported late: task_conf imports the executors' registry
        from drypipe.task_conf import TaskConf

        path = self.path(CONF_FILE)
        doc = self.conf_document()
        try:
            return TaskConf.from_dict(doc["task_conf"])
        except KeyError as e:
            raise UserError(f"task {self.key}: unreadable {path}: no field {e}") from e
        except (ValueError, TypeError, AttributeError, UserError) as e:
            raise UserError(f"task {self.key}: unreadable {path}: {e}") from e

    def step_count(self) -> int | None:
        try:
            return len(self.conf_document()["steps"])
        except (UserError, KeyError, TypeError):
            return None

    # -- who runs it -----------------------------------------------------------------------

    def pid(self) -> PidRecord | None:
        """The pid file, None when there is none."""
        try:
            fields = self.path(PID_FILE).read_text(encoding="utf-8", errors="replace").split()
        except FileNotFoundError:
            return None
        except OSError:
            return PidRecord(valid=False)
        if len(fields) < 2 or not fields[0].isdigit() or not fields[1].isdigit() or int(fields[0]) <= 0:
            return PidRecord(valid=False)
        return PidRecord(int(fields[0]), fields[1], fields[2] if len(fields) > 2 else None)

    def running_pid(self) -> int | None:
        """The pid of the task's live process on this host, if any."""
        from drypipe.proc import process_matches

        record = self.pid()
        if record is None or not record.valid:
            return None
        return record.pid if process_matches(record.pid, record.start_time) else None

    # -- claim: the orchestrator hands the task to an executor -----------------------------

    def claim(self, old: str | None) -> bool:
        """Move the marker to `launched`.  The pid file of an earlier run goes first: a crash
        between the two leaves the task as it was; one after leaves `launched` with no pid,
        which the next run reads as "never started" and launches again."""
        try:
            os.unlink(self.path(PID_FILE))
        except FileNotFoundError:
            pass
        return self.move(old, st.LAUNCHED)

    def unclaim(self, back_to: str | None) -> None:
        """Undo a claim whose launch did not happen (the backend refused it)."""
        self.move(st.LAUNCHED, back_to or st.READY)

    # -- drypipe.log -----------------------------------------------------------------------

    def log(self, message: str, when: float | None = None, by: str | None = None) -> None:
        """One line in drypipe.log: ISO time, epoch time, event (`when`: epoch time, default
        now; `by`: who recorded it, when not the task itself)."""
        when = time.time() if when is None else when
        message = f"{message} (recorded by {by})" if by else message
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
        with open(self.path(LOG_FILE), "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(f"{stamp} {when:.6f} {message}\n")

    def log_events(self) -> Iterator[tuple[float, str]]:
        """(epoch time, event) for each well-formed line of drypipe.log."""
        try:
            with open(self.path(LOG_FILE), encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(" ", 2)
                    if len(parts) < 3:
                        continue
                    try:
                        yield float(parts[1]), parts[2]
                    except ValueError:
                        continue
        except FileNotFoundError:
            return

    def timing(self) -> Timing:
        """Start, end, CPU time and peak memory of the task's last run, from its drypipe.log."""
        started = ended = cpu = max_rss = None
        measured = False  # a `usage` line: its CPU time is finer than the task runtime's
        for stamp, event in self.log_events():
            if event.startswith("state.step-started.") and (started is None or ended is not None):
                started, ended, cpu, max_rss, measured = stamp, None, None, None, False
            elif event.startswith(_END_EVENTS):
                ended = stamp
            elif event.startswith("cpu ") and not measured:  # `cpu <user> <system>` written by the task runtime
                try:
                    cpu = (cpu or 0.0) + sum(_bash_seconds(t) for t in event.split()[1:3])
                except ValueError:
                    pass
            elif event.startswith(USAGE_EVENT):
                fields = dict(f.partition("=")[::2] for f in event.split()[1:])
                try:
                    cpu, max_rss, measured = float(fields["cpu"]), int(fields["max_rss_kib"]), True
                except (KeyError, ValueError):
                    pass
        return Timing(self.key, started, ended, cpu, max_rss)

    def record_usage(self, cpu_seconds: float, max_rss_kib: int) -> None:
        """The resources of the run that just ended, measured by whoever waited for the task's
        process (its rusage: user + system time, peak RSS of it and its steps): one line in
        drypipe.log, after the task recorded its outcome (its process has exited)."""
        self.log(f"{USAGE_EVENT} cpu={cpu_seconds:.6f} max_rss_kib={max_rss_kib}")

    def tail(self, lines: int = 5, name: str = OUT_LOG_FILE) -> list[str]:
        try:
            with open(self.path(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:]

    def failure_reason(self) -> str | None:
        """The last end-of-run line of drypipe.log, e.g. 'state.failed.0 exit code 3'."""
        for line in reversed(self.tail(20, LOG_FILE)):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[2].startswith(_END_EVENTS[1:]):
                return parts[2]
        return None

    # -- attempts: automatic retries -------------------------------------------------------

    def attempt(self) -> tuple[int, int | None]:
        """(the number of the task's current or last attempt, how many it may make), from the
        attempt file; (1, None) without one (no retry yet)."""
        try:
            fields = self.path(ATTEMPT_FILE).read_text(encoding="utf-8").split()
            return int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):
            return 1, None

    def begin_attempt(self, attempt: int, attempts: int, after: str) -> None:
        """Before a retry is claimed: the failed attempt's results are cleared and out.log gets
        a separator line, then the attempt is counted, last, right before the claim: a crash
        before it retries the same attempt, one after it (before the claim) costs that attempt,
        and none gives the task more attempts than it may make.  `after`: what ended the last."""
        self.log(f"attempt {attempt} of {attempts} (retry after {after})")
        self.clear_results()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.path(OUT_LOG_FILE), "a", encoding="utf-8") as f:
            f.write(f"===== attempt {attempt} of {attempts} ({stamp}) =====\n")
        write_atomic(self.path(ATTEMPT_FILE), f"{attempt} {attempts}\n")

    def reset_attempts(self) -> None:
        """A new series of attempts (the task reruns as stale, or --restart-failed/--reset-failed)."""
        try:
            os.unlink(self.path(ATTEMPT_FILE))
        except FileNotFoundError:
            pass

    def request_kill(self, by: str) -> None:
        """Recorded before a user stops the task: its killed.N is then not retried."""
        self.log(f"{KILL_REQUEST} ({by})")

    def kill_requested(self) -> bool:
        """Whether a kill was requested during the task's last run (since the end before it)."""
        events = [event for _, event in self.log_events()]
        ends = [i for i, event in enumerate(events) if event.startswith(_END_EVENTS)]
        since = ends[-2] + 1 if len(ends) > 1 else 0
        return any(event.startswith(KILL_REQUEST) for event in events[since:])

    # -- results ---------------------------------------------------------------------------

    def output_vars(self) -> dict[str, str]:
        """The output variables the task recorded ({} when none); bytes that are not UTF-8
        (a bash step may export anything) arrive as U+FFFD rather than stop the reader."""
        try:
            raw = self.path(OUTPUT_VARS_FILE).read_bytes()
        except FileNotFoundError:
            return {}
        try:
            values = json.loads(raw.decode("utf-8", "replace"))
        except ValueError as e:
            raise UserError(f"task {self.key}: unreadable {self.path(OUTPUT_VARS_FILE)}: {e}") from e
        return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}

    def write_output_vars(self, values: dict[str, str]) -> None:
        """Both forms the task runtime uses: bash for downstream tasks, and JSON."""
        from drypipe.task_script import write_output_vars

        write_output_vars(self.control_dir, values)

    def signature_record(self) -> dict[str, Any] | None:
        try:
            with open(self.path(SIGNATURE_FILE), encoding="utf-8") as f:
                record = json.load(f)
            return record if isinstance(record, dict) else None
        except (OSError, ValueError):
            return None

    def write_signature_record(self, record: dict[str, Any], fresh: bool = False) -> None:
        """`fresh`: the task has no marker yet, so no reader trusts the file (see write_new)."""
        write = write_new if fresh else write_atomic
        write(self.path(SIGNATURE_FILE), json.dumps(record, sort_keys=True) + "\n")

    def cached_from(self) -> str | None:
        try:
            return self.path(CACHED_FILE).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def mark_cached(self, url: str, signature: str) -> None:
        write_atomic(self.path(CACHED_FILE), f"{url} {signature}\n")

    def clear_results(self) -> None:
        """Remove what a run produced (outputs, output variables, cache mark), before the task
        runs again from its first step.  The caller has moved the marker out of `completed`
        first.  The output dir is renamed aside before it is deleted, so a crash leaves either
        the whole old dir (deleted next time) or none of it, never a mix with new files."""
        for name in (CACHED_FILE, OUTPUT_VARS_FILE, OUTPUT_VARS_SH_FILE):
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
        if self.output_dir.exists():
            aside = self.output_dir.parent / f".{self.key}.old-{uuid.uuid4().hex[:8]}.tmp"
            os.rename(self.output_dir, aside)
            shutil.rmtree(aside, ignore_errors=True)


def upstream_keys_on_disk(record: TaskRecord) -> list[str]:
    """The upstream keys a task's definition on disk names (empty when unreadable)."""
    try:
        keys = record.conf_document().get("upstream_keys") or []
    except UserError:
        return []
    return [k for k in keys if isinstance(k, str)]
