"""The manual's variation of the TSV-driven DAG: the TSV lives in the pipeline instance
directory, seeded before the run, so the instance dir holds all of the instance's data.

    mkdir -p /tmp/tsv-instance && cp examples/data/dataset.tsv /tmp/tsv-instance/
    drypipe run -p examples.tsv_instance_dir:my_pipeline -i /tmp/tsv-instance

Outputs: output/t-<i>/result.txt contains "compute data for <second column>".
Adapted from the manual: my_pipeline() passes dag_gen (the manual passes my_pipeline
itself); the task body, elided in the manual, is the one of tsv_env.py; newlines are
stripped before splitting.
"""
from dry_pipe import DryPipe


def dag_gen(dsl):
    with open(dsl.file_in_pipeline_instance_dir("dataset.tsv")) as f:
        for line in f.readlines():
            if not line.strip():
                continue
            i, other_arg = line.rstrip("\n").split("\t")
            yield dsl.task(
                key=f"t-{i}"
            ).inputs(
                x=other_arg
            ).outputs(
                f=dsl.file("result.txt")
            ).calls("""
                #!/usr/bin/env bash
                echo "compute data for $x" > $f
            """)()


def my_pipeline():
    return DryPipe.create_pipeline(dag_gen)
