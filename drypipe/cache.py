"""A shared output cache on any fsspec store (a local directory, s3://bucket/prefix ...).

Layout, content-addressed by task signature:
    <url>/<sig[:2]>/<sig>/files/<path relative to the task's output dir>
    <url>/<sig[:2]>/<sig>/manifest.json    written last: an entry exists once it exists
The manifest lists each file with its SHA-256, so a corrupt or partial entry is detected
and ignored.  Entries are written once; only a failed entry may be replaced by a success
(with --rerun-failing), as in Dendro's job cache.

Anyone who can write to the cache can write a manifest, so a manifest is untrusted input:
`check_manifest` holds it to what the task declares before anything of it is used, and only
paths computed here from the root and a checked signature are ever read or deleted.  A URL's
password is for opening the store only: everything shown or written uses `redact_url`.
"""
from __future__ import annotations

import datetime
import errno
import fnmatch
import json
import logging
import os
import posixpath
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from drypipe.digests import file_sha256
from drypipe.errors import UserError
from drypipe.keys import is_inside_relative_path
from drypipe.task import _check_variable_name

log = logging.getLogger("drypipe")

MANIFEST = "manifest.json"
# Errors writing into the instance while restoring: the run stops (the task would fail too).
_LOCAL_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
SIGNATURE = re.compile(r"[0-9a-f]{64}")  # a task signature: SHA-256 in hex
# `scheme://user:password@` (also in chained URLs): the authority ends at the first / ? #, at its last @
_PASSWORD = re.compile(r"(?<=://)([^/?#@:]*):([^/?#]*)@")


@dataclass
class CachePolicy:
    skip_cache: bool = False  # never read the cache (still publish)
    rerun_failing: bool = False  # a cached failure is run again instead of reused
    delete_failing: bool = False  # ... and its cache entry is deleted


def open_cache(url: str) -> OutputCache:
    storage_options: dict[str, Any] = {}
    if url.startswith("s3://") and os.environ.get("DRYPIPE_CACHE_S3_ENDPOINT"):
        storage_options["client_kwargs"] = {"endpoint_url": os.environ["DRYPIPE_CACHE_S3_ENDPOINT"]}
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError, OSError) as e:
        raise UserError(f"--cache {redact_url(url)}: {_redact_text(str(e), url)}") from e
    return OutputCache(fs, root.rstrip("/"), url)


def redact_url(url: str) -> str:
    """`url` with the password of each `user:password@` replaced by `***`: the form to show or write."""
    return _PASSWORD.sub(r"\1:***@", url)


def _redact_text(text: str, url: str) -> str:
    """`text` (say an error message) with the passwords of `url` replaced by `***`."""
    for password in (m.group(2) for m in _PASSWORD.finditer(url)):
        if password:
            text = text.replace(password, "***")
    return text


def check_manifest(manifest: dict[str, Any], outputs: list[dict[str, Any]]) -> str | None:
    """What is wrong with a manifest (as `OutputCache.manifest` returns it: its own entry's) for a
    task whose declared outputs are `outputs` (task-conf.json's), or None if the task may use it."""
    if manifest.get("status") not in ("completed", "failed"):
        return f"status {manifest.get('status')!r}"
    files, output_vars = manifest.get("files"), manifest.get("output_vars", {})
    if not isinstance(files, dict) or not isinstance(output_vars, dict):
        return "files or output_vars is not a JSON object"
    for rel, digest in files.items():
        if not is_inside_relative_path(rel):
            return f"file {rel!r} is not a relative path inside the task's output dir"
        if not any(_declares(spec, rel) for spec in outputs):
            return f"file {rel!r} is not a declared output"
        if not isinstance(digest, str):
            return f"file {rel!r} has no digest"
    declared_vars = {spec["name"] for spec in outputs if spec["kind"] == "var"}
    for name, value in output_vars.items():
        try:
            _check_variable_name("", "output", name)  # the DSL's rule
        except UserError:
            return f"output variable {name!r} is not a variable name"
        if name not in declared_vars:
            return f"output variable {name!r} is not a declared output"
        if not isinstance(value, str) or "\0" in value:
            return f"output variable {name!r} has a value that is not a string without NUL"
    return None


def _declares(spec: dict[str, Any], rel: str) -> bool:
    """Whether the output `spec` of a task declares its file `rel` (as the publisher's glob finds it)."""
    if spec["kind"] == "file":
        return bool(posixpath.normpath(spec["path"]) == rel)
    if spec["kind"] == "fileset":
        return _glob_matches(rel.split("/"), posixpath.normpath(spec["glob"]).split("/"))
    return False


def _glob_matches(parts: list[str], pattern: list[str]) -> bool:
    """pathlib's glob semantics: `*`, `?`, `[...]` within one component, `**` any components."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_matches(parts[1:], pattern[1:])


class OutputCache:
    """An opened cache.  `url` is for display: its password, if any, is redacted."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str):
        self.fs = fs
        self.root = root
        self.url = redact_url(url)

    def _entry(self, signature: str) -> str:
        """The directory of an entry: the only kind of path this class reads, writes or deletes."""
        if not SIGNATURE.fullmatch(signature):
            raise ValueError(f"not a task signature: {signature!r}")
        return f"{self.root}/{signature[:2]}/{signature}"

    def _listed(self, path: str) -> str | None:
        """The signature of an entry directory that a listing of the root returned, if it is one."""
        signature = path.rstrip("/").rsplit("/", 1)[-1]
        if SIGNATURE.fullmatch(signature) and path.rstrip("/") == self._entry(signature):
            return signature
        return None

    def manifest(self, signature: str, key: str | None = None) -> dict[str, Any] | None:
        """The manifest of entry `signature`, None (and a warning naming task `key`) if there is
        none, or it is unreadable, or it is not this entry's own."""
        ignored = f"ignored for task {key}" if key else "ignored"
        try:
            manifest = json.loads(self.fs.cat_file(f"{self._entry(signature)}/{MANIFEST}"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("cache %s: entry %s %s: unreadable manifest", self.url, signature, ignored)
            return None
        if not isinstance(manifest, dict) or manifest.get("signature") != signature:
            named = manifest.get("signature") if isinstance(manifest, dict) else None
            log.warning("cache %s: entry %s %s: its manifest names signature %r", self.url, signature, ignored, named)
            return None
        return manifest

    def usable_manifest(self, signature: str, key: str, outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The manifest of entry `signature` if task `key` (declaring `outputs`) may use it; one warning if not."""
        manifest = self.manifest(signature, key)
        problem = check_manifest(manifest, outputs) if manifest is not None else None
        if problem is not None:
            log.warning("cache %s: entry %s ignored for task %s: %s", self.url, signature, key, problem)
            return None
        return manifest

    def restore(self, signature: str, manifest: dict[str, Any], output_dir: Path) -> bool:
        """Copy a completed entry's files into output_dir; False (nothing kept) if any digest differs.
        `manifest` must have passed `check_manifest`."""
        entry = self._entry(signature)
        if not all(map(is_inside_relative_path, manifest["files"])):  # never write outside output_dir
            raise ValueError(f"cache entry {signature}: unchecked manifest")
        staging = output_dir.parent / f".{output_dir.name}.cache-{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir(parents=True)
        try:
            for rel, digest in manifest["files"].items():
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{entry}/files/{rel}", str(target))
                if file_sha256(target) != digest:
                    log.warning("cache %s: entry %s is corrupt (%s: digest mismatch), ignored",
                                self.url, signature, rel)
                    return False
            output_dir.mkdir(parents=True, exist_ok=True)
            for rel in manifest["files"]:
                final = output_dir / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, final)
            return True
        except OSError as e:
            if e.errno in _LOCAL_WRITE_ERRORS:  # the instance's disk, not the entry: running it would not help
                raise UserError(f"cannot restore cache entry {signature} into {output_dir}: {e.strerror}") from e
            log.warning("cache %s: entry %s unusable (%s), ignored", self.url, signature, e)
            return False
        except KeyError as e:
            log.warning("cache %s: entry %s unusable (%s), ignored", self.url, signature, e)
            return False
        finally:
            _remove_tree(staging)

    def publish(self, signature: str, key: str, status: str, output_vars: dict[str, str],
                files: dict[str, str], output_dir: Path) -> None:
        """Write an entry once: files first, the manifest last (atomically)."""
        entry = self._entry(signature)
        existing = self.manifest(signature)
        if existing is not None and not (existing.get("status") == "failed" and status == "completed"):
            return
        local = "file" in _protocols(self.fs)
        if local:  # temporary files of a publication that was cut short (one running now retries)
            for leftover in Path(entry).rglob(".*.tmp"):
                leftover.unlink(missing_ok=True)
        for rel in files:
            self.fs.makedirs(f"{entry}/files/{os.path.dirname(rel)}".rstrip("/"), exist_ok=True)
            target = f"{entry}/files/{rel}"
            if local:  # another instance may publish this entry at the same time: never show a partial file
                directory, name = target.rsplit("/", 1)
                tmp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
                self.fs.put_file(str(output_dir / rel), tmp)
                self.fs.mv(tmp, target)
            else:  # object stores replace whole objects atomically
                self.fs.put_file(str(output_dir / rel), target)
        manifest = {"signature": signature, "task_key": key, "status": status, "output_vars": output_vars,
                    "files": files, "created": time.time()}
        tmp = f"{entry}/.{MANIFEST}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(entry, exist_ok=True)
        self.fs.pipe_file(tmp, json.dumps(manifest, indent=1).encode())
        self.fs.mv(tmp, f"{entry}/{MANIFEST}")

    def delete(self, signature: str) -> None:
        self.fs.rm(self._entry(signature), recursive=True)

    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry's manifest (with its size in bytes), its `signature` its directory's name."""
        found = []
        for manifest_path in self.fs.glob(f"{self.root}/*/*/{MANIFEST}"):
            signature = self._listed(manifest_path.rsplit("/", 1)[0])
            manifest = self.manifest(signature) if signature else None
            if signature is None or manifest is None:
                continue
            if not (isinstance(manifest.get("files"), dict) and isinstance(manifest.get("task_key"), str)
                    and isinstance(manifest.get("status"), str) and isinstance(manifest.get("created"), (int, float))):
                log.warning("cache %s: entry %s: malformed manifest, ignored", self.url, signature)
                continue
            files = [r for r in manifest["files"] if is_inside_relative_path(r)]
            manifest["size"] = sum(self.fs.size(f"{self._entry(signature)}/files/{r}") for r in files)
            found.append(manifest)
        return found

    def incomplete(self) -> list[str]:
        """Signatures of entry directories without a manifest (an interrupted publication)."""
        listed = (self._listed(d) for d in self.fs.glob(f"{self.root}/*/*") if self.fs.isdir(d))
        return [s for s in listed if s and not self.fs.exists(f"{self._entry(s)}/{MANIFEST}")]

    def modified(self, signature: str) -> float | None:
        """When entry `signature`'s directory was last modified (a timestamp), if the store says."""
        if not hasattr(self.fs, "modified"):
            return None
        when: datetime.datetime = self.fs.modified(self._entry(signature))
        return when.timestamp()


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
