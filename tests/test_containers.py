"""Steps in containers: a real podman container runs a task (as `drypipe run` starts it, by
hand with ./task, and as a Slurm job), the command lines of apptainer, singularity and docker
(which cannot run here: apptainer has no Debian package, and docker's daemon is not on this
machine), and the errors for an unknown runtime and for a runtime that is not installed.

The podman image is built by the test from this machine's own bash and coreutils (no
registry is reachable): a root file system whose /etc/os-release holds a marker, imported
with `podman import`.  Podman's storage and configuration live in a temp dir, given by
CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, and are not the machine's."""
from __future__ import annotations

import os
import pwd
import resource
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import drypipe, output_vars, state_of, write_module

# What the image holds: bash, and the commands the test's steps and the task runtime (mv, to
# record output variables) use.
IMAGE_COMMANDS = ["bash", "cat", "mv"]
# The container runtimes the test finds missing (hidden from PATH, see _path_without).
RUNTIME_NAMES = ["podman", "docker", "apptainer", "singularity"]


def _require(*tools: str) -> None:
    """Fail under CI (install.sh installs them), else skip, when a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (tests/services/install.sh installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _root_fs(root: Path, marker: str) -> None:
    """A minimal root file system: IMAGE_COMMANDS and the libraries ldd lists for them."""
    files = set()
    for command in IMAGE_COMMANDS:
        binary = shutil.which(command)
        files.add((binary, f"/usr/bin/{command}"))
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for word in ldd.split():
            if word.startswith("/"):
                files.add((word, word))
    for source, dest in files:
        (root / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / dest.lstrip("/"))
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(f"ID=drypipe-test-image\nMARKER={marker}\n")
    (root / "tmp").mkdir(mode=0o1777)


def _podman_files(store: Path) -> dict[str, str]:
    """containers.conf and storage.conf of a podman store in `store`, made for this sandbox."""
    # Limits no higher than this process's own: root here lacks CAP_SYS_RESOURCE, and podman's
    # defaults for root (1048576 open files) would be refused.
    limits = {name: min(resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))[1], 4096)
              for name in ("nofile", "nproc")}
    ulimits = ", ".join(f'"{name}={n}:{n}"' for name, n in limits.items())
    return {
        # runc, not crun: this machine's cgroups are hybrid (v1 and v2), which crun refuses.
        # cgroupfs and a file for events: there is no systemd.
        "containers.conf": f'[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                           f'tmp_dir = "{store}/tmp"\n[containers]\ndefault_ulimits = [{ulimits}]\n'
                           f'[network]\nnetwork_config_dir = "{store}/networks"\n',
        # vfs: no overlay mount (nor fuse-overlayfs) needed
        # rootless podman takes rootless_storage_path instead of graphroot
        "storage.conf": f'[storage]\ndriver = "vfs"\nrunroot = "{store}/run"\ngraphroot = "{store}/graph"\n'
                        f'rootless_storage_path = "{store}/graph"\n',
    }


def _podman_env(store: Path) -> dict[str, str]:
    return {"CONTAINERS_CONF": f"{store}/containers.conf", "CONTAINERS_STORAGE_CONF": f"{store}/storage.conf"}


@dataclass
class Podman:
    image: str
    marker: str  # in the image's /etc/os-release
    env: dict[str, str]  # the environment that uses the store
    tarball: Path  # the image's root file system


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    """An image in a podman store of its own."""
    _require("podman", "runc")
    store = _short_temp_dir()
    for name, text in _podman_files(store).items():
        (store / name).write_text(text)
    marker = uuid.uuid4().hex
    root = store / "rootfs"
    root.mkdir()
    _root_fs(root, marker)
    tarball = store / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    image = f"localhost/drypipe-test:{marker[:12]}"
    env = dict(os.environ, **_podman_env(store))
    subprocess.run(["podman", "import", str(tarball), image], env=env, capture_output=True, text=True, check=True)
    yield Podman(image, marker, env, tarball)
    shutil.rmtree(store)


def _short_temp_dir() -> Path:
    """A temp dir with a short path: podman refuses a run root (the store's run/, or rootless
    podman's $XDG_RUNTIME_DIR/containers) longer than 50 characters."""
    return Path(tempfile.mkdtemp(prefix="dpc-"))


PIPELINE = '''
    from dry_pipe import TaskConf

    IN_IMAGE = TaskConf({executor!r}, container={image!r}, container_runtime="podman")

    def gen(dsl):
        inside = dsl.task(key="inside", task_conf=IN_IMAGE).inputs(data=dsl.file({data!r}))\\
            .outputs(seen=dsl.file("seen.txt"), python=str).calls("""
            {{ cat /etc/os-release; cat "$data"; echo "cwd=$PWD"; }} > "$seen"
            if [[ -e {python!r} ]]; then export python=present; else export python=absent; fi
            """)()
        yield inside
        yield dsl.task(key="outside").inputs(seen=inside.outputs.seen, python=inside.outputs.python)\\
            .outputs(report=dsl.file("report.txt")).calls("""
            {{ echo "python in the image: $python"; cat "$seen"; cat /etc/os-release; }} > "$report"
            """)()
'''


def _pipeline(tmp_path: Path, image: str, executor: str = "process") -> Path:
    data = tmp_path / "data" / "input.txt"  # outside the instance: bound into the container
    data.parent.mkdir()
    data.write_text("a line from outside the instance\n")
    python = os.path.realpath(shutil.which("python3"))
    write_module(tmp_path, "in_podman", PIPELINE.format(executor=executor, image=image, data=str(data), python=python))
    return data


def _check_outputs(instance: Path, marker: str) -> str:
    """Inside: the image's /etc/os-release and no python (the host has both), the input from
    outside the instance, the output dir as working directory; the output in the output dir.
    Outside: the host's own /etc/os-release."""
    assert state_of(instance, "inside") == "completed" and state_of(instance, "outside") == "completed"
    seen = (instance / "output/inside/seen.txt").read_text()
    assert seen == (f"ID=drypipe-test-image\nMARKER={marker}\na line from outside the instance\n"
                    f"cwd={instance}/output/inside\n")
    assert output_vars(instance, "inside") == {"python": "absent"}
    report = (instance / "output/outside/report.txt").read_text()
    assert report == "python in the image: absent\n" + seen + Path("/etc/os-release").read_text()
    return seen


def _command(instance: Path, key: str, step: int = 0, env: dict | None = None) -> list[str]:
    """`./task container-command STEP`: the command line that runs the step in its container."""
    result = subprocess.run([str(instance / ".drypipe" / key / "task"), "container-command", str(step)],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def test_a_task_runs_in_a_podman_container_and_one_outside_consumes_its_output(podman, tmp_path):
    image, env = podman.image, podman.env
    data = _pipeline(tmp_path, image)
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "in_podman:gen", "-i", str(instance), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr + (instance / ".drypipe/inside/out.log").read_text()
    seen = _check_outputs(instance, podman.marker)

    # The generated command line: the instance, the code dir (the pipeline's module) and the
    # input outside the instance, at their own paths.
    podman_bin = shutil.which("podman")
    assert _command(instance, "inside", env=env) == [
        podman_bin, "run", "--rm", "--network", "host", "--workdir", f"{instance}/output/inside",
        "--env", "__inside_container=1", "--volume", f"{instance}:{instance}",
        "--volume", f"{tmp_path}:{tmp_path}", "--volume", f"{data}:{data}",
        image, "bash", f"{instance}/.drypipe/inside/task", "--step-only", "0"]
    out = subprocess.run([str(instance / ".drypipe/outside/task"), "container-command"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "task outside: step 0 runs outside a container\n"

    # The same task script, run by hand.
    (instance / "output/inside/seen.txt").unlink()
    rerun = subprocess.run([str(instance / ".drypipe/inside/task")], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert (instance / "output/inside/seen.txt").read_text() == seen
    assert state_of(instance, "inside") == "completed"


def test_a_slurm_job_runs_its_step_in_a_podman_container(podman, slurm_cluster, tmp_path):
    _pipeline(tmp_path, podman.image, executor="slurm")
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "in_podman:gen", "-i", str(instance), "--sleep-schedule", "0,0.5,1",
                     cwd=tmp_path, env=dict(podman.env, SLURM_CONF=slurm_cluster["SLURM_CONF"]))
    assert result.returncode == 0, result.stderr + (instance / ".drypipe/inside/out.log").read_text()
    _check_outputs(instance, podman.marker)
    assert (instance / ".drypipe/inside/slurm_job_id").exists()  # it ran as a Slurm job


REMOTE_PIPELINE = '''
    from dry_pipe import TaskConf
    from tests.ssh.pipelines import ssh_conf

    def gen(dsl):
        remote = ssh_conf()
        remote.container, remote.container_runtime = {image!r}, "podman"
        remote.extra_env = {podman_env!r}  # rootless podman, with a store in the remote base dir
        inside = dsl.task(key="inside", task_conf=remote).inputs(data=dsl.file({data!r}))\\
            .outputs(seen=dsl.file("seen.txt")).calls("""
            {{ cat /etc/os-release; cat "$data"; echo "cwd=$PWD"; }} > "$seen"
            """)()
        yield inside
        yield dsl.task(key="outside").inputs(seen=inside.outputs.seen).outputs(report=dsl.file("report.txt"))\\
            .calls("""
            {{ cat "$seen"; cat /etc/os-release; }} > "$report"
            """)()
'''


@pytest.fixture
def remote_podman(podman, sshd_server):
    """A remote base dir of the ssh user, with a podman store there that holds the image:
    (base dir, environment of rootless podman)."""
    user = pwd.getpwnam(sshd_server["SSH_USER"])
    base = _short_temp_dir()  # its parents: o+x, unlike tmp_path's
    base.chmod(0o755)
    store = base / "p"
    store.mkdir()
    for name, text in _podman_files(store).items():
        (store / name).write_text(text)
    shutil.copy(podman.tarball, store)
    (store / "xdg").mkdir(mode=0o700)
    for path in [base, *base.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    env = dict(_podman_env(store), XDG_RUNTIME_DIR=f"{store}/xdg", XDG_DATA_HOME=f"{store}/data")  # not in ~
    imported = subprocess.run(["ssh", "-F", sshd_server["SSH_CONFIG"], sshd_server["SSH_HOST_ALIAS"], shlex.join(
        ["env", *(f"{k}={v}" for k, v in env.items()), "podman", "import", str(store / podman.tarball.name),
         podman.image])], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    yield base, env
    # Podman's clean-up of a container may run after the task ended; rootless podman leaves a
    # pause process holding its user namespace.  Wait for the one, stop the other.
    deadline = time.monotonic() + 10
    while any(name != "catatonit" for name in _using(store).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in _using(store):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base)


def _using(store: Path) -> dict[int, str]:
    """pid -> name of the processes whose podman configuration is in `store` (started by the test)."""
    found = {}
    setting = f"CONTAINERS_CONF={store}/containers.conf".encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and setting in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "comm").read_text().strip()
        except OSError:
            pass  # ended meanwhile
    return found


def test_a_remote_task_runs_in_rootless_podman_on_the_ssh_host(podman, remote_podman, sshd_server, tmp_path):
    base, podman_env = remote_podman
    data = tmp_path / "input.txt"
    data.write_text("a line from outside the instance\n")
    write_module(tmp_path, "remote_podman", REMOTE_PIPELINE.format(
        image=podman.image, podman_env=podman_env, data=str(data)))
    env = dict({k: v for k, v in sshd_server.items() if k.startswith("SSH")},
               DRYPIPE_TEST_REMOTE_BASE=str(base), DRYPIPE_SERVICE_SLEEP_SCHEDULE="0,0.3,0.6,1")
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "remote_podman:gen", "-i", str(instance), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    remote_instance = base / "i"
    seen = (instance / "output/inside/seen.txt").read_text()  # fetched back from the ssh host
    assert seen == (f"ID=drypipe-test-image\nMARKER={podman.marker}\na line from outside the instance\n"
                    f"cwd={remote_instance}/output/inside\n")
    assert (instance / "output/outside/report.txt").read_text() == seen + Path("/etc/os-release").read_text()
    assert (remote_instance / "output/inside/seen.txt").stat().st_uid == pwd.getpwnam(sshd_server["SSH_USER"]).pw_uid


COMMAND_PIPELINE = '''
    from dry_pipe import DryPipe, TaskConf

    def gen(dsl):
        for key, image, runtime in {tasks!r}:
            yield dsl.task(key=key, task_conf=TaskConf(container_runtime=runtime))\\
                .inputs(data=dsl.file({data!r})).calls("true\\n", container=image)()

    def pipeline():
        return DryPipe.create_pipeline(gen, containers_dir={containers!r})
'''


def _prepare(tmp_path: Path, tasks: list[tuple], env: dict | None = None):
    data = tmp_path / "data.txt"
    data.write_text("x\n")
    containers = tmp_path / "images"
    write_module(tmp_path, "commands", COMMAND_PIPELINE.format(tasks=tasks, data=str(data), containers=str(containers)))
    instance = tmp_path / "i"
    result = drypipe("prepare", "-p", "commands:pipeline", "-i", str(instance), cwd=tmp_path, env=env)
    return result, instance, data, containers


def test_the_command_lines_of_apptainer_singularity_and_docker(tmp_path):
    """These runtimes cannot run here (apptainer has no Debian package; no docker daemon), so
    their generated command lines are checked word for word."""
    result, instance, data, containers = _prepare(tmp_path, [
        ("app", "tools.sif", "apptainer"), ("sing", "/abs/tools.sif", "singularity"),
        ("lib", "docker://debian:12", "apptainer"), ("dock", "debian:12", "docker"),
        ("default", "tools.sif", None)])
    assert result.returncode == 0, result.stderr
    env = dict(os.environ, PATH=_path_without(tmp_path, RUNTIME_NAMES))  # as where none is installed

    def binds(flag: str, form: str, scratch: tuple = ()) -> list[str]:
        """The instance, a scratch dir outside it, the code dir and the input outside the instance."""
        return [word for path in (instance, *scratch, tmp_path, data) for word in (flag, form.format(path))]

    def apptainer(runtime: str, key: str, image: str, scratch: tuple = ()) -> list[str]:
        return [runtime, "exec", "--pwd", f"{instance}/output/{key}", "--env", "__inside_container=1",
                *binds("--bind", "{}", scratch), image, "bash", f"{instance}/.drypipe/{key}/task", "--step-only", "0"]

    assert _command(instance, "app", env=env) == apptainer("apptainer", "app", f"{containers}/tools.sif")
    assert _command(instance, "sing", env=env) == apptainer("singularity", "sing", "/abs/tools.sif")
    assert _command(instance, "lib", env=env) == apptainer("apptainer", "lib", "docker://debian:12")
    assert _command(instance, "default", env=env) == apptainer("apptainer", "default", f"{containers}/tools.sif")
    assert _command(instance, "dock", env=env) == [
        "docker", "run", "--rm", "--network", "host", "--workdir", f"{instance}/output/dock",
        "--env", "__inside_container=1", *binds("--volume", "{0}:{0}"), "--user", f"{os.getuid()}:{os.getgid()}",
        "debian:12", "bash", f"{instance}/.drypipe/dock/task", "--step-only", "0"]
    # A scratch dir outside the instance (Slurm's $SLURM_TMPDIR) is bound, and its variable passed.
    scratch = tmp_path / "node-local"
    scratch.mkdir()
    slurm_env = dict(env, SLURM_TMPDIR=str(scratch))
    assert _command(instance, "app", env=slurm_env) == apptainer("apptainer", "app", f"{containers}/tools.sif",
                                                                 scratch=(scratch,))
    assert "--env SLURM_TMPDIR" in " ".join(_command(instance, "dock", env=slurm_env))


def test_the_runtime_of_the_run_comes_from_DRYPIPE_CONTAINER_RUNTIME(tmp_path):
    result, instance, _, _ = _prepare(tmp_path, [("t", "debian:12", None), ("own", "x.sif", "apptainer")],
                                      env={"DRYPIPE_CONTAINER_RUNTIME": "podman"})
    assert result.returncode == 0, result.stderr
    assert _command(instance, "t")[1:3] == ["run", "--rm"]  # podman's command line
    assert _command(instance, "own")[1] == "exec"  # a TaskConf's own choice comes first


@pytest.mark.parametrize("conf_runtime, env, culprit", [
    ("dockr", {}, "TaskConf.container_runtime 'dockr'"),
    (None, {"DRYPIPE_CONTAINER_RUNTIME": "rkt"}, "$DRYPIPE_CONTAINER_RUNTIME 'rkt'"),
])
def test_an_unknown_runtime_is_refused_before_anything_is_written(tmp_path, conf_runtime, env, culprit):
    result, instance, _, _ = _prepare(tmp_path, [("bad", "img", conf_runtime)], env=env)
    assert result.returncode == 1
    assert result.stderr == (f"drypipe: error: task 'bad' ({tmp_path}/commands.py:6): {culprit} is not a container "
                             "runtime drypipe knows (one of: apptainer, singularity, podman, docker)\n")
    assert not (instance / ".drypipe/bad").exists()


def _path_without(tmp_path: Path, names: list[str]) -> str:
    """A PATH with every command of this one but `names` (links in one directory)."""
    bin_dir = tmp_path / "bin-without-runtimes"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for entry in (os.scandir(directory) if os.path.isdir(directory) else ()):
            link = bin_dir / entry.name
            if entry.name not in names and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(bin_dir)


def test_a_runtime_that_is_not_installed_fails_the_task_saying_so(tmp_path):
    write_module(tmp_path, "missing", '''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="t", task_conf=TaskConf(container="debian:12", container_runtime="podman"))\\
                .calls("echo ran\\n")()
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "missing:gen", "-i", str(instance), cwd=tmp_path,
                     env={"PATH": _path_without(tmp_path, RUNTIME_NAMES)})
    assert result.returncode == 1
    assert state_of(instance, "t") == "failed.0"
    line = "drypipe: task t: step 0 needs container debian:12 but podman is not installed (container runtime: podman)"
    assert (instance / ".drypipe/t/out.log").read_text().splitlines() == [
        line, "drypipe: task t: step 0 failed with exit code 127"]
    assert line in result.stderr


@pytest.mark.parametrize("runtime", ["podman", "apptainer"])
def test_an_image_name_that_looks_like_an_option_is_never_passed_to_the_runtime(tmp_path, runtime):
    result, instance, _, _ = _prepare(tmp_path, [("opt", "--privileged", runtime)])
    assert result.returncode == 0, result.stderr
    refused = "drypipe: task opt: step 0: container image '--privileged' starts with '-': refused"
    shown = subprocess.run(["bash", str(instance / ".drypipe/opt/task"), "container-command", "0"],
                           capture_output=True, text=True)
    assert (shown.returncode, shown.stdout, shown.stderr) == (2, "", refused + "\n")
    run = drypipe("run", "-p", "commands:pipeline", "-i", str(instance), cwd=tmp_path)
    assert run.returncode == 1 and state_of(instance, "opt") == "failed.0"
    assert (instance / ".drypipe/opt/out.log").read_text().splitlines()[0] == refused
