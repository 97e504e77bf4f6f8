"""Tasks submitted over ssh to the Slurm of the remote host (the test cluster, reached as the
ssh user): job arrays built by the Slurm executor's code, polled with the host's markers."""
import re

from tests.helpers import output_vars, state_of
from tests.ssh.ssh_helpers import drypipe


def _job(instance, key):
    return (instance / ".drypipe" / key / "slurm_job_id").read_text().strip()


def test_remote_slurm_pipeline(ssh_env, sshd_server, slurm_cluster, tmp_path):
    env = dict(ssh_env, DRYPIPE_TEST_REMOTE_SLURM_CONF=slurm_cluster["SLURM_CONF"])
    instance = tmp_path / "i"
    result = drypipe("-v", "run", "-p", "tests.ssh.pipelines:remote_slurm", "-i", str(instance), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    parts = [f"part.{i}" for i in range(3)]
    for key in parts + ["gather"]:
        assert state_of(instance, key) == "completed"
        assert re.fullmatch(r"\d+_\d+", _job(instance, key)), key
        assert "from step 0" in (instance / ".drypipe" / key / "slurm.log").read_text()  # the array launcher's log
    assert len({_job(instance, k).split("_")[0] for k in parts}) == 1  # ready together: one job array
    assert _job(instance, "gather").split("_")[0] != _job(instance, "part.0").split("_")[0]
    for i, key in enumerate(parts):
        job = _job(instance, key).split("_")[0]
        text = (instance / "output" / key / "part.txt").read_text()
        assert re.fullmatch(rf"part {i} on \d+ as {ssh_env['SSH_USER']}\n", text), text
        assert int(text.split()[3]) >= int(job)
        assert output_vars(instance, key) == {"sq": str(i * i)}
    all_text = (instance / "output/gather/all.txt").read_text()
    assert all_text.count("part ") == 3 and all_text.endswith("s=4\n")
    assert "submitted 3 task(s) as job array" in result.stderr


def test_array_submit_and_watch_from_remote(ssh_env, sshd_server, slurm_cluster, tmp_path):
    env = dict(ssh_env, DRYPIPE_TEST_REMOTE_SLURM_CONF=slurm_cluster["SLURM_CONF"])
    instance = tmp_path / "i"
    i = ["-i", str(instance)]
    assert drypipe("prepare", "-p", "tests.ssh.pipelines:remote_slurm", *i, env=env).returncode == 0
    result = drypipe("array-submit-from-remote", *i, "-k", "part.*", env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"submitted 3 task\(s\) as Slurm job array \d+", result.stdout), result.stdout
    result = drypipe("array-watch-from-remote", *i, "-k", "part.*", "--wait", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 task(s): 3 completed" in result.stdout
    result = drypipe("run", "-p", "tests.ssh.pipelines:remote_slurm", *i, env=env)  # gather, the rest adopted
    assert result.returncode == 0, result.stdout + result.stderr
    assert (instance / "output/gather/all.txt").read_text().endswith("s=4\n")
