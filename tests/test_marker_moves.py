"""A task moves its marker to a later state by a hard link of the new name and an unlink of
the old one (bash's loadable ln and unlink: no fork).  A crash between the two leaves both
names: every reader takes the later state, and the next orchestrator removes the earlier."""
from __future__ import annotations

import re
import subprocess

import pytest

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.task_script import markers_bash
from tests.helpers import drypipe, require_bash_loadables, state_of, write_module

STATES = ["waiting", "ready", "launched", "step-started.0", "step-completed.0", "step-started.1",
          "step-completed.1", "step-started.10", "completed", "failed.3", "killed.0", "timed-out.2", "lost"]
# (earlier, later): the moves the task runtime makes by link + unlink
CUT_SHORT = [("launched", "step-started.0"), ("launched", "failed.0"), ("step-started.0", "step-completed.0"),
             ("step-completed.0", "step-started.1"), ("step-started.1", "failed.1"),
             ("step-started.0", "completed"), ("step-completed.1", "killed.2"), ("step-started.2", "timed-out.2")]


def _bash(script: str) -> str:
    return subprocess.run(["bash", "-c", markers_bash() + script], capture_output=True, text=True, check=True).stdout


def test_bash_and_python_order_states_alike():
    ranks = _bash("for s in " + " ".join(STATES) + '; do __rank "$s"; echo "$__r"; done').split()
    assert [int(r) for r in ranks] == [st.rank(s) for s in STATES]


@pytest.mark.parametrize("earlier,later", CUT_SHORT)
def test_a_move_cut_short_reads_as_its_later_state(tmp_path, earlier, later):
    for name in (earlier, later):
        (tmp_path / f"state.{name}").touch()
    assert st.read_state(str(tmp_path)) == later
    assert _bash(f'__marker_in {tmp_path} && echo "$__state"').strip() == later
    assert st.scan(str(tmp_path), strict=True)[0] == later  # the orchestrator's start: the earlier name goes
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"state.{later}"]


@pytest.mark.parametrize("pair", [("completed", "failed.0"), ("lost", "completed"),
                                  ("ready", "launched"), ("killed.0", "failed.0")])
def test_two_markers_no_move_leaves_are_refused(tmp_path, pair):
    for name in pair:
        (tmp_path / f"state.{name}").touch()
    with pytest.raises(UserError, match=r"2 state markers .* a task has exactly one"):
        st.scan(str(tmp_path), strict=True)


PIPELINE = '''
def gen(dsl):
    yield dsl.task(key="two").calls("echo one\\n").calls("echo two\\n")()
'''


def test_a_crash_between_link_and_unlink_costs_nothing(tmp_path):
    """A completed task with the earlier name of its last move left over: not run again, and
    left with one marker; a failed one restarts from the step that failed."""
    write_module(tmp_path, "moves", PIPELINE)
    instance = tmp_path / "i"
    drypipe("run", "-p", "moves:gen", "-i", str(instance), cwd=tmp_path, check=True)
    control = instance / ".drypipe/two"
    (control / "state.step-started.1").touch()  # as the task's crash would have left it
    done = drypipe("run", "-p", "moves:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert sorted(p.name for p in control.glob("state.*")) == ["state.completed"], done.stdout
    assert (control / "out.log").read_text().count("two") == 1  # not run again
    (control / "state.completed").rename(control / "state.failed.1")
    (control / "state.step-started.1").touch()
    drypipe("run", "-p", "moves:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path, check=True)
    assert state_of(instance, "two") == "completed"
    assert sorted(p.name for p in control.glob("state.*")) == ["state.completed"]
    assert (control / "out.log").read_text().count("one") == 1  # restarted at step 1


def test_moves_fork_no_process(tmp_path):
    """With bash-builtins installed, a task's marker moves run no `mv`: a bash task whose steps
    only use builtins starts no program at all."""
    require_bash_loadables("ln", "unlink", without="moves use mv")
    write_module(tmp_path, "moves", PIPELINE)
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "moves:gen", "-i", str(instance), cwd=tmp_path, check=True)
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log), "bash",
                    str(instance / ".drypipe/two/task")], check=True, capture_output=True)
    programs = re.findall(r'execve\("([^"]+)"', log.read_text())
    assert programs == [programs[0]] and programs[0].endswith("/bash"), programs
    assert state_of(instance, "two") == "completed"
    assert re.findall(r"state\.(\S+)", (instance / ".drypipe/two/drypipe.log").read_text()) == [
        "step-started.0", "step-completed.0", "step-started.1", "completed"]
