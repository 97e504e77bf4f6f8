"""`dendro` command group: serve the service, administer it, run a compute resource.

Mounted by drypipe as `drypipe dendro ...`; also `python -m dendro_bridge ...`.
"""
from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from dendro_bridge.appspec import AppSpecError, load_spec

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="DENDRO_DATA_DIR",
                         default="dendro-data", show_default=True, help="Service state (database, signing key).")
COMPUTE_CLIENT_FILE = "dendro-compute-client.yaml"
# The keys `dendro start-compute-client` reads from COMPUTE_CLIENT_FILE.
_CREDENTIAL_KEYS = ("compute_client_id", "compute_client_private_key", "compute_client_name")


@click.group("dendro")
def dendro() -> None:
    """Self-hosted Dendro service and compute resource."""


@dendro.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@_DATA_DIR
@click.option("--storage-url", default=None, help="fsspec URL for objects [default: DATA_DIR/objects].")
@click.option("--public-url", default=None,
              help="Base URL clients use [default: http://HOST:PORT]. Job output URLs embed it.")
@click.option("--url-ttl-sec", type=float, default=3600.0, show_default=True,
              help="Lifetime of signed upload/download URLs.")
@click.option("--private-downloads", is_flag=True, help="Require signed URLs for downloads too.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def serve(host: str, port: int, data_dir: Path, storage_url: str | None, public_url: str | None,
          url_ttl_sec: float, private_downloads: bool, verbose: bool) -> None:
    """Run the Dendro service."""
    from dendro_bridge.server import make_dendro_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if verbose:
        _log_requests()
    else:
        logging.getLogger("waitress").setLevel(logging.WARNING)
    try:
        server = make_dendro_server(host, port, data_dir, storage_url=storage_url, public_url=public_url,
                                    url_ttl_sec=url_ttl_sec, public_downloads=not private_downloads)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}") from e
    click.echo(f"Dendro service listening on {server.public_url}", nl=True)
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()


def _log_requests() -> None:
    """-v: one log line per request (waitress itself does not log requests)."""
    import flask

    log = logging.getLogger("dendro_bridge.requests")

    def _log(sender: Any, response: Any, **extra: Any) -> None:
        req = flask.request
        log.info('%s "%s %s %s" %s', req.remote_addr, req.method, req.path, req.environ.get("SERVER_PROTOCOL"),
                 response.status_code)
    flask.request_finished.connect(_log, weak=False)


@dendro.group()
@_DATA_DIR
@click.pass_context
def admin(ctx: click.Context, data_dir: Path) -> None:
    """Create users, services, apps and compute clients (works on DATA_DIR directly)."""
    ctx.obj = data_dir


def _pass_admin(fn: Callable[..., None]) -> Callable[..., None]:
    """Give the command an Admin of DATA_DIR, opened only when it runs (not for --help)."""
    @click.pass_obj
    @functools.wraps(fn)
    def with_admin(data_dir: Path, *args: Any, **kwargs: Any) -> None:
        from dendro_bridge.server import Admin

        fn(Admin(data_dir), *args, **kwargs)
    return with_admin


def _admin_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from dendro_bridge.server import AdminError

    try:
        return fn(*args, **kwargs)
    except (AdminError, AppSpecError) as e:
        raise click.ClickException(str(e)) from e


@admin.command("create-user")
@click.argument("user_id")
@click.option("--name", default="")
@click.option("--email", default="")
@_pass_admin
def create_user(adm: Any, user_id: str, name: str, email: str) -> None:
    """Create USER_ID (or reset its key) and print its API key."""
    click.echo(_admin_call(adm.create_user, user_id, name=name, email=email))


def _parse_user_rights(values: tuple[str, ...]) -> dict[str, list[str]]:
    users = {}
    for value in values:
        user_id, _, rights = value.partition(":")
        users[user_id] = [r for r in rights.split(",") if r] or ["createJobs"]
    return users


@admin.command("create-service")
@click.argument("service_name")
@click.option("--owner", required=True, help="User id of the owner (has every right).")
@click.option("--user", "users", multiple=True, metavar="USER[:RIGHT,...]",
              help="Another user and its rights among admin, createJobs, processJobs (default createJobs).")
@_pass_admin
def create_service(adm: Any, service_name: str, owner: str, users: tuple[str, ...]) -> None:
    """Create (or redefine) a service."""
    _admin_call(adm.create_service, service_name, owner, _parse_user_rights(users))
    click.echo(f"service {service_name} created")


@admin.command("add-app")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--service", "service_name", required=True)
@_pass_admin
def add_app(adm: Any, spec_file: str, service_name: str) -> None:
    """Register the app of SPEC_FILE (YAML or JSON) on a service."""
    spec = _admin_call(load_spec, spec_file)
    name = _admin_call(adm.add_app, service_name, spec, spec_uri=Path(spec_file).resolve().as_uri())
    click.echo(f"app {name} added to service {service_name}")


def _parse_slot(value: str) -> dict[str, float]:
    slot: dict[str, float] = {}
    for item in value.split(","):
        key, _, number = item.partition("=")
        try:
            slot[key.strip()] = int(number) if number.strip().isdigit() else float(number)
        except ValueError as e:
            raise click.BadParameter(f"expected KEY=NUMBER, got {item!r}") from e
    return slot


@admin.command("create-compute-client")
@click.option("--service", "services", multiple=True, required=True)
@click.option("--user", "user_id", required=True, help="User id that owns the client.")
@click.option("--name", default="compute-client", show_default=True)
@click.option("--slot", "slots", multiple=True, metavar="KEY=N,...",
              help="A compute slot, e.g. numCpus=8,memoryGb=32,multiplicity=2 (repeatable).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Write the credentials to this file (e.g. {COMPUTE_CLIENT_FILE}) instead of printing them.")
@_pass_admin
def create_compute_client(adm: Any, services: tuple[str, ...], user_id: str, name: str, slots: tuple[str, ...],
                          output: Path | None) -> None:
    """Register a compute client and print (or save) its id and private key."""
    client_id, key = _admin_call(adm.create_compute_client, list(services), user_id, name,
                                 [_parse_slot(s) for s in slots] or None)
    creds = dict(zip(_CREDENTIAL_KEYS, (client_id, key, name), strict=True))
    if output is None:
        click.echo(yaml.safe_dump(creds, sort_keys=False), nl=False)
    else:
        output.write_text(yaml.safe_dump(creds, sort_keys=False))
        output.chmod(0o600)
        click.echo(f"compute client {client_id} saved to {output}")


def _load_credentials(config: Path | None, client_id: str | None, private_key: str | None) -> tuple[str, str]:
    """Options/env vars win over the credentials file."""
    path = config or (Path(COMPUTE_CLIENT_FILE) if Path(COMPUTE_CLIENT_FILE).exists() else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise click.ClickException(f"cannot read {path}: {e}") from e
    # camelCase keys: files written by earlier versions of this command.
    client_id = client_id or data.get("compute_client_id") or data.get("computeClientId")
    private_key = private_key or data.get("compute_client_private_key") or data.get("computeClientPrivateKey")
    if not client_id or not private_key:
        raise click.ClickException(
            f"no compute client credentials: pass --config, set COMPUTE_CLIENT_ID and COMPUTE_CLIENT_PRIVATE_KEY, "
            f"or create {COMPUTE_CLIENT_FILE} with `dendro admin create-compute-client --output`")
    return client_id, private_key


@dendro.command("start-compute-resource")
@click.option("--app", "app_specs", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Spec file of an app this resource runs (repeatable).")
@click.option("--api-url", envvar="DENDRO_API_URL", default=None, help="Service URL [env DENDRO_API_URL].")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=f"Credentials file [default: ./{COMPUTE_CLIENT_FILE} if present].")
@click.option("--compute-client-id", envvar="COMPUTE_CLIENT_ID", default=None)
@click.option("--private-key", envvar="COMPUTE_CLIENT_PRIVATE_KEY", default=None)
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default="dendro-jobs",
              show_default=True, help="Parent of the jobs' working directories.")
@click.option("--poll-interval", type=float, envvar="DENDRO_COMPUTE_POLL_SEC", default=5.0, show_default=True)
@click.option("--exit-when-idle", is_flag=True, help="Exit when nothing is running and nothing is runnable.")
@click.option("--single-job", is_flag=True, help="Run at most one job, then exit.")
@click.option("--keep-work-dirs", is_flag=True, help="Keep each job's working directory after it ends.")
@click.option("--runner", default="subprocess", show_default=True, metavar="subprocess|drypipe:EXECUTOR",
              help="How processors run: local subprocesses, or one-task drypipe instances run by a drypipe "
                   "executor (drypipe:process, drypipe:slurm).")
@click.option("--slurm-account", default=None, help="Slurm account of --runner drypipe:slurm.")
@click.option("--sbatch-option", "sbatch_options", multiple=True, metavar="OPTION",
              help="Extra sbatch option of --runner drypipe:slurm (repeatable).")
@click.option("--allow-input-url", "input_url_prefixes", multiple=True, metavar="PREFIX",
              help="Also read inputs at non-HTTP URLs under PREFIX, e.g. file:///shared/inputs/ or "
                   "s3://bucket/inputs/ (repeatable; drypipe's DRYPIPE_DENDRO_STORE).")
def start_compute_resource(app_specs: tuple[str, ...], api_url: str | None, config: Path | None,
                           compute_client_id: str | None, private_key: str | None, work_dir: Path,
                           poll_interval: float, exit_when_idle: bool, single_job: bool,
                           keep_work_dirs: bool, runner: str, slurm_account: str | None,
                           sbatch_options: tuple[str, ...], input_url_prefixes: tuple[str, ...]) -> None:
    """Claim and run jobs of the given apps."""
    from dendro_bridge.compute import ComputeApi, ComputeResource, LocalApp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    client_id, key = _load_credentials(config, compute_client_id, private_key)
    processor_runner = _make_runner(runner, slurm_account, sbatch_options)
    apps = {}
    for spec_file in app_specs:
        try:
            spec = load_spec(spec_file)
        except AppSpecError as e:
            raise click.ClickException(str(e)) from e
        apps[spec["name"]] = LocalApp(spec=spec, app_dir=Path(spec_file).resolve().parent)
    resource = ComputeResource(api=ComputeApi(api_url, client_id, key, input_url_prefixes), apps=apps,
                               work_dir=work_dir.resolve(), runner=processor_runner,
                               poll_interval_sec=poll_interval, exit_when_idle=exit_when_idle,
                               single_job=single_job, keep_work_dirs=keep_work_dirs)
    click.echo(f"compute client {client_id} serving apps {', '.join(sorted(apps))} from {resource.api.base_url} "
               f"(runner {runner})")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop jobs on SIGTERM as on Ctrl-C
    try:
        resource.run()
    except KeyboardInterrupt:
        resource.shutdown()


def _make_runner(runner: str, slurm_account: str | None, sbatch_options: tuple[str, ...]) -> Any:
    from dendro_bridge.compute import SubprocessRunner

    if runner == "subprocess":
        return SubprocessRunner()
    kind, _, executor = runner.partition(":")
    if kind != "drypipe" or not executor:
        raise click.BadParameter(f"{runner!r}: expected subprocess or drypipe:EXECUTOR", param_hint="--runner")
    from dendro_bridge.compute.drypipe_runner import DrypipeRunner

    try:
        return DrypipeRunner(executor, slurm_account=slurm_account, sbatch_options=sbatch_options)
    except Exception as e:  # unknown executor (a drypipe UserError), dendro ...
        raise click.BadParameter(str(e), param_hint="--runner") from e
