"""The manual's "Variable dependencies between Tasks" example: t1 exports an output variable
from bash, t2 receives it as $r.

    drypipe run -p examples.variable_passing:pipeline -i /tmp/variable-passing

Outputs: .drypipe/t1/output_vars has {"result": "386"}; output/t2/final-result.txt
contains "we got data from t1: 386".

Adapted from the manual: its `export result=$(( x * y ))` cannot work, bash arithmetic is
integer only and y=3.14159265359 is a syntax error inside $(( )).  The product is computed
with awk and truncated to an int (result is declared int): 123 * 3.14159265359 -> 386, the
same value python_calls.py returns with int(x * y).
"""
from dry_pipe import DryPipe


def my_pipeline_dag_generator(dsl):
    t1 = dsl.task(
        key="t1"
    ).inputs(
        x=123,
        y=3.14159265359,
        z='abc'
    ).outputs(
        result=int
    ).calls("""
        #!/usr/bin/env bash
        echo "all variables in the consumes(...) clause are in the env" $x, $y, $z
        # 'export' is used to assign output variable in the produces(...) clause
        # (manual: export result=$(( x * y )) -- bash cannot multiply by a float)
        export result=$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%d", x * y }')
    """)()

    yield t1

    yield dsl.task(
        key="t2"
    ).inputs(
        r=t1.outputs.result
    ).outputs(
        f=dsl.file("final-result.txt")
    ).calls("""
        #!/usr/bin/env bash
        echo "we got data from t1: $r" > $f
    """)()


def pipeline():
    return DryPipe.create_pipeline(my_pipeline_dag_generator)
