"""The bad-input catalogue: every case gives ONE error line naming the culprit, a non-zero exit
code, and changes nothing in the instance (tests/helpers.snapshot before and after).

It adds to tests/test_bad_input.py (generator errors, keys, types, TaskConf fields): CLI
arguments, corrupted markers and task-conf.json, unloadable generators, invalid TaskConf values,
and paths that would leave the instance.  The last tests are runtime failures, where the
decision is a task state rather than a refusal (each says what drypipe does and why).
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import drypipe, snapshot, write_module
from tests.reliability.support import states

GOOD = '''
from dry_pipe import DryPipe

CONSTANT = 42


def returns_int():
    return 7


def gen(dsl):
    yield dsl.task(key="ok").outputs(x=int, f=dsl.file("f.txt")).calls("export x=1\\necho hi > $f\\n")()
    yield dsl.task(key="two").calls("echo a\\n").calls("echo b\\n")()
'''

I = "{instance}"  # replaced by the instance dir of the case
T = "{tmp}"  # replaced by the case's directory (modules live there)


@dataclass
class Case:
    args: list[str]
    expect: list[str]  # fragments of the one error line
    module: str | None = None  # source of bad.py, when the case is a bad generator
    setup: Callable[[Path, Path], None] | None = None  # (instance, tmp) -> None
    exit_code: int | None = None  # None: any non-zero


def run_bad(module: str, *expect: str, function: str = "gen") -> Case:
    return Case(["run", "-p", f"bad:{function}", "-i", I], list(expect), module=module)


def _marker(instance: Path, key: str) -> Path:
    return next((instance / ".drypipe" / key).glob("state.*"))


def _rename_marker(new: str):
    def setup(instance: Path, tmp: Path) -> None:
        _marker(instance, "ok").rename(instance / ".drypipe/ok" / new)
    return setup


def _add_marker(instance: Path, tmp: Path) -> None:
    (instance / ".drypipe/ok/state.failed.0").touch()


def _marker_directory(instance: Path, tmp: Path) -> None:
    _marker(instance, "ok").unlink()
    (instance / ".drypipe/ok/state.completed").mkdir()


def _in_flight_with_conf(content: str | Callable[[dict], dict]):
    """`ok` looks started by an earlier orchestrator (step-started.0), with a damaged task-conf.json."""
    def setup(instance: Path, tmp: Path) -> None:
        control = instance / ".drypipe/ok"
        _marker(instance, "ok").rename(control / "state.step-started.0")
        path = control / "task-conf.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content(json.loads(path.read_text()))))
    return setup


def _with_conf_field(name: str, value):
    def change(doc: dict) -> dict:
        doc["task_conf"][name] = value
        return doc
    return change


def _write(name: str, data: bytes):
    def setup(instance: Path, tmp: Path) -> None:
        (tmp / name).write_bytes(data)
    return setup


def _dangling_symlink(instance: Path, tmp: Path) -> None:
    (tmp / "gone.py").symlink_to(tmp / "deleted-long-ago.py")


TASK_CONF = '''
from dry_pipe import TaskConf
def gen(dsl):
    yield dsl.task(key="t", task_conf=TaskConf({args})).calls("true\\n")()
'''


def conf_case(args: str, *expect: str) -> Case:
    return run_bad(TASK_CONF.format(args=args), *expect)


def task_case(body: str, *expect: str) -> Case:
    return run_bad("def gen(dsl):\n" + textwrap.indent(textwrap.dedent(body), "    "), *expect)


CASES: dict[str, Case] = {
    # -- command-line arguments -----------------------------------------------------------------
    "sleep_schedule_not_numbers": Case(["run", "-p", "good:gen", "-i", I, "--sleep-schedule", "1,x"],
                                       ["'--sleep-schedule'", "'1,x'"], exit_code=2),
    "sleep_schedule_negative": Case(["run", "-p", "good:gen", "-i", I, "--sleep-schedule=-1"],
                                    ["'--sleep-schedule'", "non-negative"], exit_code=2),
    "max_local_jobs_zero": Case(["run", "-p", "good:gen", "-i", I, "--max-local-jobs", "0"],
                                ["'--max-local-jobs'", "0 is not in the range"], exit_code=2),
    "max_local_jobs_not_a_number": Case(["run", "-p", "good:gen", "-i", I, "--max-local-jobs", "many"],
                                        ["'--max-local-jobs'", "'many'"], exit_code=2),
    "task_unknown_key": Case(["task", "-i", I, "-k", "nosuch"], ["no task 'nosuch'"]),
    "restart_unknown_key": Case(["restart", "-i", I, "-k", "nosuch"], ["no task 'nosuch'"]),
    "kill_unknown_key": Case(["kill", "-i", I, "-k", "nosuch"], ["no task 'nosuch'"]),
    "kill_glob_matching_no_task": Case(["kill", "-i", I, "-k", "nosuch.*"], ["no task matches 'nosuch.*'"]),
    "poll_task_unknown_key": Case(["poll-task", "-i", I, "-k", "nosuch"], ["no task 'nosuch'"]),
    "dump_env_unknown_key": Case(["dump-env", "-i", I, "-k", "nosuch"], ["no task 'nosuch'"]),
    "call_unknown_key": Case(["call", "-i", I, "-k", "nosuch", "good:gen"], ["no task 'nosuch'"]),
    "why_unknown_key": Case(["why", "-i", I, "-p", "good:gen", "nosuch"], ["does not yield task 'nosuch'"]),
    "restart_with_a_glob_for_a_key": Case(["restart", "-i", I, "-k", "ok*"], ["invalid task key 'ok*'"]),
    "task_key_traversal": Case(["task", "-i", I, "-k", "../ok"], ["invalid task key '../ok'"]),
    "dump_env_absolute_key": Case(["dump-env", "-i", I, "-k", "/etc/passwd"], ["invalid task key '/etc/passwd'"]),
    "status_nonexistent_instance": Case(["status", "-i", "/nonexistent/instance"],
                                        ["/nonexistent/instance is not a pipeline instance"]),
    "status_plain_directory": Case(["status", "-i", T], ["is not a pipeline instance (no .drypipe/)"]),
    "restart_at_step_beyond_the_steps": Case(["restart", "-i", I, "-k", "ok", "--at-step", "5"],
                                             ["task ok: --at-step 5: it has 1 step(s)"]),
    "restart_at_negative_step": Case(["restart", "-i", I, "-k", "two", "--at-step", "-1"],
                                     ["'--at-step'", "-1"], exit_code=2),
    "unknown_subcommand": Case(["runn"], ["No such command 'runn'"], exit_code=2),
    "unknown_option": Case(["run", "-p", "good:gen", "-i", I, "--frobnicate"], ["No such option", "--frobnicate"],
                           exit_code=2),
    "missing_generator": Case(["run", "-i", I], ["Missing option", "--generator"], exit_code=2),
    "instance_dir_is_a_file": Case(["run", "-p", "good:gen", "-i", T + "/a-file"], ["a-file", "is a file"],
                                   setup=_write("a-file", b"not a directory"), exit_code=2),
    "cache_unknown_protocol": Case(["run", "-p", "good:gen", "-i", I, "--cache", "nosuchproto://bucket/x"],
                                   ["--cache nosuchproto://bucket/x"]),
    # -- generators that cannot be loaded -------------------------------------------------------
    "generator_missing_function": Case(["run", "-p", "good:nosuch", "-i", I], ["has no attribute 'nosuch'"]),
    "generator_not_callable": Case(["run", "-p", "good:CONSTANT", "-i", I],
                                   ["'good:CONSTANT' is not a pipeline or a function"]),
    "generator_returns_non_pipeline": Case(["run", "-p", "good:returns_int", "-i", I],
                                           ["returns_int() returned int, not a pipeline"]),
    "generator_syntax_error": Case(["run", "-p", "broken:gen", "-i", I], ["cannot import 'broken'", "SyntaxError"],
                                   setup=_write("broken.py", b"def gen(dsl)\n    yield\n")),
    "generator_not_utf8": Case(["run", "-p", "latin:gen", "-i", I], ["cannot import 'latin'", "SyntaxError"],
                               setup=_write("latin.py", b'def gen(dsl):\n    yield "\xff\xfe"\n')),
    "generator_unreadable": Case(["run", "-p", "gone:gen", "-i", I], ["cannot import 'gone'"],
                                 setup=_dangling_symlink),
    # -- corrupted state markers ----------------------------------------------------------------
    "two_state_markers": Case(["run", "-p", "good:gen", "-i", I],
                              ["task ok", "2 state markers (state.completed, state.failed.0)"], setup=_add_marker),
    "unknown_state_name": Case(["run", "-p", "good:gen", "-i", I], ["task ok", "unknown state 'state.bogus'"],
                               setup=_rename_marker("state.bogus")),
    "state_step_not_a_number": Case(["run", "-p", "good:gen", "-i", I],
                                    ["task ok", "unknown state 'state.failed.x'"],
                                    setup=_rename_marker("state.failed.x")),
    "marker_is_a_directory": Case(["run", "-p", "good:gen", "-i", I],
                                  ["task ok", "state.completed is not a regular file"], setup=_marker_directory),
    # -- corrupted task-conf.json of a task to adopt --------------------------------------------
    "in_flight_conf_invalid_json": Case(["run", "-p", "good:gen", "-i", I], ["task ok: unreadable", "task-conf.json"],
                                        setup=_in_flight_with_conf("{not json")),
    "in_flight_conf_empty": Case(["run", "-p", "good:gen", "-i", I], ["task ok: unreadable", "task-conf.json"],
                                 setup=_in_flight_with_conf("")),
    "in_flight_conf_missing_task_conf": Case(["run", "-p", "good:gen", "-i", I],
                                             ["task ok: unreadable", "no field 'task_conf'"],
                                             setup=_in_flight_with_conf("{}")),
    "in_flight_conf_bad_field_type": Case(["run", "-p", "good:gen", "-i", I],
                                          ["task ok: unreadable", "sbatch_options must be a list"],
                                          setup=_in_flight_with_conf(_with_conf_field("sbatch_options", "-t 5"))),
    "in_flight_conf_unknown_executor": Case(["run", "-p", "good:gen", "-i", I],
                                            ["task ok: unreadable", "unknown executer_type 'warp-drive'"],
                                            setup=_in_flight_with_conf(_with_conf_field("executer_type", "warp-drive"))),
    # -- invalid TaskConf values ----------------------------------------------------------------
    "sbatch_options_not_a_list": conf_case('executer_type="slurm", sbatch_options="--time=1:00"',
                                           "sbatch_options must be a list of strings", "'--time=1:00'"),
    "sbatch_options_not_strings": conf_case('sbatch_options=["--time", 5]', "sbatch_options must be a list of strings"),
    "extra_env_name_with_space": conf_case('extra_env={"BAD NAME": "x"}', "extra_env: 'BAD NAME' is not a valid"),
    "extra_env_name_leading_digit": conf_case('extra_env={"1X": "y"}', "extra_env: '1X' is not a valid"),
    "extra_env_name_not_ascii": conf_case('extra_env={"\u00e9t\u00e9": "y"}', "extra_env: '\u00e9t\u00e9' is not a valid"),
    "extra_env_name_reserved": conf_case('extra_env={"__control_dir": "/tmp"}', "extra_env: '__control_dir'"),
    "extra_env_not_a_dict": conf_case('extra_env=["A=1"]', "extra_env must map variable names", "['A=1']"),
    "max_simultaneous_jobs_zero": conf_case("max_simultaneous_jobs=0", "max_simultaneous_jobs must be a positive"),
    "executer_type_empty": conf_case('executer_type=""', "executer_type must be a non-empty string"),
    "task_conf_is_a_dict": task_case('yield dsl.task(key="t", task_conf={"executer_type": "slurm"}).calls("true\\n")()',
                                     "task 't': task_conf must be a TaskConf, got dict"),
    "pipeline_task_conf_is_a_string": run_bad('''
        from dry_pipe import DryPipe
        def gen(dsl):
            yield dsl.task(key="t").calls("true\\n")()
        def pipeline():
            return DryPipe.create_pipeline(gen, task_conf="slurm")
        ''', "create_pipeline: task_conf must be a TaskConf", function="pipeline"),
    # -- paths that would leave the instance, names bash cannot take -----------------------------
    "output_file_in_parent_dir": task_case('yield dsl.task(key="t").outputs(f=dsl.file("../x")).calls("true\\n")()',
                                           "task 't': output 'f' must be a relative path", "'../x'"),
    "output_file_absolute": task_case('yield dsl.task(key="t").outputs(f=dsl.file("/tmp/x")).calls("true\\n")()',
                                      "output 'f' must be a relative path", "'/tmp/x'"),
    "output_file_nested_traversal": task_case(
        'yield dsl.task(key="t").outputs(f=dsl.file("a/../../x")).calls("true\\n")()',
        "output 'f' must be a relative path", "'a/../../x'"),
    "fileset_in_parent_dir": task_case('yield dsl.task(key="t").outputs(s=dsl.fileset("../*")).calls("true\\n")()',
                                       "output 's' must be a relative path", "'../*'"),
    "fileset_absolute": task_case('yield dsl.task(key="t").outputs(s=dsl.fileset("/etc/*")).calls("true\\n")()',
                                  "output 's' must be a relative path", "'/etc/*'"),
    "fileset_empty_glob": task_case('yield dsl.task(key="t").outputs(s=dsl.fileset("")).calls("true\\n")()',
                                    "output 's' must be a relative path", "''"),
    "sub_pipeline_prefix_traversal": run_bad('''
        def sub(dsl):
            yield dsl.task(key="t").calls("true\\n")()
        def gen(dsl):
            yield dsl.sub_pipeline(sub, "../")
        ''', "invalid task key '../t'"),
    "key_absolute_path": task_case('yield dsl.task(key="/etc/passwd").calls("true\\n")()',
                                   "invalid task key '/etc/passwd'"),
    "key_not_a_string": task_case('yield dsl.task(key=5).calls("true\\n")()', "task key must be a string, got int"),
    "output_name_reserved": task_case(
        'yield dsl.task(key="t").outputs(**{"__task_output_dir": int}).calls("true\\n")()',
        "task 't': invalid output name '__task_output_dir'"),
    "input_name_not_a_variable": task_case('yield dsl.task(key="t").inputs(**{"a-b": 1}).calls("true\\n")()',
                                           "task 't': invalid input name 'a-b'"),
    "input_name_not_ascii": task_case('yield dsl.task(key="t").inputs(**{"\u00e9t\u00e9": 1}).calls("true\\n")()',
                                      "task 't': invalid input name '\u00e9t\u00e9'"),
    "positional_literal_input": task_case('yield dsl.task(key="t").inputs(5).calls("true\\n")()',
                                          "task 't': positional inputs must be outputs of other tasks"),
    "calls_a_number": task_case('yield dsl.task(key="t").calls(42)()', "task 't': calls(...) takes", "got 42"),
    "wait_for_tasks_bad_argument": task_case('for _ in dsl.wait_for_tasks(42):\n    pass\nyield from ()',
                                             "wait_for_tasks takes tasks or task keys, got 42"),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """An instance where `ok` and `two` have completed, copied for every case."""
    root = tmp_path_factory.mktemp("catalogue-template")
    write_module(root, "good", GOOD)
    drypipe("run", "-p", "good:gen", "-i", str(root / "instance"), cwd=root, check=True)
    return root / "instance"


def _prepare(tmp_path: Path, template: Path) -> Path:
    write_module(tmp_path, "good", GOOD)
    instance = tmp_path / "instance"
    shutil.copytree(template, instance, symlinks=True)
    return instance


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(("drypipe: error: ", "Error: ")), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(name, tmp_path, template, reliability):
    case = CASES[name]
    instance = _prepare(tmp_path, template)
    if case.module is not None:
        write_module(tmp_path, "bad", case.module)
    if case.setup is not None:
        case.setup(instance, tmp_path)
    before = snapshot(instance)
    args = [a.replace(I, str(instance)).replace(T, str(tmp_path)) for a in case.args]
    env = {k: "" for k in ("DRYPIPE_PIPELINE_GENERATOR",) if k in os.environ}
    result = drypipe(*args, cwd=tmp_path, env=env)
    assert result.returncode != 0, result.stdout + result.stderr
    if case.exit_code is not None:
        assert result.returncode == case.exit_code, (result.returncode, result.stderr)
    line = _one_error_line(result.stderr)
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(instance) == before
    reliability.bad_input(name)


# -- runtime failures: a task state, decided and documented --------------------------------------

PYCALLS = '''
from dry_pipe import DryPipe


@DryPipe.python_call()
def returns_a_list():
    return [1, 2]


@DryPipe.python_call()
def returns_undeclared():
    return {"x": 1, "y": 2}


def gen(dsl):
    yield dsl.task(key="list").outputs(x=int).calls(returns_a_list)()
    yield dsl.task(key="undeclared").outputs(x=int).calls(returns_undeclared)()
'''


def test_python_calls_returning_what_they_must_not_fail_their_task(tmp_path, reliability):
    """A python call's return value is checked when it returns: the task fails (failed.0),
    its out.log and the run's summary say what was wrong; the other tasks are not affected."""
    write_module(tmp_path, "pycalls", PYCALLS)
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "pycalls:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert states(instance) == {"list": "failed.0", "undeclared": "failed.0"}
    log = (instance / ".drypipe/list/out.log").read_text()
    assert "task list: returns_a_list() must return a dict of output variables, got list" in log
    log = (instance / ".drypipe/undeclared/out.log").read_text()
    assert "returns_undeclared() returned 'y', which is not a declared output variable" in log
    assert "returned 'y', which is not a declared output variable" in result.stderr
    reliability.bad_input("python call returning a list")
    reliability.bad_input("python call returning an undeclared variable")


DELETED = '''
def gen(dsl):
    up = dsl.task(key="up").outputs(f=dsl.file("data.txt")).calls("echo data > $f\\n")()
    yield up
    yield dsl.task(key="down").inputs(up.outputs.f).outputs(g=dsl.file("copy.txt")).calls("cp $f $g\\n")()
'''


def test_deleted_output_of_a_completed_task(tmp_path, reliability):
    """Decision (docs/reliability.md): a completed task is never rerun behind the user's back,
    even if its outputs were deleted.  A downstream task that needs the missing file fails
    before its first step runs (failed.0), naming the file and the task that produced it; the
    user reruns the producer (`drypipe restart -k up --wait`), then `drypipe run --restart-failed`."""
    write_module(tmp_path, "deleted", DELETED)
    instance = tmp_path / "i"
    drypipe("run", "-p", "deleted:gen", "-i", str(instance), "--until", "down", cwd=tmp_path, check=True)
    shutil.rmtree(instance / "output" / "up")
    result = drypipe("run", "-p", "deleted:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert states(instance) == {"up": "completed", "down": "failed.0"}
    reason = "missing input file(s): output/up/data.txt"
    assert f"state.failed.0 {reason}" in (instance / ".drypipe/down/drypipe.log").read_text()
    assert f"FAILED down: failed.0 ({reason})" in result.stderr
    assert "outputs of upstream tasks" in (instance / ".drypipe/down/out.log").read_text()
    assert not (instance / "output/down/copy.txt").exists()  # its step never ran

    drypipe("restart", "-i", str(instance), "-k", "up", "--wait", cwd=tmp_path, check=True)
    drypipe("run", "-p", "deleted:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path, check=True)
    assert (instance / "output/down/copy.txt").read_text() == "data\n"
    reliability.bad_input("deleted output of a completed upstream task")
