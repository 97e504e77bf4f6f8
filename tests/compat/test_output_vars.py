"""Output variables, as the original DryPipe treats them: one a task never sets does not fail
it (a warning names it), a downstream task consuming it fails at once naming it and its
producer; a value set by bash is checked against its declared type at the producer."""
from tests.helpers import drypipe, output_vars, state_of, write_module


def test_unset_output_variable_warns_and_fails_its_consumer(tmp_path):
    write_module(tmp_path, "unset_var", '''
        from dry_pipe import DryPipe

        def gen(dsl):
            producer = dsl.task(key="producer").produces(v=int, w=int).calls("""
                #!/usr/bin/env bash
                export w=7
            """)()
            yield producer
            yield dsl.task(key="consumer").consumes(producer.outputs.v).calls("""
                #!/usr/bin/env bash
                echo "got $v"
            """)()
            yield dsl.task(key="other").consumes(producer.outputs.w).produces(x=int).calls("""
                #!/usr/bin/env bash
                export x=$((w + 1))
            """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "unset_var:pipeline", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert state_of(instance, "producer") == "completed"
    assert "warning: output variable(s) not set: v" in (instance / ".drypipe/producer/drypipe.log").read_text()
    assert output_vars(instance, "producer") == {"w": "7"}
    assert state_of(instance, "other") == "completed"
    assert output_vars(instance, "other") == {"x": "8"}
    assert state_of(instance, "consumer") == "failed.0"
    log = (instance / ".drypipe/consumer/drypipe.log").read_text()
    assert "upstream task producer did not set output variable v" in log
    assert "got" not in (instance / ".drypipe/consumer/out.log").read_text()  # no step ran


def test_fetch_of_an_unset_output_variable_is_a_clear_error(tmp_path):
    write_module(tmp_path, "unset_fetch", '''
        from dry_pipe import DryPipe

        def gen(dsl):
            producer = dsl.task(key="producer").produces(v=int).calls("""
                #!/usr/bin/env bash
                echo nothing set
            """)()
            yield producer
            for _ in dsl.wait_for_tasks(producer):
                n = producer.outputs.v.fetch()
                yield dsl.task(key=f"after-{n}").calls("true\\n")()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "unset_fetch:pipeline", "-i", str(instance), cwd=tmp_path)
    assert result.returncode != 0
    assert state_of(instance, "producer") == "completed"
    assert "task 'producer' completed without setting output variable 'v'" in result.stderr
    assert "unset_fetch.py:" in result.stderr  # the line of the fetch


def test_bash_output_variables_are_checked_against_their_type(tmp_path):
    write_module(tmp_path, "typed_vars", '''
        from dry_pipe import DryPipe

        def gen(dsl):
            yield dsl.task(key="bad-int").produces(v=int).calls("""
                #!/usr/bin/env bash
                export v=notanint
            """)()
            yield dsl.task(key="bad-float").produces(f=float).calls("""
                #!/usr/bin/env bash
                export f=1.5x
            """)()
            yield dsl.task(key="good").produces(v=int, f=float, b=bool, s=str).calls("""
                #!/usr/bin/env bash
                export v=-12 f=1.5e3 b=true s=anything
            """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "typed_vars:pipeline", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert state_of(instance, "bad-int") == "failed.0"
    assert "output variable v is declared int, but was set to 'notanint'" in result.stderr
    assert "output variable v is declared int, but was set to 'notanint'" in \
        (instance / ".drypipe/bad-int/drypipe.log").read_text()
    assert state_of(instance, "bad-float") == "failed.0"
    assert "output variable f is declared float, but was set to '1.5x'" in result.stderr
    assert state_of(instance, "good") == "completed"
    assert output_vars(instance, "good") == {"v": "-12", "f": "1.5e3", "b": "true", "s": "anything"}
