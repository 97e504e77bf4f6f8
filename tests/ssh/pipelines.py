"""Pipelines of the SSH tests: the manual's examples with some tasks on the test sshd
(`127.0.0.1` and `localhost` are two hosts for drypipe: two connections), the others local,
plus small DAGs for counting, reconnection and Slurm.

The tests run them with `drypipe run -p tests.ssh.pipelines:<name>` from the repo root; the
server's settings come from the environment (the sshd fixture's variables, plus
DRYPIPE_TEST_REMOTE_BASE and DRYPIPE_TEST_SSH_OPTIONS, a JSON dict of executor_options).
"""
import json
import os

from dry_pipe import DryPipe, TaskConf
from examples import chunked_fasta, dag_t1_t2_t3

EXAMPLES_DIR = os.path.dirname(os.path.abspath(chunked_fasta.__file__))


def ssh_conf(host: str | None = None, mode: str = "process", key: str | None = None, **options) -> TaskConf:
    env = os.environ
    specs = f"{env['SSH_USER']}@{host or env['SSH_HOST']}:{env['SSHD_PORT']}:{key or env['SSH_KEY']}"
    executor_options = {"ssh_known_hosts": env["SSH_KNOWN_HOSTS"]}
    executor_options.update(json.loads(env.get("DRYPIPE_TEST_SSH_OPTIONS") or "{}"))
    executor_options.update(options)
    return TaskConf(executer_type=mode, ssh_specs=specs, remote_base_dir=env["DRYPIPE_TEST_REMOTE_BASE"],
                    executor_options=executor_options)


class _ConfByKey:
    """The generator's `dsl`, giving each task the TaskConf that `pick(key)` returns."""

    def __init__(self, dsl, pick):
        self._dsl = dsl
        self._pick = pick

    def task(self, key=None, task_conf=None):
        return self._dsl.task(key=key, task_conf=task_conf or self._pick(key))

    def __getattr__(self, name):
        return getattr(self._dsl, name)


def with_confs(generator, pick):
    def generate(dsl):
        yield from generator(_ConfByKey(dsl, pick))
    return generate


# -- the manual's examples, mixed local and remote ------------------------------------------------


def _chunked_conf(key):
    if key == "prepare-chunks" or key == "task-for-chunk.0":
        return ssh_conf()  # a python call and a bash task on host 127.0.0.1
    if key in ("task-for-chunk.2", "analyze-all-work-pieces"):
        return ssh_conf(host="localhost")  # the same server as another host
    return TaskConf()  # task-for-chunk.1: local


def chunked_fasta_mixed():
    return DryPipe.create_pipeline(with_confs(chunked_fasta.dag_gen, _chunked_conf), pipeline_code_dir=EXAMPLES_DIR)


def _t123_conf(key):
    return TaskConf() if key == "t2" else ssh_conf()


def t1_t2_t3_mixed():
    """t1 (bash: a variable and a file) and t3 (python, consumes t1's and the local t2's files)
    remote; t2 (python, consumes t1's variable) local."""
    return DryPipe.create_pipeline(with_confs(dag_t1_t2_t3.my_dag_generator, _t123_conf),
                                   pipeline_code_dir=EXAMPLES_DIR)


# -- many remote tasks: polls, reconnection -------------------------------------------------------

def many_dag(dsl):
    """DRYPIPE_TEST_N_TASKS independent remote tasks (alternating over two hosts unless
    DRYPIPE_TEST_ONE_HOST), each appending its key to a side-effect file on the host
    (DRYPIPE_TEST_RUNS_FILE) and sleeping DRYPIPE_TEST_TASK_SLEEP s; then one local task
    summing their outputs."""
    runs_file = os.environ.get("DRYPIPE_TEST_RUNS_FILE", "/dev/null")
    sleep = os.environ.get("DRYPIPE_TEST_TASK_SLEEP", "2")
    tasks = []
    for i in range(int(os.environ.get("DRYPIPE_TEST_N_TASKS", "12"))):
        host = None if i % 2 == 0 or os.environ.get("DRYPIPE_TEST_ONE_HOST") else "localhost"
        t = dsl.task(key=f"work.{i}", task_conf=ssh_conf(host=host)).inputs(i=i).outputs(
            n=int, f=dsl.file("n.txt")).calls(f"""
            #!/usr/bin/env bash
            echo "$__task_key $$" >> {runs_file}
            sleep {sleep}
            echo $((i * i)) > $f
            export n=$((i * i))
        """)()
        tasks.append(t)
        yield t
    yield dsl.task(key="sum").inputs(**{f"n{i}": t.outputs.n for i, t in enumerate(tasks)}).outputs(
        total=dsl.file("total.txt")).calls(
        "echo $(( " + " + ".join(f"n{i}" for i in range(len(tasks))) + " )) > $total\n")()


def many():
    return DryPipe.create_pipeline(many_dag)


def failing_dag(dsl):
    yield dsl.task(key="bad", task_conf=ssh_conf()).outputs(x=int).calls("""
        echo "something went wrong on $(hostname)" >&2
        exit 7
    """)()


def failing():
    return DryPipe.create_pipeline(failing_dag)


def one_remote_dag(dsl):
    yield dsl.task(key="hello", task_conf=ssh_conf(key=os.environ.get("DRYPIPE_TEST_SSH_KEY_PATH"))).outputs(
        who=str).calls("export who=$USER\n")()


def one_remote():
    return DryPipe.create_pipeline(one_remote_dag)


# -- remote Slurm ---------------------------------------------------------------------------------


def slurm_dag(dsl):
    conf = ssh_conf(mode="slurm", remote_env={"SLURM_CONF": os.environ["DRYPIPE_TEST_REMOTE_SLURM_CONF"]})
    parts = []
    for i in range(3):
        t = dsl.task(key=f"part.{i}", task_conf=conf).inputs(i=i).outputs(
            sq=int, f=dsl.file("part.txt")).calls("""
            echo "part $i on $SLURM_JOB_ID as $USER" > $f
            export sq=$((i * i))
        """)()
        parts.append(t)
        yield t
    yield dsl.task(key="gather", task_conf=conf).inputs(
        a=parts[0].outputs.f, b=parts[1].outputs.f, c=parts[2].outputs.f, s=parts[2].outputs.sq).outputs(
        all=dsl.file("all.txt")).calls("""
        cat $a $b $c > $all
        echo "s=$s" >> $all
    """)()


def remote_slurm():
    return DryPipe.create_pipeline(slurm_dag)


# -- the remote-* / array-* commands --------------------------------------------------------------


def cli_dag(dsl):
    """a and b remote (b consumes a's variable and file), c local (run by hand elsewhere)."""
    a = dsl.task(key="a", task_conf=ssh_conf()).inputs(v="hello").outputs(x=int, f=dsl.file("a.txt")).calls(
        "echo $v > $f\nexport x=3\n")()
    yield a
    yield dsl.task(key="b", task_conf=ssh_conf()).inputs(a.outputs.x, f=a.outputs.f).outputs(
        g=dsl.file("b.txt")).calls('cat $f > $g; echo "x=$x" >> $g\n')()
    yield dsl.task(key="c").inputs(a.outputs.x).outputs(h=dsl.file("c.txt")).calls(
        'echo "c as $USER x=$x" > $h\n')()


def cli():
    return DryPipe.create_pipeline(cli_dag)
