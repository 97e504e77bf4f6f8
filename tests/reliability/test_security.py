"""Security: values are data, never code; nothing leaves the instance; secrets stay secret.

- Shell injection through every value channel (input values, output variables of bash and
  python steps, file and fileset names, keys, TaskConf strings: extra_env values, container,
  python_bin, sbatch_options and slurm_account) never executes: each payload would create a
  canary file, and none may exist afterwards.  `TaskConf.command_before_task` is bash code by
  design (module load, conda activate): it runs, as documented.
- Path traversal through keys, output file names and fileset globs is refused: the bad-input
  catalogue has those cases (task_key_traversal, dump_env_absolute_key, output_file_*,
  fileset_*, sub_pipeline_prefix_traversal, key_absolute_path).
- Secrets in the orchestrator's environment (DENDRO_API_KEY, AWS_SECRET_ACCESS_KEY, ...) and
  the content of an ssh private key never reach any file of the instance nor any message.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, drypipe
from tests.reliability.support import states, write_module


def payloads(canaries: Path) -> list[str]:
    """Values that would create a file in `canaries` if any shell evaluated them."""
    c = str(canaries)
    return [
        f"$(touch {c}/dollar-paren)",
        f"`touch {c}/backtick`",
        f"; touch {c}/semicolon",
        f"| touch {c}/pipe",
        f"&& touch {c}/and",
        f"\ntouch {c}/newline\n",
        f"'$(touch {c}/single-quoted)'",
        f"\"$(touch {c}/double-quoted)\"",
        f"$(touch {c}/unicode-\u2603) \u00e9 \t \x01",
        f"${{IFS}}$(touch${{IFS}}{c}/ifs)",
        f"\\\"; touch {c}/escaped-quote; echo \\\"",
    ]


INJECTION = '''
import json
import os
from dry_pipe import DryPipe, TaskConf

PAYLOADS = json.loads(os.environ["PAYLOADS"])
CANARIES = os.environ["CANARIES"]


@DryPipe.python_call()
def echo_back(v, from_bash):
    assert v == from_bash, (v, from_bash)
    return {"back": v}


def gen(dsl):
    for i, p in enumerate(PAYLOADS):
        conf = TaskConf(extra_env={"EXTRA": p})
        bash = dsl.task(key=f"bash.{i}", task_conf=conf).inputs(v=p).outputs(
            out=str, f=dsl.file(f"file-{p.strip()[:40].replace('/', '_')}.txt"),
            s=dsl.fileset(f"*{p.strip()[:30].replace('/', '_')}*")).calls("""
            test "$v" = "$EXTRA" || exit 9
            printf '%s' "$v" > "$f"
            export out="$v"
            """)()
        yield bash
        py = dsl.task(key=f"py.{i}").inputs(v=p, from_bash=bash.outputs.out).outputs(back=str).calls(echo_back)()
        yield py
        yield dsl.task(key=f"down.{i}").inputs(v=p, back=py.outputs.back, f=bash.outputs.f).outputs(
            same=str).calls("""
            test "$back" = "$v" && cmp -s "$f" <(printf '%s' "$v") && export same=yes
            """)()
    # an odd but valid key: every character the key pattern allows
    yield dsl.task(key="k_-.=+,@:9").calls("true\\n")()
    # TaskConf strings that name things: a container image and an interpreter
    yield dsl.task(key="container", task_conf=TaskConf(container=PAYLOADS[0])).calls("true\\n")()
    yield dsl.task(key="python-bin", task_conf=TaskConf(python_bin=PAYLOADS[2].strip())).inputs(
        v="x", from_bash="x").outputs(back=str).calls(echo_back)()
'''


def test_no_value_channel_executes_a_payload(tmp_path, reliability):
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    values = payloads(canaries)
    write_module(tmp_path, "injection", INJECTION)
    instance = tmp_path / "i"
    env = {"PAYLOADS": json.dumps(values), "CANARIES": str(canaries)}
    result = drypipe("run", "-p", "injection:gen", "-i", str(instance), "--max-local-jobs", "4", cwd=tmp_path,
                     env=env, timeout=300)
    assert list(canaries.iterdir()) == []
    final = states(instance)
    # The image and the interpreter do not exist: those tasks fail, saying so, and run nothing.
    assert final.pop("container") == "failed.0" and final.pop("python-bin") == "failed.0"
    assert set(final.values()) == {"completed"}, (final, result.stderr)
    for i, value in enumerate(values):
        assert json.loads((instance / f".drypipe/down.{i}/output_vars").read_text()) == {"same": "yes"}
        written = list((instance / "output" / f"bash.{i}").glob("file-*.txt"))
        assert len(written) == 1 and written[0].read_text() == value  # the literal name, the exact bytes
    assert "needs container" in (instance / ".drypipe/container/out.log").read_text()
    # Whatever the steps printed, nothing ran: still no canary after dump-env and status.
    for key in ("bash.0", "py.0", "down.0", "k_-.=+,@:9"):
        dumped = drypipe("dump-env", "-i", str(instance), "-k", key, cwd=tmp_path)
        assert dumped.returncode == 0, dumped.stderr
    drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert list(canaries.iterdir()) == []
    reliability.outcome(lost=0, twice=0)


def test_command_before_task_is_code_by_design(tmp_path):
    """The one TaskConf string that is bash on purpose (docs/reliability.md): it runs before
    each step, in the step's shell."""
    write_module(tmp_path, "before", '''
        from dry_pipe import TaskConf
        def gen(dsl):
            conf = TaskConf(command_before_task="export LOADED=module-x; echo before >> ../../before.log")
            yield dsl.task(key="t", task_conf=conf).outputs(seen=str).calls("export seen=$LOADED\\n").calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "before:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert json.loads((instance / ".drypipe/t/output_vars").read_text()) == {"seen": "module-x"}
    assert (instance / "before.log").read_text() == "before\nbefore\n"


SLURM_INJECTION = '''
import os
from dry_pipe import TaskConf

C = os.environ["CANARIES"]
CONF = TaskConf(executer_type="slurm", slurm_account=f"acct$(touch {C}/account)",
                sbatch_options=[f"--comment=$(touch {C}/comment)", f"--job-name=x;touch {C}/job-name",
                                f"--mail-user=`touch {C}/mail`@example.org"])


def gen(dsl):
    yield dsl.task(key="via-array", task_conf=CONF).calls("true\\n")()
    yield dsl.task(key="via-launcher", task_conf=CONF).calls("true\\n")()
'''


def test_sbatch_options_and_account_are_never_evaluated(tmp_path, slurm_cluster, reliability):
    """Both ways to submit: the orchestrator's job arrays (sbatch argv, no shell) and the
    generated sbatch-launcher.sh that `drypipe sbatch` runs (a bash script: quoting matters)."""
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    write_module(tmp_path, "slurm_injection", SLURM_INJECTION)
    instance = tmp_path / "i"
    env = {"CANARIES": str(canaries), "SLURM_CONF": slurm_cluster["SLURM_CONF"], "DRYPIPE_LOST_GRACE_SECONDS": "5"}
    drypipe("prepare", "-p", "slurm_injection:gen", "-i", str(instance), cwd=tmp_path, env=env, check=True)
    launched = drypipe("sbatch", "-i", str(instance), "-k", "via-launcher", "--wait", cwd=tmp_path, env=env,
                       timeout=120)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    drypipe("run", "-p", "slurm_injection:gen", "-i", str(instance), "--sleep-schedule", "0,0.5,1", cwd=tmp_path,
            env=env, check=True, timeout=120)
    assert states(instance) == {"via-array": "completed", "via-launcher": "completed"}
    assert list(canaries.iterdir()) == []
    reliability.outcome(lost=0, twice=0)


# -- secrets -------------------------------------------------------------------------------------

SECRETS_PIPELINE = '''
from dry_pipe import DryPipe, TaskConf


@DryPipe.python_call()
def compute(n):
    return {"sq": n * n}


def gen(dsl):
    t = dsl.task(key="bash", task_conf=TaskConf(extra_env={"MODE": "fast"})).inputs(n=3).outputs(
        m=int, f=dsl.file("f.txt")).calls("echo working; export m=$((n + 1)); echo $m > $f\\n")()
    yield t
    yield dsl.task(key="python").inputs(n=t.outputs.m).outputs(sq=int).calls(compute)()
    yield dsl.task(key="failing").calls("echo about to fail >&2; exit 3\\n")()
    yield dsl.task(key="slow-tail").inputs(t.outputs.f).calls("cat $f\\n")()
'''


def _grep_tree(root: Path, needles: dict[str, str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, value in needles.items() if value.encode() in data]
    return found


def test_secrets_never_reach_files_logs_or_messages(tmp_path, reliability):
    key_file = tmp_path / "id_ed25519"
    generated = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
                               capture_output=True)
    if generated.returncode != 0:
        pytest.skip("ssh-keygen is not available")
    key_body = "".join(key_file.read_text().splitlines()[1:-1])
    needles = {
        "DENDRO_API_KEY": "dendro-" + secrets.token_hex(16),
        "AWS_SECRET_ACCESS_KEY": "aws-" + secrets.token_hex(16),
        "PAIRIO_API_KEY": "pairio-" + secrets.token_hex(16),
        "DRYPIPE_DENDRO_API_KEY": "dpd-" + secrets.token_hex(16),
    }
    env = dict(needles)
    needles["ssh private key"] = key_body[:48]
    write_module(tmp_path, "secret_pipeline", SECRETS_PIPELINE)
    instance = tmp_path / "i"
    outputs = []
    for args in (["-vv", "run", "-p", "secret_pipeline:gen", "-i", str(instance)],
                 ["status", "-i", str(instance)],
                 ["list-states", "-i", str(instance)],
                 ["report-execution-times", "-i", str(instance)],
                 ["why", "-i", str(instance), "-p", "secret_pipeline:gen", "bash"],
                 ["dump-env", "-i", str(instance), "-k", "bash"],
                 ["dump-env", "-i", str(instance), "-k", "python"],
                 ["-vv", "run", "-p", "secret_pipeline:gen", "-i", str(instance), "--restart-failed"],
                 ["-vv", "task", "-i", str(instance), "-k", "nosuch"]):
        result = drypipe(*args, cwd=tmp_path, env=env)
        outputs.append(result.stdout + result.stderr)
    assert states(instance)["python"] == "completed" and states(instance)["failing"] == "failed.0"
    # A task given the key file's path (as ssh_specs names it) records the path, never the content.
    write_module(tmp_path, "keyed", f'''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="remote", task_conf=TaskConf(
                ssh_specs="nobody@127.0.0.1:1:{key_file}", remote_base_dir="/tmp/nowhere")).calls("true\\n")()
        ''')
    keyed = drypipe("-vv", "run", "-p", "keyed:gen", "-i", str(tmp_path / "keyed"), cwd=tmp_path, env=env,
                    timeout=120)
    outputs.append(keyed.stdout + keyed.stderr)
    leaks = _grep_tree(instance, needles) + _grep_tree(tmp_path / "keyed", needles)
    leaks += [f"{name} in command output" for name, value in needles.items() for text in outputs if value in text]
    assert leaks == []
    reliability.outcome(lost=0, twice=0)
