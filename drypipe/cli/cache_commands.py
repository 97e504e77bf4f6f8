"""`drypipe why` (what changed since a task ran) and `drypipe cache ls|info|gc`."""
from __future__ import annotations

import datetime
import difflib
import json
import time
from typing import Any

import click

from drypipe import plugins
from drypipe import signature as sig
from drypipe import state as st
from drypipe.cache import open_cache
from drypipe.cli import cli
from drypipe.cli.options import (
    TaskSelection,
    generator_option,
    instance_dir_option,
    legacy_key_argument,
    open_instance,
    task_selection_options,
)
from drypipe.digests import DigestCache
from drypipe.display import executor_of
from drypipe.dry_run import RUNNING, STAYS_FAILED, WOULD_WAIT, Plan, Prediction, failed_hint, plan
from drypipe.dsl import evaluate, load_pipeline
from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions
from drypipe.scheduler import is_stale as scheduler_is_stale
from drypipe.task_record import TaskRecord
from drypipe.task_script import task_conf_document


def current_signer(instance: Instance, generator: str) -> sig.Signer:
    """Signatures of the tasks the generator yields now, against the instance's current state."""
    pipeline = load_pipeline(generator)
    states = {k: st.read_state(str(instance.control_dir(k))) for k in instance.task_keys()}
    evaluation = evaluate(pipeline, str(instance.root), lambda k: states.get(k) == st.COMPLETED)
    signer = sig.Signer(str(instance.root), DigestCache(instance.drypipe_dir / ".digests.json"))
    for task in evaluation.tasks.values():
        signer.add(task_conf_document(task, task.task_conf.resolved_python_bin(),
                                      pipeline.pipeline_code_dir, pipeline.containers_dir))
    return signer


def is_stale(instance: Instance, signer: sig.Signer, key: str, state: str | None) -> bool:
    """A completed task whose recorded signature differs from the one it would have now."""
    if state != st.COMPLETED or key not in signer.docs:
        return False
    recorded = TaskRecord(instance.root, key).signature_record()
    return scheduler_is_stale(state, recorded, signer.signature(key), RunOptions())


def explain(instance: Instance, signer: sig.Signer, key: str, indent: str = "") -> list[str]:
    """Lines saying why `key` is stale, following changed upstreams to the root cause: a diff
    of changed code, the file or value of a changed input."""
    task_record = TaskRecord(instance.root, key)
    record = task_record.signature_record() or {}
    changes = sig.differences(record.get("ingredients", {}), signer.parts(key))
    lines = []
    for name, before, now in changes:
        upstreams = signer.docs[key].get("upstream_keys", [])
        upstream = next((u for u in upstreams if now and f" of {u} " in f"{now} "), None)
        if upstream:
            lines.append(f"{indent}{name}: upstream task {upstream} changed")
            lines.extend(explain(instance, signer, upstream, indent + "  "))
        elif name.startswith("step ") and name[5:].isdigit() and before and now:
            lines.extend(_code_change(task_record, record, signer.docs[key], name, before, now, indent))
        elif name.startswith("input ") and now and now.startswith("file content "):
            spec = next(s for s in signer.docs[key]["inputs"] if s["name"] == name[6:])
            lines.append(f"{indent}{name}: file {spec['path']} changed (content {_digest(before)} -> {_digest(now)})")
        else:
            lines.append(f"{indent}{name}: was {before or '(absent)'}, now {now or '(absent)'}")
    return lines


def _digest(ingredient: str | None) -> str:
    return ingredient.split()[-1][:12] if ingredient else "(absent)"


def _code_change(task_record: TaskRecord, record: dict[str, Any], doc: dict[str, Any], name: str, before: str, now: str,
                 indent: str) -> list[str]:
    """`step N: <what> changed:` and a unified diff of its code, old text from the signature
    record (or, for a bash snippet, the task-conf.json the completed task ran with)."""
    index = int(name[5:])
    what = now.rsplit(" ", 1)[0]  # "bash snippet", "script x.sh", "python mod:func"
    old = (record.get("code") or {}).get(name)
    if old is None and before.startswith("bash snippet "):
        try:
            old = task_record.conf_document()["steps"][index].get("code")
        except (UserError, KeyError, IndexError, TypeError, AttributeError):
            old = None
    new = sig.step_text(doc, index)
    if old is None or new is None:
        return [f"{indent}{name}: {what} changed (was {before}, now {now}; the old code was not recorded)"]
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{name}, as {task_record.key} ran it",
                                f"{name}, now", lineterm="")
    return [f"{indent}{name}: {what} changed:", *(f"{indent}  {line}" for line in diff)]


@cli.command()
@instance_dir_option
@generator_option
@task_selection_options
@legacy_key_argument
def why(instance_dir: str, generator: str, selection: TaskSelection) -> None:
    """Say whether the tasks (-k) would rerun, and exactly which ingredient changed."""
    instance = open_instance(instance_dir)
    predicted = plan(load_pipeline(generator), instance, RunOptions())
    signer = predicted.signer
    for key in selection.exact_keys():
        if key not in signer.docs:
            raise UserError(f"the generator does not yield task {key!r} (now)")
    keys = selection.match(signer.docs)
    if not keys:
        raise UserError(f"the generator yields no task that matches {selection.describe()} (now)")
    shown = 0
    for key in keys:
        state = st.read_state(str(instance.control_dir(key)))
        wanted = selection.state
        if wanted is None or (is_stale(instance, signer, key, state) if wanted == "stale"
                              else st.matches(state, wanted)):
            _why(instance, predicted, key)
            shown += 1
    if not shown:
        click.echo(f"no task is {selection.state}")


def _why(instance: Instance, predicted: Plan, task_key: str) -> None:
    signer = predicted.signer
    task_record = TaskRecord(instance.root, task_key)
    state = task_record.state()
    record = task_record.signature_record()
    cached = (task_record.cached_from() or "").split() or None
    if state != st.COMPLETED:
        what = _what_run_does(instance, predicted.predictions[task_key])
        click.echo(f"{task_key} is {state or 'not generated yet'}: {what}")
    elif record is None:
        click.echo(f"{task_key} is completed; no signature was recorded (it will be adopted as is)")
    elif record["signature"] == signer.signature(task_key):
        origin = f" (restored from cache {cached[0]})" if cached else _backend_origin(task_record)
        click.echo(f"{task_key} is up to date{origin}: signature {record['signature'][:12]}")
    else:
        click.echo(f"{task_key} is stale and will rerun:")
        for line in explain(instance, signer, task_key, "  "):
            click.echo(line)


def _what_run_does(instance: Instance, prediction: Prediction) -> str:
    """What `drypipe run` will do to a task that has not completed, as `run --dry-run` predicts it."""
    action, detail = prediction.action, prediction.detail
    if action == WOULD_WAIT:
        return f"it waits {detail}"
    if action == STAYS_FAILED:
        return f"it does not run again by itself: {failed_hint(instance, prediction.key)}"
    if action == RUNNING:
        return "it is running; `drypipe run` watches it until it ends"
    return f"{action.replace('would', 'it will')}" + (f" {detail}" if detail else "")


def _backend_origin(record: TaskRecord) -> str:
    """Where the task's executor says its results came from (a backend's own cache), if it knows."""
    found = plugins.plugins().get(executor_of(record.conf_document()["task_conf"]))
    origin = found.origin(record) if found is not None and found.origin is not None else None
    return f" ({origin})" if origin else ""


@cli.group()
def cache() -> None:
    """Inspect and prune a shared output cache (--cache URL of `drypipe run`)."""


cache_url_argument = click.argument("url", envvar="DRYPIPE_CACHE")


@cache.command("ls")
@cache_url_argument
def cache_ls(url: str) -> None:
    """List the entries: signature, status, task key, size, age."""
    entries = open_cache(url).entries()
    for m in sorted(entries, key=lambda m: m["created"]):
        age = datetime.timedelta(seconds=int(time.time() - m["created"]))
        click.echo(f"{m['signature'][:16]}  {m['status']:9}  {m['size']:>12}  {age}  {m['task_key']}")
    click.echo(f"{len(entries)} entries, {sum(m['size'] for m in entries)} bytes")


@cache.command("info")
@cache_url_argument
@click.argument("signature")
def cache_info(url: str, signature: str) -> None:
    """Show one entry's manifest (a signature prefix is enough)."""
    matches = [m for m in open_cache(url).entries() if m["signature"].startswith(signature)]
    if len(matches) != 1:
        raise UserError(f"{len(matches)} cache entries match {signature!r}")
    click.echo(json.dumps(matches[0], indent=1))


@cache.command("gc")
@cache_url_argument
@click.option("--older-than", type=float, metavar="DAYS", help="Delete entries older than DAYS.")
@click.option("--failed", is_flag=True, help="Delete entries of failed tasks.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def cache_gc(url: str, older_than: float | None, failed: bool, dry_run: bool) -> None:
    """Delete interrupted publications (older than an hour), and optionally old or failed entries."""
    store = open_cache(url)
    now = time.time()
    # Signatures come from the entries' directory names (entries() and incomplete() check them);
    # store.delete computes the path from the root: nothing a manifest says is ever deleted.
    doomed = [m["signature"] for m in store.entries()
              if (failed and m["status"] == "failed")
              or (older_than is not None and now - m["created"] > older_than * 86400)]
    partial = store.incomplete()
    for signature in doomed:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {signature}")
        if not dry_run:
            store.delete(signature)
    for signature in partial:
        modified = store.modified(signature)
        if modified is not None and now - modified < 3600:
            continue  # maybe still being written
        click.echo(f"{'would delete' if dry_run else 'deleted'} incomplete {signature}")
        if not dry_run:
            store.delete(signature)
