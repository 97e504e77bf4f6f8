"""Crash campaign: `drypipe run` is killed with SIGKILL at 20 seeded random moments and
restarted each time.  Afterwards every task has run exactly once, the outputs are
byte-identical to an uninterrupted run, and no temporary file is left behind."""
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.helpers import REPO, drypipe, snapshot

HERE = Path(__file__).parent
KILLS = 20
ENV = {"DRYPIPE_LOST_GRACE_SECONDS": "1"}


def _outputs(instance: Path) -> dict:
    return snapshot(instance / "output")


def test_sigkill_campaign_loses_nothing_and_runs_nothing_twice(tmp_path):
    spec = "tests.reliability.crash_pipeline:gen"
    reference = tmp_path / "reference"
    drypipe("run", "-p", spec, "-i", str(reference), cwd=REPO, env=ENV, check=True, timeout=300)
    assert len((reference / "runs.log").read_text().split()) == 300

    rng = random.Random(20261123)
    instance = tmp_path / "campaign"
    env = dict(os.environ, PYTHONPATH=str(REPO), **ENV)
    kills = 0
    while kills < KILLS:
        run = subprocess.Popen([sys.executable, "-m", "drypipe", "run", "-p", spec, "-i", str(instance)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.1, 0.8))
        if run.poll() is not None:
            break  # finished before this kill
        run.send_signal(signal.SIGKILL)
        run.wait()
        kills += 1
    final = drypipe("run", "-p", spec, "-i", str(instance), cwd=REPO, env=ENV, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr

    counts = Counter((instance / "runs.log").read_text().split())
    twice = sorted(k for k, n in counts.items() if n > 1)
    lost = 300 - len(counts)
    print(f"crash campaign: kills survived {kills}, tasks lost {lost}, tasks run twice {len(twice)}")
    assert kills == KILLS, "the pipeline finished before the 20th kill"
    assert twice == [] and lost == 0
    assert _outputs(instance) == _outputs(reference)
    leftovers = [str(p) for p in instance.rglob("*.tmp")]
    assert leftovers == []
