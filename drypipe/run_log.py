"""The run log, `.drypipe/.orchestrator.log`: what every `drypipe run` (and `prepare`) of an
instance did, one line per event, appended.

Its one writer is the orchestrator holding the instance lock: a run opens it right after taking
the lock and writes its last line before releasing it, so runs never interleave.  Each line is
written whole and flushed (a crash leaves at most a cut last line); it is never rewritten, so
it may be deleted between runs.  Lines have the format of drypipe.log: ISO time, epoch time,
event.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
from typing import IO, TYPE_CHECKING

from drypipe import state as st
from drypipe.display import failure_text
from drypipe.instance import Instance
from drypipe.text import plural

if TYPE_CHECKING:
    from drypipe.scheduler import RunSummary

RUN_LOG_FILE = ".orchestrator.log"

log = logging.getLogger("drypipe")


class RunLog:
    def __init__(self, instance: Instance):
        self.instance = instance
        self.path = instance.drypipe_dir / RUN_LOG_FILE
        self._file: IO[str] | None = None

    def begin(self) -> None:
        """Open the log (under the instance lock) and write the run's first line."""
        try:
            self._file = open(self.path, "a", encoding="utf-8", errors="replace", buffering=1)
        except OSError as e:
            log.warning("cannot write the run log %s: %s", self.path, e)
            return
        command = shlex.join(["drypipe", *sys.argv[1:]])
        self.write(f"run started: pid {os.getpid()} on {socket.gethostname()}: {command}")

    def write(self, message: str) -> None:
        if self._file is None:
            return
        now = time.time()
        line = message.replace("\n", " ")
        try:
            self._file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(now))} {now:.3f} {line}\n")
        except OSError as e:  # a full disk: the run goes on without its log
            log.warning("cannot write the run log %s: %s", self.path, e)
            self._close()

    def change(self, key: str, old: str | None, new: str | None) -> None:
        """`<key> <old> -> <new>`, with the reason and the log of a failure."""
        if self._file is None:
            return
        if st.is_failure(new):
            new = f"{failure_text(self.instance, key, new)}; log: {self.instance.control_dir(key) / 'out.log'}"
        self.write(f"{key} {old or '-'} -> {new}")

    def end(self, summary: RunSummary | None, stopped: bool = False, error: BaseException | None = None) -> None:
        """The run's last line (before the lock is released): how it ended, with the counts."""
        if self._file is None:
            return
        counts = ""
        if summary is not None:
            counts = f"{plural(len(summary.states), 'task')}: " + ", ".join(
                f"{n} {s}" for s, n in sorted(summary.counts().items()))
        if error is not None and not isinstance(error, KeyboardInterrupt):
            how = f"run ended by an error: {type(error).__name__}: {error}"
        elif stopped or error is not None:
            how = "run stopped (Ctrl-C)"
        else:
            how = "run ended"
        self.write(f"{how}; {counts}" if counts else how)
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
