"""`drypipe completion`, `drypipe service` and `drypipe upgrade-drypipe`."""
from __future__ import annotations

import os
import shutil
import subprocess

from filelock import FileLock

from tests.helpers import drypipe, state_of, write_module

SERVICE = '''
from drypipe import DryPipe

def good(dsl):
    yield dsl.task(key="hello").outputs(f=dsl.file("f.txt")).calls("echo ${WHO:-nobody} > $f\\n")()

def bad(dsl):
    yield dsl.task(key="broken").calls("exit 4\\n")()

SHARED = DryPipe.create_pipeline(good)

def instances():
    yield "one", SHARED          # a pipeline object ...
    yield "two", SHARED          # ... shared by two instances, each with its own drypipe.yaml
    yield "three", "svc:bad"     # a <module>:<function>
    yield "four", good           # a generator
'''


def _complete(words: str, cword: int, shell: str = "bash") -> str:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _DRYPIPE_COMPLETE=f"{shell}_complete")
    drypipe_bin = shutil.which("drypipe")
    assert drypipe_bin, "the drypipe entry point is installed by pip install -e ."
    return subprocess.run([drypipe_bin], env=env, capture_output=True, text=True, timeout=60).stdout


def test_completion_scripts_and_answers(tmp_path):
    bash = drypipe("completion", "bash", cwd=tmp_path, check=True).stdout
    assert "_DRYPIPE_COMPLETE=bash_complete" in bash and "complete -o nosort -F _drypipe_completion drypipe" in bash
    zsh = drypipe("completion", "zsh", cwd=tmp_path, check=True).stdout
    assert "#compdef drypipe" in zsh and "_DRYPIPE_COMPLETE=zsh_complete" in zsh
    check = subprocess.run(["bash", "-c", 'eval "$(drypipe completion bash)" && complete -p drypipe'],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "complete -o nosort -F _drypipe_completion drypipe", check.stderr
    assert "plain,graph" in _complete("drypipe gra", 1).splitlines()
    assert "plain,report-execution-times" in _complete("drypipe report-ex", 1).splitlines()
    assert "plain,--json-log" in _complete("drypipe run --json", 2).splitlines()
    assert "--format" in _complete("drypipe graph --fo", 2, "zsh")


def test_service_drives_every_instance(tmp_path):
    write_module(tmp_path, "svc", SERVICE)
    root = tmp_path / "instances"
    (root / "two").mkdir(parents=True)
    (root / "two/drypipe.yaml").write_text("task_conf:\n  extra_env: {WHO: two}\n")
    result = drypipe("service", "--config-generator", "svc:instances", "-pid", str(root), "--once", cwd=tmp_path)
    assert result.returncode == 1  # one instance has a failed task
    assert (root / "one/output/hello/f.txt").read_text() == "nobody\n"
    assert (root / "two/output/hello/f.txt").read_text() == "two\n"
    assert (root / "four/output/hello/f.txt").read_text() == "nobody\n"
    assert state_of(root / "three", "broken") == "failed.0"
    lines = result.stdout.splitlines()
    assert f"{root / 'one'}: 1 task: 1 completed" in lines
    assert f"{root / 'three'}: 1 task: 1 failed" in lines
    assert any(line.endswith(f"{root / 'three'}: broken: failed.0 (exit code 4)") for line in lines)
    missing = drypipe("service", "--config-generator", "svc:nothing", "--once", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "drypipe: error: --config-generator 'svc:nothing': module 'svc' has no function 'nothing'\n"


def test_upgrade_drypipe(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="done").calls("true\\n")()
            yield dsl.task(key="broken").calls("exit 1\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
    lib = instance / ".drypipe/.lib/task-lib.sh"
    current = lib.read_text()
    lib.write_text("# an older drypipe's runtime\n")
    for key in ("done", "broken"):
        (instance / ".drypipe" / key / "task").write_text("#!/bin/bash\n# old\n")
    result = drypipe("upgrade-drypipe", "-i", str(instance), cwd=tmp_path, check=True)
    assert result.stdout == (f"{instance}: task-lib.sh updated; 1 task scripts regenerated; "
                             "1 completed or running tasks left as they are\n")
    assert lib.read_text() == current
    assert (instance / ".drypipe/done/task").read_text() == "#!/bin/bash\n# old\n"  # completed: untouched
    assert "__main" in (instance / ".drypipe/broken/task").read_text()
    restarted = drypipe("run", "-p", "p:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path)
    assert "broken: failed.0 (exit code 1)" in restarted.stdout  # the regenerated script runs
    again = drypipe("upgrade-drypipe", "-i", str(instance), cwd=tmp_path, check=True)
    assert "task-lib.sh already up to date" in again.stdout
    with FileLock(str(instance / ".drypipe/.orchestrator.lock")):
        refused = drypipe("upgrade-drypipe", "-i", str(instance), cwd=tmp_path)
    assert refused.returncode == 1 and "is already driven by another drypipe run" in refused.stderr
