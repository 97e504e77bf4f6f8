"""The task record (drypipe/task_record.py) and its bash half (resources/task-lib.sh) agree:
what the task runtime writes, the record reads; the limits both enforce are the same."""
from __future__ import annotations

import re
import socket
import subprocess
from importlib import resources

from drypipe import errors, task_script
from drypipe.task_record import TaskRecord
from tests.helpers import drypipe, write_module

LIB = resources.files("drypipe").joinpath("resources/task-lib.sh").read_text()


def _bash_constant(name: str) -> int:
    return int(re.search(rf"^{name}=(\d+)", LIB, re.M).group(1))


def test_the_limits_of_both_halves_are_the_same():
    assert _bash_constant("__export_limit") == task_script.EXPORT_LIMIT
    assert _bash_constant("__max_value_length") == errors.MAX_VALUE_LENGTH


def test_what_a_task_script_writes_the_record_reads(tmp_path):
    write_module(tmp_path, "rec", '''
        def gen(dsl):
            yield dsl.task(key="t").outputs(v=str, f=dsl.file("f.txt")).calls(
                'echo x > "$f"; export v=$'"'"'a b\\\\nc'"'"'\\n').calls("sleep 0.1\\n")()
    ''')
    assert drypipe("prepare", "-p", "rec:gen", "-i", "i", cwd=tmp_path).returncode == 0
    record = TaskRecord(tmp_path / "i", "t")
    assert record.state() == "ready" and record.pid() is None
    assert subprocess.run([str(record.path("task"))], capture_output=True).returncode == 0
    assert record.state() == "completed"
    pid = record.pid()
    assert pid.valid and pid.pid > 0 and pid.host == socket.gethostname()
    assert record.output_vars() == {"v": "a b\nc"}
    events = [event.split()[0] for _, event in record.log_events()]
    assert events == ["state.step-started.0", "state.step-completed.0", "state.step-started.1", "cpu",
                      "state.completed"]
    timing = record.timing()
    assert timing.seconds is not None and 0.1 <= timing.seconds < 10
    assert record.step_count() == 2
    assert record.task_conf().executor_name() == "process"


def test_a_failure_reason_written_by_bash_is_read_back(tmp_path):
    write_module(tmp_path, "fail", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("exit 9\\n")()
    ''')
    drypipe("run", "-p", "fail:gen", "-i", "i", cwd=tmp_path)
    assert TaskRecord(tmp_path / "i", "t").failure_reason() == "state.failed.0 exit code 9"
