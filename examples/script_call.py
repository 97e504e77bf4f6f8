"""calls("my-script.sh"), from the manual's "File dependencies between Tasks": instead of a
bash snippet, a task calls a script, resolved as $__pipeline_code_dir/my-script.sh (the
pipeline code dir defaults to the directory of this module: examples/).  The pipeline is
the manual's file dependency example with t1's snippet moved into examples/my-script.sh.

    drypipe run -p examples.script_call:pipeline -i /tmp/script-call

Outputs: output/t1/f.txt ("15129"), .drypipe/t1/output_vars has {"square": "15129"},
output/t2/final-result.txt ("we got data from t1: 15129").
"""
from dry_pipe import DryPipe


def my_pipeline_dag_generator(dsl):
    t1 = dsl.task(
        key="t1"
    ).inputs(
        x=123
    ).outputs(
        result=dsl.file("f.txt"),
        square=int
    ).calls(
        "my-script.sh"
    )()

    yield t1

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
