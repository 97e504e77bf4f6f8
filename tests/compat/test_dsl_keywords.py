"""Keywords of the original DryPipe's DSL: dsl.var(type=..., may_be_none=...), dsl.file(name,
manage_signature=..., remote_cache_bucket=...), file_in_pipeline_instance_dir(name, must_exist=...),
and TaskBuilder.props(...)."""
from tests.helpers import drypipe, output_vars, state_of, write_module


def test_original_keywords(tmp_path):
    write_module(tmp_path, "keywords", '''
        from dry_pipe import DryPipe

        @DryPipe.python_call()
        def report(maybe, sure):
            return {"seen": f"{maybe!r} {sure!r}"}

        def gen(dsl):
            seed = dsl.file_in_pipeline_instance_dir("seed.txt", must_exist=True)
            producer = dsl.task(key="producer").consumes(seed=seed).produces(
                maybe=dsl.var(type=int, may_be_none=True),
                sure=dsl.var(type=int),
                copy=dsl.file("copy.txt", manage_signature=True, remote_cache_bucket="task"),
            ).props(colour="blue").calls("""
                #!/usr/bin/env bash
                cp $seed $copy
                export sure=3
            """)()
            yield producer
            yield dsl.task(key="bash-consumer").consumes(producer.outputs.maybe, producer.outputs.sure).produces(
                seen=str).calls("""
                #!/usr/bin/env bash
                export seen="${maybe-unset} $sure"
            """)()
            yield dsl.task(key="python-consumer").consumes(producer.outputs.maybe, producer.outputs.sure).produces(
                seen=str).calls(report)()
            for _ in dsl.wait_for_tasks(producer):
                label = f"{producer.props.colour}-{producer.outputs.maybe.fetch()}"
                yield dsl.task(key=f"after-{label}").calls("true\\n")()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    instance.mkdir()
    (instance / "seed.txt").write_text("seed\n")
    drypipe("run", "-p", "keywords:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    assert (instance / "output/producer/copy.txt").read_text() == "seed\n"
    assert output_vars(instance, "bash-consumer") == {"seen": "unset 3"}
    assert output_vars(instance, "python-consumer") == {"seen": "None 3"}
    assert state_of(instance, "after-blue-None") == "completed"


def test_must_exist_refuses_a_missing_file(tmp_path):
    write_module(tmp_path, "must_exist", '''
        def gen(dsl):
            f = dsl.file_in_pipeline_instance_dir("absent.txt", must_exist=True)
            yield dsl.task(key="t").consumes(f=f).calls("cat $f\\n")()
        ''')
    result = drypipe("run", "-p", "must_exist:gen", "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode != 0
    assert "file not found" in result.stderr and "absent.txt" in result.stderr


def test_original_task_conf_fields(tmp_path):
    write_module(tmp_path, "conf_fields", '''
        import sys
        from dry_pipe import DryPipe, TaskConf

        @DryPipe.python_call()
        def flags():
            return {"optimize": sys.flags.optimize}

        def gen(dsl):
            conf = TaskConf(executer_type="process", python_interpreter_switches=["-O"], label="quick")
            yield dsl.task(key="t", task_conf=conf).produces(optimize=int).calls(flags)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "conf_fields:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    assert output_vars(instance, "t") == {"optimize": "1"}


def test_create_pipeline_with_the_original_positional_order(tmp_path):
    write_module(tmp_path, "positional", '''
        import os
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            yield dsl.task(key="t").produces(g=str).calls("export g=$GREETING\\n")()

        def pipeline():
            here = os.path.dirname(os.path.abspath(__file__))
            return DryPipe.create_pipeline(gen, here, TaskConf(extra_env={"GREETING": "hi"}))
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "positional:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    assert output_vars(instance, "t") == {"g": "hi"}
