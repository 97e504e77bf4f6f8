"""The process executor's descriptor: local child processes, no settings (the task's pid,
which the task runtime writes for every executor, is its handle in `drypipe status`)."""
from __future__ import annotations

from drypipe.plugins import ExecutorPlugin

PLUGIN: ExecutorPlugin[object] = ExecutorPlugin(name="process", executor="executors.process:ProcessExecutor")
