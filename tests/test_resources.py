"""Local resources: the process executor keeps the TaskConf.cpus and mem of the tasks it runs
within `drypipe run --cores/--mem`, without starving a large task; a task that can never fit
is refused, naming it.  Each task records its own start and end times (date +%s.%N)."""
from tests.helpers import drypipe, snapshot, state_of, write_module

TIMED = '''
from dry_pipe import TaskConf
STEP = """
date +%s.%N > $times
sleep $nap
date +%s.%N >> $times
"""
def task(dsl, key, nap, **conf):
    return dsl.task(key=key, task_conf=TaskConf(**conf)).inputs(nap=str(nap)).outputs(
        times=dsl.file("times.txt")).calls(STEP)()
'''


def _intervals(instance, keys) -> dict[str, tuple[float, float]]:
    result = {}
    for key in keys:
        start, end = (instance / "output" / key / "times.txt").read_text().split()
        result[key] = (float(start), float(end))
    return result


def _peak(intervals: dict[str, tuple[float, float]], weights: dict[str, float]) -> float:
    """The most of `weights` held at any moment: a sweep over the starts and ends (an end
    before a start at the same instant)."""
    events = sorted([(end, 0, -weights[k]) for k, (_, end) in intervals.items()]
                    + [(start, 1, weights[k]) for k, (start, _) in intervals.items()])
    held = peak = 0.0
    for _, _, delta in events:
        held += delta
        peak = max(peak, held)
    return peak


def test_cpus_within_cores_budget_and_still_in_parallel(tmp_path):
    write_module(tmp_path, "p", TIMED + '''
def gen(dsl):
    for i in range(8):
        yield task(dsl, f"t{i}", 0.4, cpus=2)
''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--cores", "4", "--max-local-jobs", "8", cwd=tmp_path,
            check=True)
    keys = [f"t{i}" for i in range(8)]
    intervals = _intervals(instance, keys)
    assert _peak(intervals, {k: 2 for k in keys}) == 4  # never more than 4 cpus, and 2 tasks at a time


def test_mem_budget(tmp_path):
    write_module(tmp_path, "p", TIMED + '''
def gen(dsl):
    for i in range(4):
        yield task(dsl, f"m{i}", 0.4, mem="400M")
''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--mem", "1G", "--cores", "8", cwd=tmp_path, check=True)
    keys = [f"m{i}" for i in range(4)]
    assert _peak(_intervals(instance, keys), {k: 400 for k in keys}) == 800  # 2 of 400M within 1G, never 3


def test_large_task_is_not_starved_by_small_ones(tmp_path):
    # Small tasks end one at a time (staggered naps): each frees one core, never the two the
    # large task needs.  After being passed by as many tasks as there are cores, it holds its place.
    write_module(tmp_path, "p", TIMED + '''
def gen(dsl):
    yield task(dsl, "s0", 0.3)
    yield task(dsl, "s1", 0.45)
    yield task(dsl, "large", 0.1, cpus=2)
    for i in range(2, 12):
        yield task(dsl, f"s{i}", 0.3)
''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--cores", "2", cwd=tmp_path, check=True)
    keys = ["large", *(f"s{i}" for i in range(12))]
    intervals = _intervals(instance, keys)
    assert _peak(intervals, {k: 2 if k == "large" else 1 for k in keys}) == 2
    started_after = [k for k in keys if intervals[k][0] > intervals["large"][0]]
    assert len(started_after) >= 6, sorted(intervals.items(), key=lambda kv: kv[1])


def test_task_larger_than_the_budget_is_a_one_line_error(tmp_path):
    write_module(tmp_path, "p", TIMED + '''
def gen(dsl):
    yield task(dsl, "small", 0, cpus=1)
    yield task(dsl, "big", 0, cpus=8, mem="3G")
''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), "--cores", "4", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "drypipe: error: task big: needs 8 cpus, more than the local budget of 4 (drypipe run --cores)"
    before = snapshot(instance)
    assert not any(name.startswith((".drypipe/big/", ".drypipe/small/", "output/")) for name in before)
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), "--cores", "8", "--mem", "2G", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("drypipe: error: task big: needs 3G of memory, more than the local budget "
                                     "of 2G (drypipe run --mem)")
    assert snapshot(instance) == before  # nothing written
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--cores", "8", "--mem", "4G", cwd=tmp_path, check=True)
    assert state_of(instance, "big") == "completed" and state_of(instance, "small") == "completed"


def test_bad_budgets_and_resources_are_one_line_errors(tmp_path):
    write_module(tmp_path, "p", TIMED + '''
def gen(dsl):
    yield task(dsl, "t", 0, mem="lots")
''')
    result = drypipe("run", "-p", "p:gen", "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode == 1
    assert "TaskConf: mem 'lots' is not a size such as '4G', '512M' or 2048 (MiB)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = drypipe("run", "-p", "p:gen", "-i", str(tmp_path / "i"), "--mem", "10Q", cwd=tmp_path)
    assert result.returncode == 2 and "--mem '10Q' is not a size" in result.stderr
    result = drypipe("run", "-p", "p:gen", "-i", str(tmp_path / "i"), "--cores", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--cores" in result.stderr


def test_slurm_jobs_ask_for_the_same_resources(tmp_path):
    write_module(tmp_path, "s", '''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="s", task_conf=TaskConf("slurm", cpus=4, mem="3G", time=90)).calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "s:gen", "-i", str(instance), cwd=tmp_path, check=True)
    command = drypipe("sbatch-gen", "-i", str(instance), "-k", "s", cwd=tmp_path, check=True).stdout
    assert "--cpus-per-task=4 --mem=3072M --time=1:30:00" in command
