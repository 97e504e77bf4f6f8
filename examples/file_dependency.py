"""The manual's "File dependencies between Tasks" example: t2 consumes the file t1 produces,
so t2 starts only once t1 has completed.

    drypipe run -p examples.file_dependency:pipeline -i /tmp/file-dependency

Outputs: output/t1/f.txt ("15129"), output/t2/final-result.txt
("we got data from t1: 15129").
"""
from dry_pipe import DryPipe


def my_pipeline_dag_generator(dsl):
    t1 = dsl.task(
        key="t1"
    ).inputs(
        x=123
    ).outputs(
        result=dsl.file("f.txt")
    ).calls("""
        echo $(( x * x )) > $result
    """)()

    yield t1

    # we keep a reference to t1 so we can refer to t1.outputs.result
    yield dsl.task(
        key="t2"
    ).inputs(
        r=t1.outputs.result
    ).outputs(
        f=dsl.file("final-result.txt")
    ).calls("""
        result_from_t1="$(cat $r)"
        echo "we got data from t1: $result_from_t1" > $f
    """)()


def pipeline():
    return DryPipe.create_pipeline(my_pipeline_dag_generator)
