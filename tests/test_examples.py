"""Runs every pipeline of examples/ (the manual's examples) with the real CLI, checks the
files and output variables they produce, then checks that running a completed instance
again runs nothing and that `drypipe status` reports it complete.

Each test: `python -m drypipe run -p examples.<module>:<function> -i <tmp instance>` from
the repo root, as a user would type it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DATA = EXAMPLES / "data"


# -- helpers ------------------------------------------------------------------------------------

def drypipe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drypipe", *args],
        cwd=REPO,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_pipeline(spec: str, instance: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = drypipe("run", "-p", spec, "-i", str(instance), "--sleep-schedule", "0,0.1", env=env)
    assert result.returncode == 0, (
        f"drypipe run -p {spec} exited {result.returncode}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}\n" + _logs(instance)
    )
    return result


def _logs(instance: Path) -> str:
    """out.log of every task that did not complete, for assertion messages."""
    text = []
    for control in sorted((instance / ".drypipe").glob("*/")):
        if control.name.startswith(".") or (control / "state.completed").exists():
            continue
        log = control / "out.log"
        states = [p.name for p in control.glob("state.*")]
        text.append(f"--- {control.name} {states}\n{log.read_text() if log.exists() else '(no out.log)'}")
    return "\n".join(text)


def task_keys(instance: Path) -> set[str]:
    return {p.name for p in (instance / ".drypipe").iterdir() if p.is_dir() and not p.name.startswith(".")}


def out(instance: Path, key: str, name: str) -> str:
    return (instance / "output" / key / name).read_text()


def output_vars(instance: Path, key: str) -> dict:
    return json.loads((instance / ".drypipe" / key / "output_vars").read_text())


def out_log(instance: Path, key: str) -> str:
    return (instance / ".drypipe" / key / "out.log").read_text()


def task_conf(instance: Path, key: str) -> dict:
    return json.loads((instance / ".drypipe" / key / "task-conf.json").read_text())


def snapshot(instance: Path) -> dict[str, object]:
    """What a second run must leave untouched: logs, state markers, output files."""
    snap: dict[str, object] = {}
    for key in task_keys(instance):
        control = instance / ".drypipe" / key
        for name in ("drypipe.log", "out.log", "output_vars"):
            path = control / name
            snap[f"{key}/{name}"] = path.read_text() if path.exists() else None
        snap[f"{key}/state"] = sorted(p.name for p in control.glob("state.*"))
    for path in sorted((instance / "output").rglob("*")):
        if path.is_file():
            snap[str(path.relative_to(instance))] = (path.stat().st_mtime_ns, path.read_bytes())
    return snap


def assert_rerun_does_nothing(spec: str, instance: Path, env: dict | None = None) -> None:
    before = snapshot(instance)
    n = len(task_keys(instance))
    result = run_pipeline(spec, instance, env)
    summary = f"{n} task{'s' if n != 1 else ''} in"
    assert summary in result.stdout and f"{n} completed" in result.stdout, result.stdout
    assert "completed" not in result.stdout.split(summary)[0], (
        f"the second run reported task completions:\n{result.stdout}"
    )
    after = snapshot(instance)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"a second run of a completed instance changed: {changed}"
    assert task_keys(instance) == set(k.split("/")[0] for k in before if k.endswith("/state"))


def assert_status_ok(instance: Path) -> None:
    result = drypipe("status", "-i", str(instance))
    assert result.returncode == 0, result.stdout + result.stderr


def rerun_and_status(spec: str, instance: Path, env: dict | None = None) -> None:
    """Every test ends with this, after checking the outputs of the first run."""
    assert_rerun_does_nothing(spec, instance, env)
    assert_status_ok(instance)


# -- the examples -------------------------------------------------------------------------------

def test_dag_t1_t2_t3(tmp_path):
    spec, instance = "examples.dag_t1_t2_t3:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert output_vars(instance, "t1") == {"x": "123"}
    assert json.loads(out(instance, "t1", "z.json")) == {"i": "abc", "a": [56, 57]}
    assert out(instance, "t3", "pipeline-result.tsv") == "x\t123\ni\tabc\nsum_a\t113\n"
    rerun_and_status(spec, instance)


def test_intro(tmp_path):
    spec, instance = "examples.intro:my_pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert task_keys(instance) == {"t1", "t2"}
    assert output_vars(instance, "t1") == {"x": "123"}
    assert out(instance, "t2", "f.tsv") == "...123"
    rerun_and_status(spec, instance)


def test_two_tasks(tmp_path):
    spec, instance = "examples.two_tasks:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert task_keys(instance) == {"t1", "t2"}
    assert out(instance, "t1", "a-file.txt") == "hello\n"
    assert out(instance, "t2", "another-file.txt") == "world\n"
    # independent tasks: neither waits for the other
    assert task_conf(instance, "t1")["upstream_keys"] == []
    assert task_conf(instance, "t2")["upstream_keys"] == []
    rerun_and_status(spec, instance)


def test_file_dependency(tmp_path):
    spec, instance = "examples.file_dependency:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert out(instance, "t1", "f.txt") == "15129\n"
    assert out(instance, "t2", "final-result.txt") == "we got data from t1: 15129\n"
    assert task_conf(instance, "t2")["upstream_keys"] == ["t1"]
    rerun_and_status(spec, instance)


def test_variable_passing(tmp_path):
    spec, instance = "examples.variable_passing:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert output_vars(instance, "t1") == {"result": "386"}
    assert "all variables in the consumes(...) clause are in the env 123, 3.14159265359, abc" in out_log(instance, "t1")
    assert out(instance, "t2", "final-result.txt") == "we got data from t1: 386\n"
    rerun_and_status(spec, instance)


def test_python_calls(tmp_path):
    spec, instance = "examples.python_calls:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert output_vars(instance, "t1") == {"result": "386"}
    log = out_log(instance, "t1")
    assert "all variables in the consumes(...) clause are in the env 123, 3.14159265359, abc" in log
    assert "Wow, x has the correct type !" in log
    assert "Something is seriously wrong" not in log
    assert "receiving pre parsed arguments is more convenient !" in log
    assert out(instance, "t2", "final-result.txt") == "we got data from t1: 386"
    rerun_and_status(spec, instance)


@pytest.mark.parametrize("function, numbers", [
    ("pipeline_1_2_3", [1, 3, 4]),
    ("pipeline_7_8_9_543", [7, 8, 9, 543]),
])
def test_semi_hardcoded(tmp_path, function, numbers):
    spec, instance = f"examples.semi_hardcoded:{function}", tmp_path / "i"
    run_pipeline(spec, instance)
    assert task_keys(instance) == {f"square-{i}" for i in numbers}
    for i in numbers:
        assert out(instance, f"square-{i}", "file_with_squared_number.txt") == f"{i * i}\n"
    rerun_and_status(spec, instance)


def _check_tsv_outputs(instance: Path) -> None:
    assert task_keys(instance) == {"t-1", "t-2", "t-3"}
    assert out(instance, "t-1", "result.txt") == "compute data for alpha\n"
    assert out(instance, "t-2", "result.txt") == "compute data for beta\n"
    assert out(instance, "t-3", "result.txt") == "compute data for gamma delta\n"


def test_tsv_env(tmp_path):
    # as in the manual, the generator function itself is given to -p
    spec, instance = "examples.tsv_env:dag_gen", tmp_path / "i"
    env = {"MY_INPUT_DATA_FILE_TSV": str(DATA / "dataset.tsv")}
    run_pipeline(spec, instance, env)
    _check_tsv_outputs(instance)
    rerun_and_status(spec, instance, env)


def test_tsv_instance_dir(tmp_path):
    spec, instance = "examples.tsv_instance_dir:my_pipeline", tmp_path / "i"
    instance.mkdir()
    shutil.copy(DATA / "dataset.tsv", instance / "dataset.tsv")
    run_pipeline(spec, instance)
    _check_tsv_outputs(instance)
    rerun_and_status(spec, instance)


def test_chunked_fasta(tmp_path):
    spec, instance = "examples.chunked_fasta:pipeline", tmp_path / "i"
    instance.mkdir()
    shutil.copy(DATA / "chimp.fasta", instance / "chimp.fasta")
    run_pipeline(spec, instance)
    chunks = sorted(p.name for p in (instance / "output" / "prepare-chunks").glob("work-chunk.*.fasta"))
    assert chunks == ["work-chunk.0.fasta", "work-chunk.1.fasta", "work-chunk.2.fasta"]
    # the chunks are the input, split 3 sequences at a time
    joined = "".join(out(instance, "prepare-chunks", c) for c in chunks)
    assert joined == (DATA / "chimp.fasta").read_text()
    assert task_keys(instance) == {
        "prepare-chunks", "task-for-chunk.0", "task-for-chunk.1", "task-for-chunk.2", "analyze-all-work-pieces",
    }
    expected = {"0": {"sequences": 3, "bases": 35}, "1": {"sequences": 3, "bases": 31}, "2": {"sequences": 1, "bases": 3}}
    for n, results in expected.items():
        assert json.loads(out(instance, f"task-for-chunk.{n}", "results.json")) == results
        assert f"work on {instance}/output/prepare-chunks/work-chunk.{n}.fasta" in out_log(instance, f"task-for-chunk.{n}")
    final = out(instance, "analyze-all-work-pieces", "final-result-file").splitlines()
    assert final == [
        f"got {json.dumps(results, sort_keys=True)} from chunk {instance}/output/task-for-chunk.{n}/results.json"
        for n, results in expected.items()
    ]
    # the bash step listed the chunk results twice (explicit glob, then $pattern_for_all_chunks)
    listing = [line for line in out_log(instance, "analyze-all-work-pieces").splitlines() if line.endswith("results.json")]
    assert listing == [f"{instance}/output/task-for-chunk.{n}/results.json" for n in "012"] * 2
    conf = task_conf(instance, "analyze-all-work-pieces")
    assert conf["upstream_keys"] == ["task-for-chunk.0", "task-for-chunk.1", "task-for-chunk.2"]
    assert len(conf["steps"]) == 2
    rerun_and_status(spec, instance)


def test_fetched_value(tmp_path):
    spec, instance = "examples.fetched_value:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert output_vars(instance, "task-a") == {"x": "42"}
    conf = task_conf(instance, "highly-dependent-task")
    assert conf["task_conf"]["executer_type"] == "process"
    # the Slurm plugin's settings, kept in executor_options
    assert conf["task_conf"]["executor_options"] == {"sbatch_options": ["--time=0:42:00"], "slurm_account": "me"}
    assert out(instance, "highly-dependent-task", "report.txt") == (
        "x\t42\n"
        "task-prefix-1\tpart 1 of task-prefix-1\n"
        "task-prefix-2\tpart 2 of task-prefix-2\n"
        "other-task-prefix-1\tpart 1 of other-task-prefix-1\n"
        "other-task-prefix-2\tpart 2 of other-task-prefix-2\n"
        "task-b\tb\n"
    )
    rerun_and_status(spec, instance)


def test_sub_pipelines(tmp_path):
    spec, instance = "examples.sub_pipelines:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert task_keys(instance) == {
        "s_a-super-task", "o_do-it-1", "o_do-it-2", "o_do-it-3",
        "task-dependent-on-a-super-task", "grande-finale",
    }
    assert output_vars(instance, "s_a-super-task") == {"a_variable": "7"}
    assert output_vars(instance, "task-dependent-on-a-super-task") == {"z": "70"}
    for i in (1, 2, 3):
        assert out(instance, f"o_do-it-{i}", "done.txt") == f"did it {i} in o_do-it-{i}\n"
    assert out(instance, "grande-finale", "grande-finale.txt") == (
        "z\t70\n"
        "o_do-it-1\tdid it 1 in o_do-it-1\n"
        "o_do-it-2\tdid it 2 in o_do-it-2\n"
        "o_do-it-3\tdid it 3 in o_do-it-3\n"
    )
    assert task_conf(instance, "grande-finale")["upstream_keys"] == [
        "o_do-it-1", "o_do-it-2", "o_do-it-3", "task-dependent-on-a-super-task",
    ]
    rerun_and_status(spec, instance)


def test_multi_step(tmp_path):
    spec, instance = "examples.multi_step:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert [s["kind"] for s in task_conf(instance, "count-words")["steps"]] == ["bash", "python", "bash", "python"]
    assert output_vars(instance, "count-words") == {
        "line_count": "3", "word_count": "10", "words_per_line": str(10 / 3), "summary": "3 lines, 10 words",
    }
    assert out(instance, "count-words", "report.txt") == f"lines=3\nwords=10\nwords_per_line={10 / 3}\n"
    rerun_and_status(spec, instance)


def test_script_call(tmp_path):
    spec, instance = "examples.script_call:pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    assert task_conf(instance, "t1")["steps"][0] == {"kind": "script", "path": "my-script.sh"}
    assert f"my-script.sh runs from {EXAMPLES} for task t1" in out_log(instance, "t1")
    assert out(instance, "t1", "f.txt") == "15129\n"
    assert output_vars(instance, "t1") == {"square": "15129"}
    assert out(instance, "t2", "final-result.txt") == "we got data from t1: 15129\n"
    rerun_and_status(spec, instance)


def test_pipeline_config(tmp_path):
    spec, instance = "examples.pipeline_config:my_pipeline", tmp_path / "i"
    run_pipeline(spec, instance)
    code_dir = DATA / "pipeline_config_code"
    for key in ("task-123", "task-z", "task-greet"):
        conf = task_conf(instance, key)
        assert conf["pipeline_code_dir"] == str(code_dir)
        assert conf["containers_dir"] == str(DATA / "containers")
        assert conf["task_conf"]["executer_type"] == "process"
    # task-123 got the pipeline's default TaskConf, task-z its own
    assert task_conf(instance, "task-123")["task_conf"]["extra_env"] == {"GREETING": "from the pipeline's default TaskConf"}
    assert task_conf(instance, "task-z")["task_conf"]["extra_env"] == {}
    assert out(instance, "task-123", "hello.txt") == "hello world, GREETING=from the pipeline's default TaskConf\n"
    assert out(instance, "task-z", "hello.txt") == "hello world, GREETING=unset\n"
    assert out_log(instance, "task-123") == "hello world\n"
    assert out(instance, "task-greet", "greeting.txt") == (
        f"greet.sh from {code_dir}\n"
        f"containers dir: {DATA / 'containers'}\n"
        "GREETING=from the pipeline's default TaskConf\n"
    )
    rerun_and_status(spec, instance)


# -- imports ------------------------------------------------------------------------------------

def test_both_import_names_are_the_same_api():
    """The manual's `from dry_pipe import DryPipe` and the native `from drypipe import DryPipe`
    name the same objects (multi_step.py uses the latter, every other example the former)."""
    import dry_pipe
    import drypipe

    assert dry_pipe.DryPipe is drypipe.DryPipe
    assert dry_pipe.TaskConf is drypipe.TaskConf
    assert "from drypipe import DryPipe" in (EXAMPLES / "multi_step.py").read_text()
    for module in EXAMPLES.glob("*.py"):
        if module.name not in ("__init__.py", "multi_step.py", "tsv_env.py"):
            assert "from dry_pipe import" in module.read_text(), module.name


def test_every_example_module_is_tested():
    tested = {
        "dag_t1_t2_t3", "intro", "two_tasks", "file_dependency", "variable_passing", "python_calls",
        "semi_hardcoded", "tsv_env", "tsv_instance_dir", "chunked_fasta", "fetched_value",
        "sub_pipelines", "multi_step", "script_call", "pipeline_config",
        "dendro_mixed",  # needs a Dendro service: run by tests/dendro_executor/test_mixed.py
    }
    modules = {p.stem for p in EXAMPLES.glob("*.py")} - {"__init__"}
    assert modules == tested
