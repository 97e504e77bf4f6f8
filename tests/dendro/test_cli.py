"""The `dendro` command group: admin commands, spec files, and clear one-line errors."""
import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from dendro_bridge.appspec import AppSpecError, load_spec
from dendro_bridge.cli import dendro
from tests.dendro.conftest import HELLO_APP, REPO, subprocess_env


def invoke(*args: str):
    return CliRunner().invoke(dendro, list(args), catch_exceptions=False)


def test_admin_commands_set_up_a_service(tmp_path):
    data = str(tmp_path / "data")
    result = invoke("admin", "--data-dir", data, "create-user", "alice")
    assert result.exit_code == 0 and len(result.output.strip()) == 32
    assert invoke("admin", "--data-dir", data, "create-user", "bob").exit_code == 0
    result = invoke("admin", "--data-dir", data, "create-service", "svc", "--owner", "alice",
                    "--user", "bob:createJobs,processJobs")
    assert result.exit_code == 0, result.output
    assert invoke("admin", "--data-dir", data, "add-app", "--service", "svc", str(HELLO_APP)).exit_code == 0
    creds = tmp_path / "cc.yaml"
    result = invoke("admin", "--data-dir", data, "create-compute-client", "--service", "svc", "--user", "alice",
                    "--slot", "numCpus=8,memoryGb=16.5,multiplicity=2", "--output", str(creds))
    assert result.exit_code == 0, result.output
    # The keys `dendro start-compute-client` reads.
    assert set(yaml.safe_load(creds.read_text())) == {"compute_client_id", "compute_client_private_key",
                                                       "compute_client_name"}


@pytest.mark.parametrize("args, message", [
    (["create-service", "svc", "--owner", "nobody"], "no user nobody"),
    (["create-service", "../svc", "--owner", "nobody"], "invalid service name"),
    (["create-compute-client", "--service", "missing", "--user", "alice"], "no service missing"),
    (["create-compute-client", "--service", "svc", "--user", "alice", "--slot", "cpus=1"], "compute slot"),
])
def test_admin_errors_are_one_line(tmp_path, args, message):
    data = str(tmp_path / "data")
    invoke("admin", "--data-dir", data, "create-user", "alice")
    invoke("admin", "--data-dir", data, "create-service", "svc", "--owner", "alice")
    result = CliRunner().invoke(dendro, ["admin", "--data-dir", data, *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_compute_resource_without_credentials_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPUTE_CLIENT_ID", raising=False)
    result = CliRunner().invoke(dendro, ["start-compute-resource", "--app", str(HELLO_APP)])
    assert result.exit_code == 1 and "no compute client credentials" in result.output


@pytest.mark.parametrize("spec, message", [
    ({"name": "a", "processors": []}, "non-empty list of processors"),
    ({"name": "a/b", "processors": [{"name": "p", "command": "x"}]}, "invalid app name"),
    ({"name": "a", "processors": [{"name": "p"}]}, "needs a command"),
    ({"name": "a", "processors": [{"name": "p", "command": "x", "protocol": "docker"}]}, "protocol"),
    ({"name": "a", "processors": [{"name": "p", "command": "x", "outputs": [{"name": "../o"}]}]}, "output name"),
    ({"name": "a", "processors": [{"name": "p", "command": "x", "inputs": [{"name": "i", "kind": 1}]}]},
     "unknown key"),
])
def test_bad_spec_files_are_refused(tmp_path, spec, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(AppSpecError, match=message):
        load_spec(path)


def test_spec_command_strings_and_app_defaults(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: a\ncommand: run --fast\nprotocol: dendro-sdk\n"
                    "processors:\n  - name: p\n  - name: q\n    command: [other]\n    protocol: files\n")
    p, q = load_spec(path)["processors"]
    assert (p["command"], p["protocol"], q["command"], q["protocol"]) == \
        (["run", "--fast"], "dendro-sdk", ["other"], "files")


def test_core_does_not_import_drypipe_and_runs_as_a_module():
    code = ("import sys, dendro_bridge, dendro_bridge.server, dendro_bridge.compute, dendro_bridge.cli; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('drypipe', 'dry_pipe', 'executors')]")
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env(), cwd=REPO)
    out = subprocess.run([sys.executable, "-m", "dendro_bridge", "--help"], check=True, env=subprocess_env(),
                         capture_output=True, text=True).stdout
    assert "start-compute-resource" in out and "serve" in out and "admin" in out
