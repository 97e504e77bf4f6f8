"""App specifications: loading spec files and checking job definitions against them.

A spec file (YAML or JSON) has the shape of Dendro's `spec.json` (`name`, `description`,
`processors` with `inputs`, `outputs`, `parameters`, `attributes`), plus two keys per
processor for running it without containers:

- `command`: argv list (or a string split like a shell would) run in the job's working
  directory.  `{python}` (the compute resource's interpreter), `{app_dir}` (the spec file's
  folder), `{inputs[NAME]}`, `{outputs[NAME]}` (local paths), `{parameters[NAME]}` (strings
  as they are, other values as JSON) and `{job_file}` (all of these as JSON) are substituted;
  double the braces of literal ones.  `dendro-sdk` commands get only `{python}` and
  `{app_dir}`.  Default: `[executable]`.
- `protocol`: `files` (default; the compute resource downloads inputs, runs the command
  and uploads outputs) or `dendro-sdk` (the executable is a `dendro.sdk` app that talks to
  the service itself, given the env vars JOB_ID, JOB_PRIVATE_KEY, DENDRO_API_URL ...).
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from dendro_bridge.model import ValidationError, is_safe_segment

PROTOCOLS = ("files", "dendro-sdk")


class AppSpecError(ValueError):
    """A spec file that cannot be used."""


def _named_list(proc: str, kind: str, items: Any, extra: set[str]) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise AppSpecError(f"processor {proc}: {kind} must be a list")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise AppSpecError(f"processor {proc}: every entry of {kind} needs a name")
        unknown = set(item) - {"name", "description"} - extra
        if unknown:
            raise AppSpecError(f"processor {proc}: unknown key in {kind}: {sorted(unknown)[0]}")
        if item["name"] in seen:
            raise AppSpecError(f"processor {proc}: duplicate {kind} name {item['name']!r}")
        seen.add(item["name"])
        out.append({"description": "", **item})
    return out


def normalize_processor(proc: dict[str, Any]) -> dict[str, Any]:
    name = proc.get("name")
    if not is_safe_segment(name):
        raise AppSpecError(f"invalid processor name: {name!r}")
    command = proc.get("command", [proc["executable"]] if proc.get("executable") else None)
    if isinstance(command, str):
        command = shlex.split(command)
    if not command or not all(isinstance(c, str) for c in command):
        raise AppSpecError(f"processor {name}: needs a command (argv list) or an executable")
    protocol = proc.get("protocol", "files")
    if protocol not in PROTOCOLS:
        raise AppSpecError(f"processor {name}: protocol must be one of {', '.join(PROTOCOLS)}")
    outputs = _named_list(name, "outputs", proc.get("outputs", []), {"urlDeterminedAtRuntime"})
    for out in outputs:
        if not is_safe_segment(out["name"]):
            raise AppSpecError(f"processor {name}: invalid output name {out['name']!r}")
    attributes = proc.get("attributes", [])
    if isinstance(attributes, dict):  # the SDK's class attribute is a dict; spec.json has a list
        attributes = [{"name": k, "value": v} for k, v in attributes.items()]
    return {
        "name": name,
        "description": proc.get("description", ""),
        "label": proc.get("label", name),
        "image": proc.get("image", ""),
        "executable": proc.get("executable", command[0]),
        "command": command,
        "protocol": protocol,
        "inputs": _named_list(name, "inputs", proc.get("inputs", []), {"list"}),
        "outputs": outputs,
        "parameters": _named_list(name, "parameters", proc.get("parameters", []),
                                  {"type", "defaultValue", "options", "secret"}),
        "attributes": attributes,
    }


def normalize_spec(spec: Any) -> dict[str, Any]:
    """Validate a spec and fill defaults; the result is what the service stores."""
    if not isinstance(spec, dict):
        raise AppSpecError("an app spec must be a mapping")
    if not is_safe_segment(spec.get("name")):
        raise AppSpecError(f"invalid app name: {spec.get('name')!r}")
    processors = spec.get("processors")
    if not isinstance(processors, list) or not processors:
        raise AppSpecError(f"app {spec['name']}: needs a non-empty list of processors")
    # App-level `command` and `protocol` apply to processors that do not set their own.
    defaults = {k: spec[k] for k in ("command", "protocol") if k in spec}
    normalized = [normalize_processor({**defaults, **p}) for p in processors if isinstance(p, dict)]
    if len(normalized) != len(processors) or len({p["name"] for p in normalized}) != len(normalized):
        raise AppSpecError(f"app {spec['name']}: processors must be mappings with distinct names")
    return {"name": spec["name"], "description": spec.get("description", ""), "processors": normalized}


def load_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise AppSpecError(f"cannot read app spec {path}: {e}") from e
    return normalize_spec(data)


def find_processor(spec: dict[str, Any], processor_name: str) -> dict[str, Any] | None:
    return next((p for p in spec["processors"] if p["name"] == processor_name), None)


def check_definition(processor: dict[str, Any], definition: dict[str, Any]) -> None:
    """The hosted service's rule: every spec input, output and parameter is present (except
    parameters with a default) and nothing else is.  Like the service, a parameter may be
    given twice; two input files or two output files of one name are refused here, since
    they would share a local path or a storage URL."""
    for kind, spec_key in (("inputFiles", "inputs"), ("outputFiles", "outputs"), ("parameters", "parameters")):
        given = [item["name"] for item in definition[kind]]
        if kind != "parameters" and len(set(given)) != len(given):
            raise ValidationError(f"duplicate name in {kind}")
        declared = {item["name"]: item for item in processor[spec_key]}
        for name in given:
            if name not in declared:
                raise ValidationError(f"processor {processor['name']} has no {spec_key[:-1]} named {name!r}")
        for name, item in declared.items():
            if name not in given and not (kind == "parameters" and "defaultValue" in item):
                raise ValidationError(f"missing {spec_key[:-1]} {name!r} for processor {processor['name']}")
