"""`drypipe why`: a code change as a unified diff of the code the task ran with and the code
now (bash snippet, script, python call), a changed input by its file or value, and a task
held back by a failure upstream sent to that failure."""
from __future__ import annotations

import hashlib

from tests.helpers import drypipe, write_module
from tests.ux.pipelines import FAILING_CHAIN

PIPELINE = '''
from dry_pipe import DryPipe

N = {n}


@DryPipe.python_call()
def count(f, total):
    with open(f) as lines:
        return {{"total": len(lines.readlines()) * {factor}}}


def gen(dsl):
    a = dsl.task(key="a").inputs(data=dsl.file("data.txt"), n=N).outputs(f=dsl.file("a.txt")).calls("""
    echo one > $f
    echo {word} >> $f
    echo three >> $f
    """)()
    yield a
    yield dsl.task(key="b").inputs(a.outputs.f).outputs(total=int).calls(count)()
    yield dsl.task(key="c").inputs(src=a.outputs.f).outputs(g=dsl.file("g.txt")).calls("c.sh")()
'''


def _setup(code, word="two", n=1, factor=1, script="cat $src > $g\n"):
    write_module(code, "p", PIPELINE.format(word=word, n=n, factor=factor))
    (code / "c.sh").write_text(script)


def _why(code, instance, key):
    return drypipe("why", "-p", "p:gen", "-i", str(instance), key, cwd=code, check=True).stdout.splitlines()


def test_why_shows_code_changes_as_diffs_and_names_changed_inputs(tmp_path):
    code, instance = tmp_path / "code", tmp_path / "i"
    code.mkdir()
    instance.mkdir()
    (instance / "data.txt").write_text("first\n")
    _setup(code)
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=code, check=True, env={"PYTHONDONTWRITEBYTECODE": "1"})
    _setup(code, word="TWO", n=2, factor=10, script="sort $src > $g\n")
    (instance / "data.txt").write_text("second\n")

    assert _why(code, instance, "a") == [
        "a is stale and will rerun:",
        "  input data: file data.txt changed (content "
        f"{_sha('first')} -> {_sha('second')})",
        "  input n: was int 1, now int 2",
        "  step 0: bash snippet changed:",
        "    --- step 0, as a ran it",
        "    +++ step 0, now",
        "    @@ -1,3 +1,3 @@",
        "     echo one > $f",
        "    -echo two >> $f",
        "    +echo TWO >> $f",
        "     echo three >> $f",
    ]
    b = _why(code, instance, "b")
    assert b[:3] == ["b is stale and will rerun:", "  input f: upstream task a changed",
                     "    input data: file data.txt changed (content "
                     f"{_sha('first')} -> {_sha('second')})"]
    assert b[-9:] == [
        "  step 0: python p:count changed:",
        "    --- step 0, as b ran it",
        "    +++ step 0, now",
        "    @@ -1,4 +1,4 @@",
        "     @DryPipe.python_call()",
        "     def count(f, total):",
        "         with open(f) as lines:",
        "    -        return {\"total\": len(lines.readlines()) * 1}",
        "    +        return {\"total\": len(lines.readlines()) * 10}",
    ]
    c = _why(code, instance, "c")
    assert c[-6:] == [
        "  step 0: script c.sh changed:",
        "    --- step 0, as c ran it",
        "    +++ step 0, now",
        "    @@ -1 +1 @@",
        "    -cat $src > $g",
        "    +sort $src > $g",
    ]


def _sha(text):
    return hashlib.sha256(f"{text}\n".encode()).hexdigest()[:12]


def test_why_follows_a_failed_upstream(tmp_path):
    write_module(tmp_path, "chain", FAILING_CHAIN)
    instance = tmp_path / "i"
    drypipe("run", "-p", "chain:gen", "-i", str(instance), cwd=tmp_path)
    hint = "see i/.drypipe/a/out.log; run with --restart-failed (or --reset-failed) to run it again"
    why = lambda key: drypipe("why", "-p", "chain:gen", "-i", str(instance), key,  # noqa: E731
                              cwd=tmp_path, check=True).stdout.strip()
    assert why("b") == f"b is waiting: it waits for a, which failed: {hint}"
    assert why("c") == f"c is waiting: it waits for b, which waits for a, which failed: {hint}"
    assert why("a") == f"a is failed.0: it does not run again by itself: {hint}"
