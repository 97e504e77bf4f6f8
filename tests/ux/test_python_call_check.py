"""A python call's parameters are matched with the task's inputs and outputs when the generator
runs, not when the task runs after its upstream tasks: a parameter that nothing fills is a
one-line error naming the task, the function, the parameter and the source lines, and nothing
is written."""
from __future__ import annotations

import pytest

from tests.helpers import drypipe, snapshot, write_module

PIPELINE = '''
from dry_pipe import DryPipe


@DryPipe.python_call()
def fine(a, n, scale=2, __task_key=None, **rest):
    return {{"n": 1}}


@DryPipe.python_call()
def work(a, n, sample):
    return {{"n": 1}}


def gen(dsl):
    first = dsl.task(key="01-first").outputs(f=dsl.file("x.txt")).calls("touch $f\\n")()
    yield first
    yield dsl.task(key="ok").inputs(a=first.outputs.f).outputs(n=int).calls(fine)()
    yield dsl.task(key="second").inputs(a=first.outputs.f).outputs(n=int).calls({func}){finish}
'''


@pytest.mark.parametrize("finish", ["()", ""], ids=["finished", "yielded-unfinished"])
def test_unknown_parameter_fails_at_generation(tmp_path, finish):
    write_module(tmp_path, "p", PIPELINE.format(func="fine", finish=finish))
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)  # every parameter is filled
    write_module(tmp_path, "p", PIPELINE.format(func="work", finish=finish))
    (instance / ".drypipe" / "second" / "state.completed").rename(instance / ".drypipe" / "second" / "state.waiting")
    before = snapshot(instance)
    for command in ("run", "prepare"):
        result = drypipe(command, "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == ""
        path = tmp_path / "p.py"
        assert result.stderr == (
            f"drypipe: error: task 'second': python call p:work() ({path}:10) takes 'sample', which is not an "
            f"input, output or __ variable of the task (inputs: a; outputs: n) ({path}:19)\n")
        assert snapshot(instance) == before  # nothing written
