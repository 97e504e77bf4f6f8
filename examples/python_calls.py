"""The manual's "Calling Python functions from Tasks" example: variable_passing.py with
@DryPipe.python_call() functions instead of bash snippets.

    drypipe run -p examples.python_calls:pipeline -i /tmp/python-calls

Outputs: .drypipe/t1/output_vars has {"result": "386"}; .drypipe/t1/out.log has what f1
prints; output/t2/final-result.txt contains "we got data from t1: 386".

Adapted from the manual: `import os` (used by f1) was missing; f2 opens f for writing;
f1 returns int(x * y), because result is declared int and x * y = 386.41... is a float
(drypipe rejects a float with a fractional part for an int output).
"""
import os

from dry_pipe import DryPipe


@DryPipe.python_call()
def f1(x, y, z):
    print(f"all variables in the consumes(...) clause are in the env {x}, {y}, {z}")
    if isinstance(x, int):
        print("Wow, x has the correct type !")
    else:
        # will write to $__pipeline_instance_dir/.drypipe/$__task_key/out.log
        print("Something is seriously wrong !")

    x_from_env = os.environ["x"]

    if isinstance(x_from_env, str):
        print("""one could grab vars from the environment, but
receiving pre parsed arguments is more convenient !""")

    print("")

    return {
        "result": int(x * y)  # manual: x * y, a float, but result is declared int
    }


@DryPipe.python_call()
def f2(r, f):
    with open(f, "w") as f_handle:
        f_handle.write(f"we got data from t1: {r}")


def my_pipeline_dag_generator(dsl):
    t1 = dsl.task(
        key="t1"
    ).inputs(
        x=123,
        y=3.14159265359,
        z='abc'
    ).outputs(
        result=int
    ).calls(
        f1
    )()

    yield t1

    yield dsl.task(
        key="t2"
    ).inputs(
        r=t1.outputs.result
    ).outputs(
        f=dsl.file("final-result.txt")
    ).calls(
        f2
    )()


def pipeline():
    return DryPipe.create_pipeline(my_pipeline_dag_generator)
