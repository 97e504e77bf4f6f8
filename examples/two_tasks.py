"""The manual's "Dividing work into smaller chunks" example: two independent bash tasks,
which drypipe runs in parallel.

    drypipe run -p examples.two_tasks:pipeline -i /tmp/two-tasks

Outputs: output/t1/a-file.txt ("hello"), output/t2/another-file.txt ("world").
"""
from dry_pipe import DryPipe


def my_pipeline_dag_generator(dsl):
    yield dsl.task(
        key="t1"
    ).outputs(
        a_file=dsl.file("a-file.txt")
    ).calls("""
        #!/usr/bin/env bash
        echo 'hello' > $a_file
    """)()

    yield dsl.task(
        key="t2"
    ).outputs(
        other_file=dsl.file("another-file.txt")
    ).calls("""
        #!/usr/bin/env bash
        echo 'world' > $other_file
    """)()


def pipeline():
    return DryPipe.create_pipeline(my_pipeline_dag_generator)
