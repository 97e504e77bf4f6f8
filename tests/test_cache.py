"""Content signatures: exactly what changed reruns, `why` says why; the shared cache on a
local directory and on a real S3-compatible server."""
import os
import shutil

import pytest

from tests.helpers import drypipe, output_vars, snapshot, state_of, write_module

PIPELINE = '''
from dry_pipe import DryPipe

LITERAL = {literal}

@DryPipe.python_call()
def fb(x, g):
    with open(g, "w") as f:
        f.write(f"b saw {{x}} {body}\\n")
    with open(f"{{__import__('os').environ['__pipeline_instance_dir']}}/runs.log", "a") as log:
        log.write("b\\n")

def gen(dsl):
    a = dsl.task(key="a").inputs(n=LITERAL).outputs(x=int).calls("""
    echo a >> $__pipeline_instance_dir/runs.log
    export x=$((n * {factor}))
    """)()
    yield a
    b = dsl.task(key="b").inputs(a.outputs.x).outputs(g=dsl.file("g.txt")).calls(fb)()
    yield b
    yield dsl.task(key="c").inputs(data=dsl.file("data.txt")).outputs(h=dsl.file("h.txt")).calls("script.sh")()
    yield dsl.task(key="d").inputs(b.outputs.g).outputs(k=dsl.file("k.txt")).calls("""
    echo d >> $__pipeline_instance_dir/runs.log
    cat $g > $k
    """)()
'''

SCRIPT = 'echo c >> $__pipeline_instance_dir/runs.log\n{body} "$data" > "$h"\n'
NO_PYC = {"PYTHONDONTWRITEBYTECODE": "1"}


def setup_pipeline(code_dir, literal=3, factor=2, body="ok", script_body="cat"):
    code_dir.mkdir(exist_ok=True)
    write_module(code_dir, "p", PIPELINE.format(literal=literal, factor=factor, body=body))
    (code_dir / "script.sh").write_text(SCRIPT.format(body=script_body))


def run(code_dir, instance, *extra, check=True):
    return drypipe("run", "-p", "p:gen", "-i", str(instance), *extra, cwd=code_dir, env=NO_PYC, check=check)


def runs(instance):
    path = instance / "runs.log"
    keys = sorted(path.read_text().split()) if path.exists() else []
    path.unlink(missing_ok=True)
    return keys


@pytest.fixture
def completed(tmp_path):
    code = tmp_path / "code"
    instance = tmp_path / "instance"
    setup_pipeline(code)
    instance.mkdir()
    (instance / "data.txt").write_text("data v1\n")
    run(code, instance)
    assert runs(instance) == ["a", "b", "c", "d"]
    return code, instance


@pytest.mark.parametrize("change, rerun, cause", [
    (dict(factor=5), ["a", "b", "d"], "step 0: bash snippet changed:"),
    (dict(literal=4), ["a", "b", "d"], "input n: was int 3, now int 4"),
    (dict(body="changed"), ["b", "d"], "step 0: python p:fb changed:"),
    (dict(script_body="tac"), ["c"], "step 0: script script.sh changed:"),
])
def test_changed_code_or_literal_reruns_exactly_the_affected_tasks(completed, change, rerun, cause):
    code, instance = completed
    setup_pipeline(code, **change)
    first_rerun = rerun[0]
    why = drypipe("why", "-p", "p:gen", "-i", str(instance), first_rerun, cwd=code, env=NO_PYC, check=True)
    assert f"{first_rerun} is stale" in why.stdout
    assert cause in why.stdout, why.stdout
    result = run(code, instance)
    assert runs(instance) == rerun
    assert f"{first_rerun} was stale" in result.stdout
    assert drypipe("why", "-p", "p:gen", "-i", str(instance), first_rerun, cwd=code, env=NO_PYC).stdout.startswith(
        f"{first_rerun} is up to date")


def test_why_follows_a_changed_upstream_to_the_cause(completed):
    code, instance = completed
    setup_pipeline(code, factor=7)
    why = drypipe("why", "-p", "p:gen", "-i", str(instance), "d", cwd=code, env=NO_PYC, check=True).stdout
    assert "input g: upstream task b changed" in why
    assert "input x: upstream task a changed" in why
    assert "step 0: bash snippet changed:" in why


def test_changed_input_file_content_reruns_its_consumer(completed):
    code, instance = completed
    (instance / "data.txt").write_text("data v2\n")
    why = drypipe("why", "-p", "p:gen", "-i", str(instance), "c", cwd=code, env=NO_PYC, check=True).stdout
    assert "input data: file data.txt changed (content " in why
    run(code, instance)
    assert runs(instance) == ["c"]
    assert (instance / "output/c/h.txt").read_text() == "data v2\n"


def test_keep_stale_keeps_changed_tasks(completed):
    code, instance = completed
    setup_pipeline(code, factor=5)
    run(code, instance, "--keep-stale")
    assert runs(instance) == []


def test_touch_move_and_reclone_rerun_nothing(completed, tmp_path):
    code, instance = completed
    os.utime(instance / "data.txt", (1, 1))
    run(code, instance)
    assert runs(instance) == []
    moved = tmp_path / "moved-instance"
    shutil.copytree(instance, moved)
    recloned = tmp_path / "recloned-code"
    shutil.copytree(code, recloned)
    run(recloned, moved)
    assert runs(moved) == []
    assert state_of(moved, "d") == "completed"


def _fresh_instance(tmp_path, name):
    instance = tmp_path / name
    instance.mkdir()
    (instance / "data.txt").write_text("data v1\n")
    return instance


def _outputs(instance):
    return {k: v for k, v in snapshot(instance / "output").items()}


def test_second_instance_restores_everything_from_a_local_cache(tmp_path):
    code = tmp_path / "code"
    setup_pipeline(code)
    cache = tmp_path / "cache"
    first = _fresh_instance(tmp_path, "first")
    run(code, first, "--cache", str(cache))
    assert runs(first) == ["a", "b", "c", "d"]
    second = _fresh_instance(tmp_path, "second")
    result = run(code, second, "--cache", str(cache))
    assert runs(second) == []
    assert "4 tasks restored from cache" in result.stdout
    assert _outputs(second) == _outputs(first)
    assert output_vars(second, "a") == output_vars(first, "a") == {"x": "6"}
    why = drypipe("why", "-p", "p:gen", "-i", str(second), "b", cwd=code, env=NO_PYC, check=True).stdout
    assert "restored from cache" in why
    listing = drypipe("cache", "ls", str(cache), cwd=code, check=True).stdout
    assert "4 entries" in listing


def test_corrupt_cache_entry_is_ignored_and_the_task_runs(tmp_path):
    code = tmp_path / "code"
    setup_pipeline(code)
    cache = tmp_path / "cache"
    run(code, _fresh_instance(tmp_path, "first"), "--cache", str(cache))
    for stored in cache.glob("*/*/files/k.txt"):
        stored.write_text("tampered\n")
    second = _fresh_instance(tmp_path, "second")
    result = run(code, second, "--cache", str(cache))
    assert runs(second) == ["d"]
    assert "digest mismatch" in result.stderr
    assert (second / "output/d/k.txt").read_text() == "b saw 6 ok\n"


def test_cached_failure_follows_dendro_semantics(tmp_path):
    write_module(tmp_path, "f", '''
        def gen(dsl):
            yield dsl.task(key="flaky").calls("echo ran >> $__pipeline_instance_dir/runs.log; test -e $__pipeline_instance_dir/ok\\n")()
        ''')
    cache = tmp_path / "cache"
    one, two = tmp_path / "one", tmp_path / "two"
    assert drypipe("run", "-p", "f:gen", "-i", str(one), "--cache", str(cache), cwd=tmp_path).returncode == 1
    assert drypipe("run", "-p", "f:gen", "-i", str(two), "--cache", str(cache), cwd=tmp_path).returncode == 1
    assert not (two / "runs.log").exists()  # the cached failure was reused
    assert "failed before with the same signature" in (two / ".drypipe/flaky/drypipe.log").read_text()
    (two / "ok").touch()
    drypipe("run", "-p", "f:gen", "-i", str(two), "--cache", str(cache), "--rerun-failing", "--restart-failed",
            cwd=tmp_path, check=True)
    assert (two / "runs.log").read_text() == "ran\n"
    three = tmp_path / "three"
    drypipe("run", "-p", "f:gen", "-i", str(three), "--cache", str(cache), cwd=tmp_path, check=True)
    assert not (three / "runs.log").exists()  # the success replaced the failure


def test_s3_cache_on_a_real_server(tmp_path, s3_server):
    import s3fs

    endpoint = s3_server["S3_ENDPOINT_URL"]
    env = dict(NO_PYC, DRYPIPE_CACHE_S3_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing")
    s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint}).mkdir("drypipe-cache")
    code = tmp_path / "code"
    setup_pipeline(code)
    first = _fresh_instance(tmp_path, "first")
    url = "s3://drypipe-cache/team-a"
    drypipe("run", "-p", "p:gen", "-i", str(first), "--cache", url, cwd=code, env=env, check=True)
    assert runs(first) == ["a", "b", "c", "d"]
    second = _fresh_instance(tmp_path, "second")
    drypipe("run", "-p", "p:gen", "-i", str(second), "--cache", url, cwd=code, env=env, check=True)
    assert runs(second) == []
    assert _outputs(second) == _outputs(first)
    listing = drypipe("cache", "ls", url, cwd=code, env=env, check=True).stdout
    assert "4 entries" in listing


def test_cache_gc_deletes_failed_and_interrupted_entries(tmp_path):
    write_module(tmp_path, "g", '''
        def gen(dsl):
            yield dsl.task(key="good").outputs(f=dsl.file("f.txt")).calls("echo good > $f\\n")()
            yield dsl.task(key="bad").calls("exit 1\\n")()
        ''')
    cache = tmp_path / "cache"
    drypipe("run", "-p", "g:gen", "-i", str(tmp_path / "i"), "--cache", str(cache), cwd=tmp_path)
    interrupted = cache / "ab" / ("ab" + "0" * 62)
    (interrupted / "files").mkdir(parents=True)
    os.utime(interrupted, (1, 1))
    listing = drypipe("cache", "ls", str(cache), cwd=tmp_path, check=True).stdout
    assert "2 entries" in listing and "failed" in listing
    dry = drypipe("cache", "gc", str(cache), "--failed", "--dry-run", cwd=tmp_path, check=True).stdout
    assert dry.count("would delete") == 2
    drypipe("cache", "gc", str(cache), "--failed", cwd=tmp_path, check=True)
    listing = drypipe("cache", "ls", str(cache), cwd=tmp_path, check=True).stdout
    assert "1 entries" in listing and "good" in listing and "failed" not in listing
    assert not interrupted.exists()


def test_stale_upstream_yielded_after_its_dependent_reruns_first(tmp_path):
    source = '''
        def gen(dsl):
            up = dsl.task(key="up").outputs(v=int).calls("export v={value}\\n")()
            down = dsl.task(key="down").inputs(up.outputs.v).outputs(f=dsl.file("f")).calls("echo $v > $f\\n")()
            yield down  # yielded before the task it consumes
            yield up
        '''
    write_module(tmp_path, "order", source.format(value=1))
    instance = tmp_path / "i"
    drypipe("run", "-p", "order:gen", "-i", str(instance), cwd=tmp_path, env=NO_PYC, check=True)
    assert (instance / "output/down/f").read_text() == "1\n"
    write_module(tmp_path, "order", source.format(value=2))
    drypipe("run", "-p", "order:gen", "-i", str(instance), cwd=tmp_path, env=NO_PYC, check=True)
    assert (instance / "output/down/f").read_text() == "2\n"
