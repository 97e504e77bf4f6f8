"""The completed-task index, `.drypipe/.orchestrator.completed-index`: what a rerun needs to
know of each completed task, so that a no-op rerun of a large instance reads one file instead of
every task's control dir and `signature`.

Its one writer is the orchestrator holding the instance lock: at a clean end of a run (the loop
finished without an error or a stop request) it writes the index as its last act before the
lock is released, and the next run unlinks it right after reading it, so a crash mid-run never
leaves an index that describes an older state.

An entry holds the control dir's (st_mtime_ns, st_ctime_ns) as they were when the task was
seen completed, with nothing else in the dir a start would clean up.  It is trusted only while
the dir still has them: every move of a marker (by `./task`, `drypipe restart`, a user's `rm`
or `mv`, the task runtime's link and unlink) and every atomic write of a control file (a
temporary name, then a rename) creates, renames or removes an entry of the dir, which changes
both.  Any other task is scanned as before.  A file system with coarse timestamps could give a
change right after the index was written the same stamp: an entry whose dir changed less than
MARGIN_NS before the index started to be written is not trusted either (it is rescanned, and
indexed by the next clean end).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord

INDEX_FILE = ".orchestrator.completed-index"  # named like the lock and the run log: the orchestrator's own
VERSION = 1
MARGIN_NS = 2_000_000_000

log = logging.getLogger("drypipe")

Stamp = tuple[int, int]  # (st_mtime_ns, st_ctime_ns) of a control dir


def brief(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a rerun reads of a completed task's signature record (None when it has none): its
    `signature`, whether its outputs are recorded (`outputs_recorded`), the caches it was
    `published` to.  The scheduler reads a record through its brief, from here or from the file."""
    if record is None:
        return None
    # A value of the wrong type compares as unequal to any signature or cache URL, as None or a missing one does.
    signature, published = record.get("signature"), record.get("published")
    return {"signature": signature if isinstance(signature, str) else None, "outputs_recorded": "outputs" in record,
            "published": [p for p in published if isinstance(p, str)] if isinstance(published, list) else []}


@dataclass(frozen=True)
class Entry:
    stamp: Stamp
    brief: dict[str, Any]

    def to_json(self) -> list[Any]:
        b = self.brief
        return [*self.stamp, b["signature"], b["outputs_recorded"], b["published"]]

    @classmethod
    def from_json(cls, row: Any) -> Entry:
        mtime, ctime, signature, outputs_recorded, published = row
        if not (type(mtime) is int and type(ctime) is int and isinstance(signature, str | None)
                and isinstance(outputs_recorded, bool) and isinstance(published, list)
                and all(isinstance(p, str) for p in published)):
            raise ValueError(f"malformed entry {row!r}")
        return cls((mtime, ctime), {"signature": signature, "outputs_recorded": outputs_recorded,
                                    "published": published})


def _stamp(path: str) -> Stamp | None:
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_mtime_ns, s.st_ctime_ns


class CompletedIndex:
    """The index a run read at its start; `holds` answers, task by task, whether its entry still holds."""

    def __init__(self, instance: Instance, entries: dict[str, Entry] | None = None, reference_ns: int = 0):
        self.instance = instance
        self._entries = entries or {}
        self._trusted_before = reference_ns - MARGIN_NS
        self._held: dict[str, Entry] = {}  # entries that held at the start of this run
        self._written: dict[str, dict[str, Any] | None] = {}  # briefs of the signature records this run wrote

    @property
    def path(self) -> str:
        return os.path.join(self.instance.drypipe_dir, INDEX_FILE)

    @classmethod
    def take(cls, instance: Instance) -> CompletedIndex:
        """Read the index and unlink it (right after the instance lock is taken).  One that is
        missing, unreadable, corrupt, of another version, or cannot be unlinked is not used."""
        index = cls(instance)
        try:
            with open(index.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return index
        except OSError as e:
            text = None
            log.debug("completed-task index %s not used: %s", index.path, e)
        try:
            os.unlink(index.path)
        except OSError as e:
            log.debug("completed-task index %s not used: cannot unlink it: %s", index.path, e)
            return index
        if text is None:
            return index
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"not an index of version {VERSION}")
            reference, tasks = doc["reference_ns"], doc["tasks"]
            if type(reference) is not int or not isinstance(tasks, dict):
                raise ValueError("malformed")
            entries = {key: Entry.from_json(row) for key, row in tasks.items()}
        except (KeyError, TypeError, ValueError) as e:
            log.debug("completed-task index %s not used: %s", index.path, e)
            return index
        return cls(instance, entries, reference)

    def holds(self, key: str, control_dir: str) -> bool:
        """Whether the task is completed, its control dir unchanged since the index was written
        (one os.stat, instead of a scan and a read of its signature record)."""
        entry = self._entries.get(key)
        if entry is None or max(entry.stamp) >= self._trusted_before or _stamp(control_dir) != entry.stamp:
            return False
        self._held[key] = entry
        return True

    def recorded(self, key: str) -> dict[str, Any] | None:
        """The brief of the signature record of a task whose entry held at start, else None
        (read the file).  Asked before the run writes in the task's control dir: the run only
        writes there after it registered the task, or once it is no longer completed."""
        entry = self._held.get(key)
        return entry.brief if entry is not None else None

    def note(self, key: str, record: dict[str, Any]) -> None:
        """The signature record this run just wrote for a task (the scheduler writes every one)."""
        self._written[key] = brief(record)

    def write(self, states: dict[str, str | None]) -> None:
        """Index the tasks `states` says are completed (at a clean end of a run, under the lock,
        last thing before it is released): an entry that held at start and whose dir has not
        changed since is kept; any other task is checked on disk, its record taken from what
        this run wrote (note) or else read.  A failure to write is only a warning: the next run
        scans the control dirs."""
        drypipe_dir = str(self.instance.drypipe_dir)
        tmp = f"{self.path}.{os.getpid()}.tmp"  # a leftover of a crash is removed at start, like every .*.tmp
        try:
            _unlink(tmp)  # a new file: its mtime is now
            with open(tmp, "w", encoding="utf-8") as f:
                # The file system's own clock, before any control dir is looked at: a dir that
                # changes after being looked at gets a stamp at or after this one.
                reference = os.fstat(f.fileno()).st_mtime_ns
                tasks = {key: entry.to_json() for key, state in states.items()
                         if state == st.COMPLETED and (entry := self._entry_now(key, drypipe_dir)) is not None}
                # dumps, not dump: only a one-shot encoding uses the C encoder (10x faster)
                doc = {"version": VERSION, "reference_ns": reference, "tasks": tasks}
                f.write(json.dumps(doc, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as e:  # e.g. a full disk
            log.warning("completed-task index not saved: %s", e)
            with contextlib.suppress(OSError):
                _unlink(tmp)
        except BaseException:
            _unlink(tmp)
            raise

    def _entry_now(self, key: str, drypipe_dir: str) -> Entry | None:
        """The entry of a task that is completed on disk now; None if it is not, or if the next
        start would clean up (a leftover temporary file) or refuse something in its dir."""
        control = os.path.join(drypipe_dir, key)
        stamp = _stamp(control)  # first: a change after it makes the entry not hold
        if stamp is None:
            return None
        held = self._held.get(key)
        if held is not None and held.stamp == stamp:
            return held
        try:
            state, leftovers = st.scan(control, strict=True)
        except UserError:  # the next start refuses it, naming the problem
            return None
        if state != st.COMPLETED or leftovers:
            return None
        recorded = self._written.get(key) or brief(TaskRecord(self.instance.root, key).signature_record())
        return None if recorded is None else Entry(stamp, recorded)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
