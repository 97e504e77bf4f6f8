"""Bash steps: by default, as in the original DryPipe, a failing command in the middle of a
snippet is ignored and the last command decides; TaskConf(bash_strict=True) or
DryPipe.create_pipeline(..., bash_strict=True) runs them with `set -euo pipefail`."""
from tests.helpers import drypipe, state_of, write_module

# a snippet as the manual writes them, as a one-line literal (the module is generated)
SNIPPET = repr("""
    #!/usr/bin/env bash
    echo before > $o
    false
    echo after >> $o
""")


def _pipeline(tmp_path, name, create_args="", task_conf="None"):
    write_module(tmp_path, name, f'''
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            yield dsl.task(key="lenient").produces(o=dsl.file("o.txt")).calls({SNIPPET})()
            yield dsl.task(key="chosen", task_conf={task_conf}).produces(o=dsl.file("o.txt")).calls({SNIPPET})()

        def pipeline():
            return DryPipe.create_pipeline(gen{create_args})
        ''')
    instance = tmp_path / name
    result = drypipe("run", "-p", f"{name}:pipeline", "-i", str(instance), cwd=tmp_path)
    return instance, result


def test_default_ignores_a_failing_command_in_the_middle(tmp_path):
    instance, result = _pipeline(tmp_path, "lenient_default")
    assert result.returncode == 0, result.stderr
    for key in ("lenient", "chosen"):
        assert (instance / f"output/{key}/o.txt").read_text() == "before\nafter\n"


def test_task_conf_bash_strict_stops_at_the_failing_command(tmp_path):
    instance, result = _pipeline(tmp_path, "strict_task", task_conf="TaskConf(bash_strict=True)")
    assert result.returncode == 1
    assert state_of(instance, "lenient") == "completed"
    assert state_of(instance, "chosen") == "failed.0"
    assert (instance / "output/chosen/o.txt").read_text() == "before\n"


def test_pipeline_bash_strict_applies_unless_the_task_conf_says_otherwise(tmp_path):
    instance, result = _pipeline(tmp_path, "strict_pipeline", ", bash_strict=True",
                                 task_conf="TaskConf(bash_strict=False)")
    assert result.returncode == 1
    assert state_of(instance, "lenient") == "failed.0"
    assert (instance / "output/lenient/o.txt").read_text() == "before\n"
    assert state_of(instance, "chosen") == "completed"


def test_strict_mode_fails_on_unset_variables_and_pipes(tmp_path):
    write_module(tmp_path, "strict_more", '''
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            strict = TaskConf(bash_strict=True)
            yield dsl.task(key="unset", task_conf=strict).calls("""
                echo "$no_such_variable"
                true
            """)()
            yield dsl.task(key="pipe", task_conf=strict).calls("""
                false | cat
                true
            """)()
            yield dsl.task(key="fine", task_conf=strict).produces(n=int).calls("""
                export n=$(( 1 + 1 ))
            """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    assert drypipe("run", "-p", "strict_more:pipeline", "-i", str(instance), cwd=tmp_path).returncode == 1
    assert state_of(instance, "unset") == "failed.0"
    assert "no_such_variable: unbound variable" in (instance / ".drypipe/unset/out.log").read_text()
    assert state_of(instance, "pipe") == "failed.0"
    assert state_of(instance, "fine") == "completed"
