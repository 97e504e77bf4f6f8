"""The manual's "Input file driven DAGs" example: one task t-<i> per line of a TSV file
whose path is in the environment variable MY_INPUT_DATA_FILE_TSV.  As in the manual, the
generator function itself is given to `drypipe run`:

    export MY_INPUT_DATA_FILE_TSV=$PWD/examples/data/dataset.tsv
    drypipe run -p examples.tsv_env:dag_gen -i /tmp/tsv-env

Outputs: output/t-<i>/result.txt contains "compute data for <second column>".
Adapted from the manual: the line's newline is stripped before splitting (the manual's
line.split("\\t") leaves it in other_arg), and blank lines are skipped.
"""
import os


def dag_gen(dsl):
    with open(os.environ['MY_INPUT_DATA_FILE_TSV']) as f:
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
