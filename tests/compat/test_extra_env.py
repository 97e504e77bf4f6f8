"""TaskConf(extra_env=...) values are expanded like the original DryPipe's (os.path.expandvars):
in the order given, each seeing the ones before it and the task's `__` variables; variables
only, never command substitution."""
from tests.helpers import drypipe, state_of, write_module


def test_extra_env_values_are_expanded_in_order(tmp_path):
    write_module(tmp_path, "env_pipeline", '''
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            conf = TaskConf(extra_env={
                "aaa": "A",
                "bbb": "$aaa-B",
                "ccc": "${bbb}/C in $__pipeline_instance_dir",
                "ddd": "$not_set_anywhere ${also_not} $$ $ ${}",
            })
            yield dsl.task(key="t", task_conf=conf).produces(o=dsl.file("o.txt")).calls("""
                #!/usr/bin/env bash
                printf '%s\\n' "$bbb" "$ccc" "$ddd" > $o
            """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "env_pipeline:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    lines = (instance / "output/t/o.txt").read_text().splitlines()
    # unknown variables stay as they are, as os.path.expandvars leaves them
    assert lines == ["A-B", f"A-B/C in {instance}", "$not_set_anywhere ${also_not} $$ $ ${}"]


def test_extra_env_never_runs_commands(tmp_path):
    write_module(tmp_path, "env_unsafe", '''
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            conf = TaskConf(extra_env={
                "x": "$(touch PWNED1) `touch PWNED2` ${x:-$(touch PWNED3)} '\\"; touch PWNED4; \\"",
                "y": "$__task_output_dir/$(touch PWNED5)",
            })
            yield dsl.task(key="t", task_conf=conf).produces(o=dsl.file("o.txt")).calls("""
                #!/usr/bin/env bash
                printf '%s\\n' "$x" "$y" > $o
            """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "env_unsafe:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    assert state_of(instance, "t") == "completed"
    lines = (instance / "output/t/o.txt").read_text().splitlines()
    assert lines == ["$(touch PWNED1) `touch PWNED2` ${x:-$(touch PWNED3)} '\"; touch PWNED4; \"",
                     f"{instance}/output/t/$(touch PWNED5)"]
    assert not list(tmp_path.rglob("PWNED*"))
