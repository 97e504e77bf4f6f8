"""The manual's examples with some tasks on an ssh host (two host names for one real sshd) and
some local: the same outputs as an all-local run, every remote task really ran remotely."""
import json
import shutil

import pytest

from tests.helpers import REPO, output_vars, state_of
from tests.ssh.ssh_helpers import as_ssh_user, drypipe, outputs

CASES = {
    "chunked_fasta": ("examples.chunked_fasta:pipeline", "tests.ssh.pipelines:chunked_fasta_mixed",
                      "chimp.fasta", {"prepare-chunks": "127.0.0.1", "task-for-chunk.0": "127.0.0.1",
                                      "task-for-chunk.2": "localhost", "analyze-all-work-pieces": "localhost"}),
    "t1_t2_t3": ("examples.dag_t1_t2_t3:pipeline", "tests.ssh.pipelines:t1_t2_t3_mixed", None,
                 {"t1": "127.0.0.1", "t3": "127.0.0.1"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_example_with_remote_and_local_tasks(ssh_env, sshd_server, tmp_path, case):
    local_pipeline, mixed_pipeline, seed, remote_keys = CASES[case]
    local, mixed = tmp_path / "local", tmp_path / "mixed"
    for instance in (local, mixed):
        instance.mkdir()
        if seed:
            shutil.copy(REPO / "examples" / "data" / seed, instance / seed)
    result = drypipe("run", "-p", local_pipeline, "-i", str(local), env=ssh_env)
    assert result.returncode == 0, result.stderr
    result = drypipe("-v", "run", "-p", mixed_pipeline, "-i", str(mixed), env=ssh_env)
    assert result.returncode == 0, result.stdout + result.stderr

    remote_instance = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/mixed"
    assert outputs(mixed, remote_instance) == outputs(local)
    keys = sorted(p.name for p in (mixed / ".drypipe").iterdir() if not p.name.startswith("."))
    assert keys == sorted(p.name for p in (local / ".drypipe").iterdir() if not p.name.startswith("."))
    for key in keys:
        assert state_of(mixed, key) == "completed"
        if (local / ".drypipe" / key / "output_vars").exists():
            assert output_vars(mixed, key) == output_vars(local, key)
        record = mixed / ".drypipe" / key / "ssh_launch"
        if key in remote_keys:  # launched on its host, and its logs came back
            launch = json.loads(record.read_text())
            assert launch["host"] == f"{sshd_server['SSH_USER']}@{remote_keys[key]}:{sshd_server['SSHD_PORT']}"
            assert launch["remote_instance"] == remote_instance
            assert "state.completed" in (mixed / ".drypipe" / key / "drypipe.log").read_text()
        else:
            assert not record.exists()

    # The remote side holds the remote tasks' control dirs (beside the markers of the upstream
    # tasks they checked before starting), and exactly what they consumed.
    listing = as_ssh_user(sshd_server, f"cd {remote_instance} && ls .drypipe/*/task | cut -d/ -f2 && "
                                       "find output -type f | sort")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.split()
    assert sorted(l for l in lines if not l.startswith("output/")) == sorted(remote_keys)
    remote_files = [l for l in lines if l.startswith("output/")]
    if case == "t1_t2_t3":  # the local t2's output went up for t3, nothing else of it
        assert [f for f in remote_files if f.startswith("output/t2/")] == ["output/t2/f.tsv"]
    else:  # the local chunk task's results went up for the remote analysis
        assert "output/task-for-chunk.1/results.json" in remote_files
    # Remote python calls ran with the remote venv's interpreter; no local path went up.
    python_key = "t3" if case == "t1_t2_t3" else "prepare-chunks"
    env_sh = as_ssh_user(sshd_server, f"cat {remote_instance}/.drypipe/{python_key}/task-env.sh").stdout
    assert f"__python_bin={ssh_env['DRYPIPE_SSH_REMOTE_VENV']}/bin/python" in env_sh
    assert str(mixed) not in env_sh and str(REPO) not in env_sh
