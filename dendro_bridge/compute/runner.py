"""How a processor's command is executed.  `ProcessorRunner` is the seam where other
backends (drypipe executors: local process, Slurm) plug in; `SubprocessRunner` runs the
command as a local child process."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class ProcessorCommand:
    """One processor invocation: argv in a working directory, output into a console file."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    console_path: Path
    timeout_sec: float | None
    # The job's requiredResources (numCpus, numGpus, memoryGb, timeSec), for runners that
    # request resources from a batch system.
    required_resources: dict[str, Any] | None = None


@dataclass
class RunOutcome:
    exit_code: int | None
    timed_out: bool = False
    canceled: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.canceled


class ProcessorRunner(Protocol):
    def run(self, command: ProcessorCommand, cancel: threading.Event) -> RunOutcome:
        """Run to completion; stop early (and report it) on timeout or when `cancel` is set."""
        ...


class SubprocessRunner:
    """Runs the command in its own process group so that a kill reaches its children too."""

    def __init__(self, poll_interval_sec: float = 0.1, kill_grace_sec: float = 3.0):
        self.poll_interval_sec = poll_interval_sec
        self.kill_grace_sec = kill_grace_sec

    def run(self, command: ProcessorCommand, cancel: threading.Event) -> RunOutcome:
        deadline = None if command.timeout_sec is None else time.monotonic() + command.timeout_sec
        with open(command.console_path, "ab") as console:
            try:
                proc = subprocess.Popen(command.argv, cwd=command.cwd, env=command.env, stdout=console,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                console.write(f"cannot start {command.argv[0]}: {e}\n".encode())
                return RunOutcome(exit_code=127)
            while proc.poll() is None:
                if cancel.wait(self.poll_interval_sec):
                    self._kill(proc)
                    return RunOutcome(exit_code=proc.returncode, canceled=True)
                if deadline is not None and time.monotonic() > deadline:
                    self._kill(proc)
                    return RunOutcome(exit_code=proc.returncode, timed_out=True)
            return RunOutcome(exit_code=proc.returncode)

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(self.kill_grace_sec)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)  # the leader if it ignored SIGTERM, or its children
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
