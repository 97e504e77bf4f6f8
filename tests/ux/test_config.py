"""Configuration files: `drypipe config show` names the source of every value; the values
reach `drypipe run`.  Precedence: task > pipeline > instance file > user file > defaults (and
for run settings: option > environment > instance file > user file > default)."""
from __future__ import annotations

import os
from tests.helpers import drypipe, write_module

PIPELINE = '''
from drypipe import DryPipe, TaskConf

def gen(dsl):
    yield dsl.task(key="default").outputs(o=dsl.file("env.txt")).calls("""
    echo "$GREETING|$__command_before_task" > $o
    """)()
    yield dsl.task(key="own", task_conf=TaskConf(executer_type="process", sbatch_options=["--time=9"])
                   ).outputs(o=dsl.file("env.txt")).calls("""
    echo "${GREETING:-unset}|$__command_before_task" > $o
    """)()

def pipeline():
    return DryPipe.create_pipeline(gen, task_conf=TaskConf(extra_env={"GREETING": "from-pipeline"},
                                                           slurm_account="from-pipeline"))
'''

USER = """
task_conf:
  slurm_account: from-user
  command_before_task: echo from-user
  container: from-user.sif
  sbatch_options: ["--time=1"]
max_local_jobs: 3
cache: /tmp/from-user-cache
"""

INSTANCE = """
task_conf:
  sbatch_options: ["--time=2"]
  extra_env: {GREETING: from-instance}
  container: null
sleep_schedule: [0, 0.5]
"""


def _settings(stdout: str) -> dict[str, tuple[str, str]]:
    """{setting: (value, source)}, cut at the columns of the header line."""
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("setting "))
    value_at, source_at = header.index("value"), header.index("source")
    rows = {}
    for line in lines[lines.index(header) + 1:]:
        rows[line[:value_at].strip()] = (line[value_at:source_at].strip(), line[source_at:].strip())
    return rows


def _setup(tmp_path):
    write_module(tmp_path, "confp", PIPELINE)
    (tmp_path / "user.yaml").write_text(USER)
    instance = tmp_path / "i"
    instance.mkdir()
    (instance / "drypipe.yaml").write_text(INSTANCE)
    return instance, {"DRYPIPE_CONFIG": str(tmp_path / "user.yaml")}


def test_config_show_names_each_source(tmp_path):
    instance, env = _setup(tmp_path)
    user, inst = f"user file {tmp_path / 'user.yaml'}", f"instance file {instance / 'drypipe.yaml'}"
    files_only = _settings(drypipe("config", "show", "-i", str(instance), cwd=tmp_path, env=env, check=True).stdout)
    assert files_only["task_conf.slurm_account"] == ("from-user", user)
    assert files_only["task_conf.sbatch_options"] == ('["--time=2"]', inst)  # instance file > user file
    assert files_only["task_conf.container"] == ("-", inst)  # null in the instance file unsets it
    assert files_only["task_conf.executer_type"] == ("process", "default")
    assert files_only["max_local_jobs"] == ("3", user)
    assert files_only["sleep_schedule"] == ("0,0.5", inst)
    assert files_only["cache"] == ("/tmp/from-user-cache", user)

    with_pipeline = _settings(drypipe("config", "show", "-i", str(instance), "-p", "confp:pipeline", cwd=tmp_path,
                                      env=env, check=True).stdout)
    assert with_pipeline["task_conf.slurm_account"] == ("from-pipeline", "pipeline confp:pipeline")
    assert with_pipeline["task_conf.extra_env"] == ('{"GREETING": "from-pipeline"}', "pipeline confp:pipeline")
    assert with_pipeline["task_conf.command_before_task"] == ("echo from-user", user)

    task = _settings(drypipe("config", "show", "-i", str(instance), "-p", "confp:pipeline", "-k", "own",
                             cwd=tmp_path, env=env, check=True).stdout)
    source = task["task_conf.sbatch_options"][1]
    assert task["task_conf.sbatch_options"][0] == '["--time=9"]'
    assert source.startswith("task own (") and "confp.py:" in source
    assert task["task_conf.slurm_account"] == ("from-user", user)  # a task's own TaskConf replaces the pipeline's
    assert task["task_conf.extra_env"] == ('{"GREETING": "from-instance"}', inst)

    overridden = _settings(drypipe("config", "show", "-i", str(instance), cwd=tmp_path,
                                   env={**env, "DRYPIPE_MAX_LOCAL_JOBS": "7"}, check=True).stdout)
    assert overridden["max_local_jobs"] == ("7", "env DRYPIPE_MAX_LOCAL_JOBS")

    nothing = _settings(drypipe("config", "show", "-i", str(tmp_path / "nowhere"), cwd=tmp_path,
                                env={"DRYPIPE_CONFIG": str(tmp_path / "absent.yaml")}, check=True).stdout)
    assert nothing["task_conf.slurm_account"] == ("-", "default")
    assert nothing["max_local_jobs"] == (str(os.cpu_count()), "default (number of CPUs)")


def test_run_uses_the_files(tmp_path):
    instance, env = _setup(tmp_path)
    (instance / "drypipe.yaml").write_text(INSTANCE.replace("  container: null\n", ""))
    (tmp_path / "user.yaml").write_text(USER.replace("  container: from-user.sif\n", "").replace(
        "cache: /tmp/from-user-cache\n", f"cache: {tmp_path / 'cache'}\n"))
    result = drypipe("run", "-p", "confp:pipeline", "-i", str(instance), cwd=tmp_path, env=env, check=True)
    # the pipeline's TaskConf wins over the files; the files fill what it does not set
    assert (instance / "output/default/env.txt").read_text() == "from-pipeline|echo from-user\n"
    # a task's own TaskConf: the pipeline's is not used, the files fill in
    assert (instance / "output/own/env.txt").read_text() == "from-instance|echo from-user\n"
    assert "restored from cache" not in result.stdout
    assert (tmp_path / "cache").is_dir()  # the cache URL of the user file: outcomes were published there


def test_bad_file_is_one_clear_line(tmp_path):
    instance, env = _setup(tmp_path)
    (instance / "drypipe.yaml").write_text("task_conf:\n  slurm_acount: x\n")
    result = drypipe("run", "-p", "confp:pipeline", "-i", str(instance), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == (f"drypipe: error: instance file {instance / 'drypipe.yaml'}: task_conf: "
                             "TaskConf: unknown field(s) slurm_acount; did you mean slurm_account? (TaskConf "
                             "fields: docs/dsl.md; settings of the installed executors: drypipe executors)\n")
    (instance / "drypipe.yaml").write_text("max_local_job: 2\n")
    result = drypipe("config", "show", "-i", str(instance), cwd=tmp_path, env=env)
    assert result.returncode == 1 and "unknown setting(s) max_local_job (known: task_conf, cache, " in result.stderr
    (instance / "drypipe.yaml").write_text("task_conf: [\n")
    result = drypipe("config", "show", "-i", str(instance), cwd=tmp_path, env=env)
    assert result.returncode == 1 and "invalid YAML at line" in result.stderr
