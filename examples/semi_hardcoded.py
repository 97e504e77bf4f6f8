"""The manual's "Semi hardcoded DAGs" example: one generator factory, two pipelines over two
hardcoded lists of ints, one task square-<i> per int.

    drypipe run -p examples.semi_hardcoded:pipeline_1_2_3 -i /tmp/squares-a
    drypipe run -p examples.semi_hardcoded:pipeline_7_8_9_543 -i /tmp/squares-b

Outputs: output/square-<i>/file_with_squared_number.txt contains i*i.
The list of pipeline_1_2_3 is [1, 3, 4], as in the manual (despite its name).
"""
from dry_pipe import DryPipe


def create_dag_generator(beautiful_numbers):

    def dag_gen(dsl):
        for i in beautiful_numbers:
            yield dsl.task(
                key=f"square-{i}"
            ).inputs(
                x=i
            ).outputs(
                f=dsl.file("file_with_squared_number.txt")
            ).calls("""
                #!/usr/bin/env bash
                echo $(( $x * $x)) > $f
            """)()

    return dag_gen


def pipeline_1_2_3():
    return DryPipe.create_pipeline(
        create_dag_generator([1, 3, 4]),
    )


def pipeline_7_8_9_543():
    return DryPipe.create_pipeline(
        create_dag_generator([7, 8, 9, 543]),
    )
