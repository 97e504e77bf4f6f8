"""The manual's DAG example: t1 produces a variable x and a file z.json; t2 consumes x; t3
consumes z.json and t2's file.

    drypipe run -p examples.dag_t1_t2_t3:pipeline -i /tmp/t123
"""
import json

from dry_pipe import DryPipe


@DryPipe.python_call()
def f2(x, f):
    with open(f, "w") as out:
        out.write(f"x\t{x}\n")


@DryPipe.python_call()
def f3(z, f, t):
    with open(z) as z_file:
        z_data = json.load(z_file)
    with open(f) as f_file, open(t, "w") as out:
        out.write(f_file.read())
        out.write(f"i\t{z_data['i']}\nsum_a\t{sum(z_data['a'])}\n")


def my_dag_generator(dsl):
    t1 = dsl.task(key="t1")\
        .outputs(x=dsl.var(int), z=dsl.file("z.json"))\
        .calls("""
        #!/usr/bin/env bash
        export x=123
        echo '{"i": "abc", "a": [56,57]}' > $z
        """)()
    yield t1

    t2 = dsl.task(key="t2")\
        .inputs(t1.outputs.x)\
        .outputs(f=dsl.file("f.tsv"))\
        .calls(f2)()
    yield t2

    yield dsl.task(key="t3")\
        .inputs(t1.outputs.z, t2.outputs.f)\
        .outputs(t=dsl.file("pipeline-result.tsv"))\
        .calls(f3)()


def pipeline():
    return DryPipe.create_pipeline(my_dag_generator)
