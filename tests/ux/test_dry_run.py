"""`drypipe run --dry-run` predicts exactly what `run` with the same options then does: checked
task by task against the task records the real run leaves (did it run, come from the cache,
stay as it was)."""
from __future__ import annotations

import pytest

from tests.helpers import drypipe, snapshot, state_of, write_module
from tests.ux.pipelines import FAILING_CHAIN

PIPELINE = '''
import os

STALE_BODY = {stale_body!r}


def gen(dsl):
    yield dsl.task(key="done").outputs(f=dsl.file("d.txt")).calls("echo done > $f\\n")()
    stale = dsl.task(key="stale").outputs(f=dsl.file("s.txt")).calls(f"echo {{STALE_BODY}} > $f\\n")()
    yield stale
    yield dsl.task(key="after-stale").inputs(s=stale.outputs.f).calls("cat $s\\n")()
    bad = dsl.task(key="bad").outputs(n=int).calls("test -e $__pipeline_instance_dir/fixed || exit 1; export n=1\\n")()
    yield bad
    yield dsl.task(key="after-bad").inputs(bad.outputs.n).calls("echo $n\\n")()
    if os.environ.get("WITH_CACHED"):
        yield dsl.task(key="cached").outputs(f=dsl.file("c.txt")).calls("echo from a run > $f\\n")()
'''

# What a prediction means in the task records after the real run.
EXPECTED = {
    "completed": ("completed", "left alone"),
    "would run": ("completed", "ran"),
    "would restore from cache": ("completed", "from cache"),
    "stays failed": ("failed.0", "left alone"),
    "would wait": ("waiting", "left alone"),
    "not started": ("ready", "left alone"),
}


def _write(code, stale_body):
    write_module(code, "p", PIPELINE.format(stale_body=stale_body))


def _instance(tmp_path, name):
    """An instance with a completed, a stale, a failed and a waiting task, and a cache holding a
    completed `cached` task that the instance has never run."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    _write(code, "v1")
    if not cache.exists():  # another instance ran `cached` and published it
        drypipe("run", "-p", "p:gen", "-i", str(tmp_path / "other"), "--cache", str(cache), cwd=code,
                env={"WITH_CACHED": "1"}, check=False)
    instance = tmp_path / name
    first = drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=code)
    assert first.returncode == 1, first.stderr  # bad failed
    _write(code, "v2")  # stale's code changes
    assert {k: state_of(instance, k) for k in ("done", "stale", "bad", "after-bad")} == {
        "done": "completed", "stale": "completed", "bad": "failed.0", "after-bad": "waiting"}
    return code, cache, instance


def _runs(instance, key):
    log = instance / ".drypipe" / key / "drypipe.log"
    return log.read_text().count("state.step-started.") if log.exists() else 0


def _what_happened(instance, key, runs_before):
    if _runs(instance, key) > runs_before:
        return "ran"
    return "from cache" if (instance / ".drypipe" / key / "cached").exists() else "left alone"


@pytest.mark.parametrize("flags", [(), ("--restart-failed",), ("--until", "after-*"), ("--keep-stale",)],
                         ids=["default", "restart-failed", "until", "keep-stale"])
def test_dry_run_predicts_what_run_does(tmp_path, flags):
    code, cache, instance = _instance(tmp_path, "i")
    args = ("run", "-p", "p:gen", "-i", str(instance), "--cache", str(cache), *flags)
    env = {"WITH_CACHED": "1"}
    if "--restart-failed" in flags:
        (instance / "fixed").touch()  # what runs is predicted to succeed: make it so
    before = snapshot(instance)
    dry = drypipe(*args, "--dry-run", cwd=code, env=env, check=True)
    assert snapshot(instance) == before, "--dry-run changed the instance"
    predicted = dict(line.split("\t")[:2] for line in dry.stdout.splitlines() if "\t" in line)
    assert set(predicted) == {"done", "stale", "after-stale", "bad", "after-bad", "cached"}, dry.stdout

    runs_before = {key: _runs(instance, key) for key in predicted}
    drypipe(*args, cwd=code, env=env)
    for key, action in predicted.items():
        state, happened = EXPECTED[action]
        actual = (state_of(instance, key), _what_happened(instance, key, runs_before[key]))
        assert actual == (state, happened), \
            f"{key}: --dry-run said {action!r}, run left it {actual}\n{dry.stdout}"

    lines = dry.stdout.splitlines()
    if "--keep-stale" in flags:
        assert "stale\tcompleted\tup to date" in lines
    else:
        assert "stale\twould run\tstale: step 0 changed" in lines
    if "--restart-failed" in flags:
        assert "bad\twould run\tfailed.0, again from step 0 (--restart-failed)" in lines
        assert "after-bad\twould run\tafter bad" in lines
    else:
        # the instance is outside the current directory: its log is shown by its absolute path
        assert f"bad\tstays failed\tfailed.0: see {instance}/.drypipe/bad/out.log; run with --restart-failed " \
               "(or --reset-failed) to run it again" in lines
        assert any(line.startswith(f"after-bad\twould wait\tfor bad, which failed: see {instance}/.drypipe/bad/out.log")
                   for line in lines), dry.stdout
    assert f"cached\twould restore from cache\t{cache}" in lines
    assert "done\tcompleted\tup to date" in lines


def test_dry_run_follows_failures_and_until_downstream(tmp_path):
    """A wait is followed to its root: a task two steps below a failure names the failed task."""
    write_module(tmp_path, "chain", FAILING_CHAIN)
    instance = tmp_path / "i"
    drypipe("run", "-p", "chain:gen", "-i", str(instance), cwd=tmp_path)
    lines = drypipe("run", "-p", "chain:gen", "-i", str(instance), "--dry-run", cwd=tmp_path, check=True).stdout
    # a log inside the current directory is shown relative to it, as `drypipe run` shows it
    assert "b\twould wait\tfor a, which failed: see i/.drypipe/a/out.log" in lines
    assert "c\twould wait\tfor b, which waits for a, which failed: see i/.drypipe/a/out.log" in lines
    held = drypipe("run", "-p", "chain:gen", "-i", str(tmp_path / "j"), "--until", "b", "--dry-run",
                   cwd=tmp_path, check=True).stdout.splitlines()
    assert held[:3] == ["a\twould run", "b\tnot started\t--until b", "c\twould wait\tfor b, which is not started (--until b)"]
