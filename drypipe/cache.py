"""A shared output cache on any fsspec store (a local directory, s3://bucket/prefix ...).

Layout, content-addressed by task signature:
    <url>/<sig[:2]>/<sig>/files/<path relative to the task's output dir>
    <url>/<sig[:2]>/<sig>/manifest.json    written last: an entry exists once it exists
The manifest lists each file with its SHA-256, so a corrupt or partial entry is detected
and ignored.  Entries are written once; only a failed entry may be replaced by a success
(with --rerun-failing), as in Dendro's job cache.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from drypipe.digests import file_sha256
from drypipe.errors import UserError

log = logging.getLogger("drypipe")

MANIFEST = "manifest.json"


@dataclass
class CachePolicy:
    skip_cache: bool = False  # never read the cache (still publish)
    rerun_failing: bool = False  # a cached failure is run again instead of reused
    delete_failing: bool = False  # ... and its cache entry is deleted


def open_cache(url: str) -> "OutputCache":
    storage_options: dict[str, Any] = {}
    if url.startswith("s3://") and os.environ.get("DRYPIPE_CACHE_S3_ENDPOINT"):
        storage_options["client_kwargs"] = {"endpoint_url": os.environ["DRYPIPE_CACHE_S3_ENDPOINT"]}
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as e:
        raise UserError(f"--cache {url}: {e}") from e
    return OutputCache(fs, root.rstrip("/"), url)


class OutputCache:
    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str):
        self.fs = fs
        self.root = root
        self.url = url

    def _entry(self, signature: str) -> str:
        return f"{self.root}/{signature[:2]}/{signature}"

    def manifest(self, signature: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(f"{self._entry(signature)}/{MANIFEST}"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("cache %s: unreadable manifest for %s, ignored", self.url, signature)
            return None

    def restore(self, signature: str, manifest: dict[str, Any], output_dir: Path) -> bool:
        """Copy a completed entry's files into output_dir; False (nothing kept) if any digest differs."""
        entry = self._entry(signature)
        staging = output_dir.parent / f".{output_dir.name}.cache-{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir(parents=True)
        try:
            for rel, digest in manifest["files"].items():
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{entry}/files/{rel}", str(target))
                if file_sha256(target) != digest:
                    log.warning("cache %s: entry %s is corrupt (%s: digest mismatch), ignored", self.url, signature, rel)
                    return False
            output_dir.mkdir(parents=True, exist_ok=True)
            for rel in manifest["files"]:
                final = output_dir / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, final)
            return True
        except (OSError, KeyError) as e:
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
        """Every complete entry's manifest (with its size in bytes)."""
        found = []
        for manifest_path in self.fs.glob(f"{self.root}/*/*/{MANIFEST}"):
            signature = manifest_path.rsplit("/", 2)[-2]
            manifest = self.manifest(signature)
            if manifest is not None:
                manifest["size"] = sum(self.fs.size(f"{self._entry(signature)}/files/{r}") for r in manifest["files"])
                found.append(manifest)
        return found

    def incomplete(self) -> list[str]:
        """Entry directories without a manifest (an interrupted publication)."""
        return [
            d for d in self.fs.glob(f"{self.root}/*/*")
            if self.fs.isdir(d) and not self.fs.exists(f"{d}/{MANIFEST}")
        ]


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
