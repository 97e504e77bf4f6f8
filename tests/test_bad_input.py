"""Bad pipelines give one clear line naming the culprit, a non-zero exit, and change nothing."""
import pytest

from tests.helpers import drypipe, snapshot, write_module

GOOD = '''
def gen(dsl):
    yield dsl.task(key="ok").outputs(x=int).calls("export x=1\\n")()
'''

CASES = {
    "generator_raises": ('''
        def gen(dsl):
            yield dsl.task(key="ok").calls("true\\n")()
            raise ValueError("boom in generator")
        ''', ["ValueError: boom in generator", "bad.py:4"]),
    "duplicate_key": ('''
        def gen(dsl):
            yield dsl.task(key="dup").calls("true\\n")()
            yield dsl.task(key="dup").calls("true\\n")()
        ''', ["duplicate task key 'dup'", "bad.py:4"]),
    "key_with_slash": ('''
        def gen(dsl):
            yield dsl.task(key="a/b").calls("true\\n")()
        ''', ["invalid task key 'a/b'", "bad.py:3"]),
    "key_dotdot": ('''
        def gen(dsl):
            yield dsl.task(key="a..b").calls("true\\n")()
        ''', ["invalid task key 'a..b'"]),
    "key_leading_dot": ('''
        def gen(dsl):
            yield dsl.task(key=".hidden").calls("true\\n")()
        ''', ["invalid task key '.hidden'"]),
    "key_space": ('''
        def gen(dsl):
            yield dsl.task(key="a b").calls("true\\n")()
        ''', ["invalid task key 'a b'"]),
    "key_shell_metachar": ('''
        def gen(dsl):
            yield dsl.task(key="x;rm -rf $HOME").calls("true\\n")()
        ''', ["invalid task key"]),
    "never_yielded_upstream": ('''
        def gen(dsl):
            t1 = dsl.task(key="t1").outputs(x=int).calls("export x=1\\n")()
            yield dsl.task(key="t2").inputs(t1.outputs.x).calls("true\\n")()
        ''', ["task 't2'", "task 't1', which was never yielded", "bad.py:4"]),
    "wrong_input_type": ('''
        def gen(dsl):
            yield dsl.task(key="t1").inputs(x=[1, 2]).calls("true\\n")()
        ''', ["task 't1': input 'x' has unsupported type list"]),
    "wrong_output_type": ('''
        def gen(dsl):
            yield dsl.task(key="t1").outputs(x=dict).calls("true\\n")()
        ''', ["unsupported variable type"]),
    "missing_script": ('''
        def gen(dsl):
            yield dsl.task(key="t1").calls("no-such-script.sh")()
        ''', ["task 't1': script 'no-such-script.sh' not found"]),
    "not_importable_python_call": ('''
        from dry_pipe import DryPipe
        def gen(dsl):
            @DryPipe.python_call()
            def local_func():
                return {}
            yield dsl.task(key="t1").calls(local_func)()
        ''', ["task 't1': python call", "module-level function"]),
    "undecorated_python_call": ('''
        def f():
            return {}
        def gen(dsl):
            yield dsl.task(key="t1").calls(f)()
        ''', ["task 't1': function f is not decorated"]),
    "yields_non_task": ('''
        def gen(dsl):
            yield 42
        ''', ["generator yielded 42, not a task", "bad.py:3"]),
    "no_calls": ('''
        def gen(dsl):
            yield dsl.task(key="t1").outputs(x=int)()
        ''', ["task 't1' has no calls"]),
    "unknown_output_name": ('''
        def gen(dsl):
            t1 = dsl.task(key="t1").outputs(x=int).calls("export x=1\\n")()
            yield t1
            yield dsl.task(key="t2").inputs(t1.outputs.y).calls("true\\n")()
        ''', ["task 't1' has no output 'y'"]),
    "bad_task_conf_field": ('''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="t1", task_conf=TaskConf(executer_type="process", no_such=1)).calls("true\\n")()
        ''', ["TaskConf: unknown field(s) no_such"]),
    "unknown_executor": ('''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="t1", task_conf=TaskConf(executer_type="warp-drive")).calls("true\\n")()
        ''', ["unknown executer_type 'warp-drive'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_generator_is_one_clear_line_and_changes_nothing(tmp_path, case):
    source, expected = CASES[case]
    write_module(tmp_path, "good", GOOD)
    write_module(tmp_path, "bad", source)
    instance = tmp_path / "instance"
    drypipe("run", "-p", "good:gen", "-i", str(instance), cwd=tmp_path, check=True)
    before = snapshot(instance)
    result = drypipe("run", "-p", "bad:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("drypipe: error: ")
    for fragment in expected:
        assert fragment in errors[0], errors[0]
    assert snapshot(instance) == before


def test_unimportable_generator_module(tmp_path):
    result = drypipe("run", "-p", "no_such_module:gen", "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot import 'no_such_module'" in result.stderr
    assert not (tmp_path / "i").exists()


def test_generator_spec_without_colon(tmp_path):
    result = drypipe("run", "-p", "just_a_module", "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode == 1
    assert "expected <module>:<function>" in result.stderr


def test_very_verbose_shows_traceback(tmp_path):
    write_module(tmp_path, "bad", CASES["generator_raises"][0])
    result = drypipe("-vv", "run", "-p", "bad:gen", "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_python_call_returning_wrong_type_fails_the_task(tmp_path):
    write_module(tmp_path, "p", '''
        from dry_pipe import DryPipe
        @DryPipe.python_call()
        def f():
            return {"n": "not a number"}
        def gen(dsl):
            yield dsl.task(key="t1").outputs(n=int).calls(f)()
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert (instance / ".drypipe/t1/state.failed.0").exists()
    assert "returned n='not a number', but n is declared int" in (instance / ".drypipe/t1/out.log").read_text()
