"""`drypipe restart -k KEY --reset` clears the task's results before it reruns (the original's
manual: reset "clears the results directory if exists")."""
from tests.helpers import drypipe, state_of, write_module

PIPELINE = '''
from dry_pipe import DryPipe

def gen(dsl):
    yield dsl.task(key="appender").produces(log=dsl.file("log.txt")).calls("""
        #!/usr/bin/env bash
        echo -n "s1 " >> $log
    """).calls("""
        #!/usr/bin/env bash
        test -e $__pipeline_instance_dir/fixed || exit 1
        echo -n "s2" >> $log
    """)()

def pipeline():
    return DryPipe.create_pipeline(gen)
'''


def test_reset_clears_results_before_rerunning(tmp_path):
    write_module(tmp_path, "appending", PIPELINE)
    instance = tmp_path / "i"
    assert drypipe("run", "-p", "appending:pipeline", "-i", str(instance), cwd=tmp_path).returncode == 1
    assert state_of(instance, "appender") == "failed.1"
    assert (instance / "output/appender/log.txt").read_text() == "s1 "
    (instance / "fixed").touch()
    drypipe("restart", "-i", str(instance), "-k", "appender", "--reset", "--wait", cwd=tmp_path, check=True)
    assert state_of(instance, "appender") == "completed"
    assert (instance / "output/appender/log.txt").read_text() == "s1 s2"


def test_reset_of_a_completed_task_clears_it_too(tmp_path):
    write_module(tmp_path, "appending", PIPELINE)
    instance = tmp_path / "i"
    instance.mkdir()
    (instance / "fixed").touch()
    drypipe("run", "-p", "appending:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    drypipe("restart", "-i", str(instance), "-k", "appender", "--reset", "--wait", cwd=tmp_path, check=True)
    assert state_of(instance, "appender") == "completed"
    assert (instance / "output/appender/log.txt").read_text() == "s1 s2"


def test_reset_refuses_a_task_in_flight_elsewhere(tmp_path):
    write_module(tmp_path, "on_slurm", '''
        from dry_pipe import DryPipe, TaskConf

        def gen(dsl):
            conf = TaskConf(executer_type="slurm", slurm_account="def-me")
            yield dsl.task(key="remote", task_conf=conf).produces(log=dsl.file("log.txt")).calls("echo x >> $log\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "on_slurm:gen", "-i", str(instance), cwd=tmp_path, check=True)
    control = instance / ".drypipe/remote"
    marker = next(control.glob("state.*"))
    marker.rename(control / "state.step-started.0")  # as if its Slurm job were running
    (instance / "output/remote").mkdir(parents=True)
    (instance / "output/remote/log.txt").write_text("x\n")
    result = drypipe("restart", "-i", str(instance), "-k", "remote", "--reset", "--wait", cwd=tmp_path)
    assert result.returncode != 0
    assert "stop it first" in result.stderr
    assert (instance / "output/remote/log.txt").read_text() == "x\n"
    assert state_of(instance, "remote") == "step-started.0"
