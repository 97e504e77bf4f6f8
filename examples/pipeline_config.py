"""The manual's "Pipeline level configs" example: DryPipe.create_pipeline overrides
$__pipeline_code_dir and $__containers_dir, and gives the pipeline a default TaskConf.
task-123 gets the pipeline's default TaskConf, task-z its own.

    drypipe run -p examples.pipeline_config:my_pipeline -i /tmp/pipeline-config

Outputs: output/task-123/hello.txt and output/task-z/hello.txt ("hello world" and the
GREETING variable of their TaskConf: set by the pipeline default for task-123, unset for
task-z, which has its own TaskConf); output/task-greet/greeting.txt, written by greet.sh,
found in the overridden pipeline_code_dir.

Adapted from the manual so that it runs on one machine:
- the default TaskConf is TaskConf(executer_type="process") (the manual's is "slurm"), with
  extra_env GREETING so that one can see which tasks got it;
- pipeline_code_dir and containers_dir are absolute directories next to this module (the
  manual's "x/y/z" and "a/b/c" would be resolved against the current directory);
- the tasks write their "hello world" to a declared output file (the manual's only echo to
  out.log), and task-greet, not in the manual, calls a script of the pipeline_code_dir;
- the manual yields the task builders without the final `()`; this is kept: drypipe
  finishes a yielded builder.
"""
import os

from dry_pipe import TaskConf, DryPipe

HERE = os.path.dirname(os.path.abspath(__file__))


def my_dag(dsl):
    yield dsl.task(key="task-123").outputs(hello=dsl.file("hello.txt")).calls("""
        #!/usr/bin/env bash
        echo "hello world"
        echo "hello world, GREETING=${GREETING:-unset}" > $hello
    """)

    yield dsl.task(
        key="task-z",
        task_conf=TaskConf(executer_type="process")
    ).outputs(hello=dsl.file("hello.txt")).calls("""
        #!/usr/bin/env bash
        echo "hello world"
        echo "hello world, GREETING=${GREETING:-unset}" > $hello
    """)

    yield dsl.task(key="task-greet").outputs(greeting=dsl.file("greeting.txt")).calls("greet.sh")


def my_pipeline():
    return DryPipe.create_pipeline(
        my_dag,
        pipeline_code_dir=os.path.join(HERE, "data", "pipeline_config_code"),  # manual: "x/y/z"
        containers_dir=os.path.join(HERE, "data", "containers"),  # manual: "a/b/c"
        task_conf=TaskConf(
            executer_type="process",  # manual: "slurm", slurm_account="my-slurm-account"
            extra_env={"GREETING": "from the pipeline's default TaskConf"},
        )
    )
