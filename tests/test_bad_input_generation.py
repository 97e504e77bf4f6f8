"""Bad input refused while the generator runs: TaskConf fields of the wrong type, strings with
a NUL or a lone surrogate, a generator that returns instead of yielding, input files that are
not regular files, paths that name no file, `**` inside a name, a generator that never ends,
and a full disk.

Each gives ONE error line naming the task (and the user's source line) and the culprit, a
non-zero exit code, no traceback, and writes nothing: no state marker, no changed file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import drypipe, snapshot, write_module

GOOD = '''
def gen(dsl):
    yield dsl.task(key="ok").outputs(x=int).calls("export x=1\\n")()
'''

TMP = "{tmp}"  # replaced by the case's directory


@dataclass
class Case:
    source: str  # bad.py
    expect: list[str]  # fragments of the one error line
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 30  # the hang cases fail, not hang, on code that reads a FIFO or /dev/zero


def yields(statement: str, *expect: str, **kwargs) -> Case:
    """bad.py whose generator yields `statement` on line 4 (so every case names bad.py:4)."""
    return Case(f"from dry_pipe import TaskConf\n\ndef gen(dsl):\n    yield {statement}\n", [*expect, "bad.py:4"], **kwargs)


def conf(args: str, *expect: str) -> Case:
    return yields(f'dsl.task(key="t", task_conf=TaskConf({args})).calls("true\\n")()', *expect)


def inputs(args: str, *expect: str, **kwargs) -> Case:
    return yields(f'dsl.task(key="t").inputs({args}).calls("true\\n")()', "task 't'", *expect, **kwargs)


def outputs(args: str, *expect: str) -> Case:
    return yields(f'dsl.task(key="t").outputs({args}).calls("true\\n")()', "task 't'", *expect)


def calls(code: str, *expect: str) -> Case:
    return yields(f'dsl.task(key="t").calls({code})()', "task 't'", *expect)


CASES: dict[str, Case] = {
    # -- TaskConf fields of the wrong type (checked when TaskConf is built: the line is the call's)
    "conf_container_int": conf("container=5", "TaskConf: container must be a str or None, got int: 5"),
    "conf_python_bin_list": conf('python_bin=["python3"]', "TaskConf: python_bin must be a str or None, got list"),
    "conf_slurm_account_int": conf("slurm_account=1234", "TaskConf: slurm_account must be a str or None, got int"),
    "conf_command_before_task_bytes": conf('command_before_task=b"module load x"',
                                           "TaskConf: command_before_task must be a str or None, got bytes"),
    "conf_extra_env_value_none": conf('extra_env={"A": None}',
                                      "TaskConf: extra_env['A'] must be a str, int or float, got NoneType"),
    "conf_extra_env_value_list": conf('extra_env={"A": [1]}',
                                      "TaskConf: extra_env['A'] must be a str, int or float, got list"),
    "conf_executor_options_list": conf('executor_options=["x"]', "TaskConf: executor_options must be a dict, got list"),
    # ... and when a task uses it: a field changed after it was built.
    "conf_changed_after_built": Case(textwrap.dedent('''\
        from dry_pipe import TaskConf
        def gen(dsl):
            conf = TaskConf()
            conf.container = 5
            yield dsl.task(key="t", task_conf=conf).calls("true\\n")()
        '''), ["task 't': TaskConf: container must be a str or None, got int: 5", "bad.py:5"]),
    # -- lone surrogates (no UTF-8 form) ----------------------------------------------------------
    "surrogate_in_value": inputs('x=dsl.val("a\\udc80")', "input 'x' contains a lone surrogate '\\udc80'"),
    "surrogate_in_str_input": inputs('x="\\udc80"', "input 'x' contains a lone surrogate"),
    "surrogate_in_bash_snippet": calls('"echo \\udc80\\n"', "step 0 (bash snippet) contains a lone surrogate"),
    "surrogate_in_extra_env": conf('extra_env={"A": "\\udc80"}', "TaskConf: extra_env['A'] contains a lone surrogate"),
    "surrogate_in_output_file": outputs('f=dsl.file("a\\udc80.txt")', "output 'f'", "contains a lone surrogate"),
    "surrogate_in_container": conf('container="img\\udc80.sif"', "TaskConf: container", "contains a lone surrogate"),
    # -- NUL characters (bash would cut the value there, silently) --------------------------------
    "nul_in_value": inputs('x=dsl.val("a\\0b")', "input 'x' contains a NUL character"),
    "nul_in_str_input": inputs('x="a\\0b"', "input 'x' contains a NUL character"),
    "nul_in_bash_snippet": calls('"echo a\\0b\\n"', "step 0 (bash snippet) contains a NUL character"),
    "nul_in_extra_env": conf('extra_env={"A": "a\\0b"}', "TaskConf: extra_env['A'] contains a NUL character"),
    "nul_in_input_file": inputs('x=dsl.file("a\\0b")', "input 'x'", "contains a NUL character"),
    "nul_in_sbatch_options": conf('sbatch_options=["--comment=a\\0b"]', "TaskConf: sbatch_options contains a NUL"),
    # -- a generator that returns instead of yielding ----------------------------------------------
    "returns_a_task": Case('\ndef gen(dsl):\n    return dsl.task(key="t").calls("true\\n")()\n',
                           ["generator gen", "bad.py:2", "returned task 't' instead of yielding tasks"]),
    "returns_a_list": Case('\ndef gen(dsl):\n    return [dsl.task(key="t").calls("true\\n")()]\n',
                           ["generator gen", "bad.py:2", "returned a list instead of yielding tasks"]),
    # -- input files no task produced that are not regular files -----------------------------------
    "input_is_a_directory": inputs(f'x=dsl.file("{TMP}/a-dir")', f"input 'x': '{TMP}/a-dir' is a directory"),
    "input_is_a_directory_in_the_instance": inputs('x=dsl.file("data")', "input 'x':", "/data' is a directory"),
    "input_is_a_fifo": inputs(f'x=dsl.file("{TMP}/a-fifo")', f"input 'x': '{TMP}/a-fifo' is a FIFO"),
    "input_is_dev_zero": inputs('x=dsl.file("/dev/zero")', "input 'x': '/dev/zero' is a character device"),
    # -- paths that name no file ------------------------------------------------------------------
    "input_file_dot": inputs('x=dsl.file(".")', "input 'x' must name a file, got '.'"),
    "input_file_empty": inputs('x=dsl.file("")', "input 'x' must name a file, got ''"),
    "input_file_a_dotdot": inputs('x=dsl.file("a/..")', "input 'x' must name a file, got 'a/..'"),
    "output_file_dot": outputs('f=dsl.file(".")', "output 'f' must be a relative path inside", "got '.'"),
    "output_file_a_dot": outputs('f=dsl.file("a/.")', "output 'f' must be a relative path inside"),
    # -- `**` inside a name ------------------------------------------------------------------------
    "fileset_double_star_in_a_name": outputs('s=dsl.fileset("a**b.txt")',
                                             "output 's' must use '**' only as a whole path component", "'a**b.txt'"),
    # -- a generator that never ends ---------------------------------------------------------------
    "yields_forever": Case(textwrap.dedent('''\
        import itertools
        def gen(dsl):
            for i in itertools.count():
                yield dsl.task(key=f"t{i}").calls("true\\n")()
        '''), ["yielded more than 100 tasks", "DRYPIPE_MAX_TASKS", "the last was 't100'", "bad.py:4"],
        env={"DRYPIPE_MAX_TASKS": "100"}, timeout=20),
    "max_tasks_not_a_number": Case(GOOD, ["DRYPIPE_MAX_TASKS must be a positive integer, got 'lots'"],
                                   env={"DRYPIPE_MAX_TASKS": "lots"}),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """An instance where `ok` has completed, copied for every case."""
    root = tmp_path_factory.mktemp("generation-template")
    write_module(root, "good", GOOD)
    drypipe("run", "-p", "good:gen", "-i", str(root / "instance"), cwd=root, check=True)
    return root / "instance"


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("drypipe: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_at_generation(name, tmp_path, template):
    case = CASES[name]
    instance = tmp_path / "instance"
    shutil.copytree(template, instance, symlinks=True)
    (tmp_path / "a-dir").mkdir()
    os.mkfifo(tmp_path / "a-fifo")
    (instance / "data").mkdir()
    write_module(tmp_path, "bad", case.source.replace(TMP, str(tmp_path)))
    before = snapshot(instance)
    result = drypipe("run", "-p", "bad:gen", "-i", str(instance), cwd=tmp_path, env=case.env, timeout=case.timeout)
    assert result.returncode != 0, result.stdout + result.stderr
    line = _one_error_line(result)
    for fragment in case.expect:
        assert fragment.replace(TMP, str(tmp_path)) in line, (fragment, line)
    assert not list((instance / ".drypipe").glob("t*/state.*")), "a state marker was written"
    assert snapshot(instance) == before


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs on tmp_path/instance (root only), unmounted afterwards."""
    mount_point = tmp_path / "instance"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_full_disk_names_the_file(tmp_path, full_disk):
    # The task's bash snippet (2 MB) does not fit in its step file on a 1 MiB file system.
    write_module(tmp_path, "big", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("echo " + "x" * 2_000_000 + "\\n")()
        ''')
    result = drypipe("run", "-p", "big:gen", "-i", str(full_disk), cwd=tmp_path)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert line.startswith(f"drypipe: error: {full_disk}/.drypipe/t/"), line
    assert line.endswith(": No space left on device"), line
    assert "Errno" not in line
    assert not list((full_disk / ".drypipe").glob("t/state.*"))
