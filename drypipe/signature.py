"""Task signatures: SHA-256 over everything that determines a task's
outputs: its code, literal inputs, the content of input files no task produced, the
signatures of its upstream tasks, its declared outputs and its container.  Paths of the
instance and of the code are not part of it, so moving either makes nothing stale."""
from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from drypipe.digests import DigestCache


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def ingredients(
    doc: dict[str, Any],
    instance_dir: str,
    digests: DigestCache,
    upstream_signature: Callable[[str], str],
) -> dict[str, str]:
    """The named parts of a task's signature; `why` compares them one by one."""
    parts: dict[str, str] = {}
    for i, step in enumerate(doc["steps"]):
        kind = step["kind"]
        if kind == "bash":
            parts[f"step {i}"] = f"bash snippet {_sha(step['code'])}"
        elif kind == "script":
            path = os.path.join(doc["pipeline_code_dir"], step["path"])
            parts[f"step {i}"] = f"script {step['path']} {digests.digest(path)}"
        else:
            parts[f"step {i}"] = f"python {step['module']}:{step['function']} {step.get('source_sha256')}"
        if step.get("container"):
            parts[f"step {i} container"] = step["container"]
    for spec in doc["inputs"]:
        name = spec["name"]
        kind = spec["kind"]
        if kind == "value":
            value = f"{spec['type']} {spec['value']}"
        elif kind == "var":
            value = f"variable {spec['output']} of {spec['upstream']} {upstream_signature(spec['upstream'])}"
        elif kind == "glob":
            sigs = " ".join(f"{k}={upstream_signature(k)}" for k in spec["upstreams"])
            value = f"glob {spec['pattern']} of {sigs}"
        elif spec.get("upstream"):
            value = f"file {spec['path']} of {spec['upstream']} {upstream_signature(spec['upstream'])}"
        else:
            path = spec["path"] if os.path.isabs(spec["path"]) else os.path.join(instance_dir, spec["path"])
            value = f"file content {digests.digest(path) or 'missing'}"
        parts[f"input {name}"] = value
    for spec in doc["outputs"]:
        parts[f"output {spec['name']}"] = f"{spec['kind']} {spec.get('type') or spec.get('path') or spec.get('glob')}"
    return parts


def step_text(doc: dict[str, Any], index: int) -> str | None:
    """The code of step `index` as it is now: the bash snippet, the script's text, or the
    python call's source (None when it cannot be read)."""
    step = doc["steps"][index]
    try:
        if step["kind"] == "bash":
            code: str = step["code"]
            return code
        if step["kind"] == "script":
            with open(os.path.join(doc["pipeline_code_dir"], step["path"]), encoding="utf-8", errors="replace") as f:
                return f.read()
        if step.get("file"):
            return _function_source(step["file"], step["function"])
    except OSError:
        pass
    return None


def _function_source(path: str, name: str) -> str | None:
    """A module-level function's source, decorators included (as inspect.getsource has it)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "".join(text.splitlines(keepends=True)[start - 1:node.end_lineno])
    return None


def signature_of(parts: dict[str, str]) -> str:
    return _sha(json.dumps(parts, sort_keys=True))


Change = tuple[str, str | None, str | None]  # (ingredient, before, now)


def differences(old: dict[str, str], new: dict[str, str]) -> list[Change]:
    """(ingredient, before, now) for each ingredient that changed, appeared or disappeared."""
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


class Signer:
    """Computes (and memoizes) the signatures of the tasks of one generator evaluation."""

    def __init__(self, instance_dir: str, digests: DigestCache):
        self.instance_dir = instance_dir
        self.digests = digests
        self.docs: dict[str, dict[str, Any]] = {}
        self._parts: dict[str, dict[str, str]] = {}
        self._signatures: dict[str, str] = {}
        self._texts: dict[tuple[str | None, ...], str | None] = {}

    def add(self, doc: dict[str, Any]) -> None:
        key = doc["key"]
        if self.docs.get(key) != doc:  # a definition that changed (compared only when a key comes again)
            self._parts.pop(key, None)
            self._signatures.pop(key, None)
        self.docs[key] = doc

    def parts(self, key: str) -> dict[str, str]:
        if key not in self._parts:
            self._parts[key] = ingredients(self.docs[key], self.instance_dir, self.digests, self.signature)
        return self._parts[key]

    def signature(self, key: str) -> str:
        if key not in self._signatures:
            self._signatures[key] = signature_of(self.parts(key))
        return self._signatures[key]

    def record(self, key: str) -> dict[str, Any]:
        """The signature record; `code` keeps each step's text, so that `drypipe why` can show
        what changed once the code on disk has moved on."""
        doc = self.docs[key]
        code = {f"step {i}": text for i in range(len(doc["steps"])) if (text := self._step_text(doc, i)) is not None}
        return {"signature": self.signature(key), "ingredients": self.parts(key), "code": code}

    def _step_text(self, doc: dict[str, Any], index: int) -> str | None:
        step = doc["steps"][index]
        if step["kind"] == "bash":
            code: str = step["code"]
            return code
        where = (step.get("path"), step.get("file"), step.get("function"))  # shared by a fan-out's tasks
        if where not in self._texts:
            self._texts[where] = step_text(doc, index)
        return self._texts[where]
