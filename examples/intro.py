"""The manual's first example ("Tasks"): t1 returns a variable x from a python call, t2
consumes x and writes f.tsv.

    drypipe run -p examples.intro:my_pipeline -i /tmp/intro

Outputs: .drypipe/t1/output_vars has {"x": "123"}; output/t2/f.tsv contains "...123".
Adapted from the manual: f2 opens f for writing (the manual's open(f) would raise).
"""
from dry_pipe import DryPipe


def my_tasks(dsl):
    t1 = dsl.task(key="t1").outputs(x=int).calls(f1)()
    yield t1
    yield dsl.task(key="t2").inputs(t1.outputs.x).outputs(f=dsl.file("f.tsv")).calls(f2)()


@DryPipe.python_call()
def f1():
    return {"x": 123}


@DryPipe.python_call()
def f2(x, f):
    with open(f, "w") as _f:
        _f.write(f"...{x}")


def my_pipeline():
    return DryPipe.create_pipeline(my_tasks)
