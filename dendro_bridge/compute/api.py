"""The calls a compute client makes: find runnable jobs, claim them, report status, move files."""
from __future__ import annotations

import os
from typing import Any

from dendro_bridge.api import ApiTransport, DendroApiError


class ComputeApi:
    def __init__(self, base_url: str | None, client_id: str, private_key: str,
                 input_url_prefixes: tuple[str, ...] = ()):
        self.transport = ApiTransport(base_url)
        self.client_id, self.private_key = client_id, private_key
        # Non-HTTP input URLs (file://, s3:// ...) are read only under these prefixes: a job
        # must not make the compute resource read (and upload) any file it can read.
        self.input_url_prefixes = tuple(input_url_prefixes)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def clone(self) -> ComputeApi:
        """A separate connection pool for use by another thread."""
        return ComputeApi(self.base_url, self.client_id, self.private_key, self.input_url_prefixes)

    def runnable_jobs(self, app_names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(runnable jobs that fit our free slots, our jobs that are starting or running)."""
        resp = self.transport.post("getRunnableJobsForComputeClient",
                                   {"computeClientId": self.client_id, "appNames": app_names},
                                   token=self.private_key)
        return resp["runnableJobs"], resp["runningJobs"]

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.transport.post("getJob", {"jobId": job_id, "includePrivateKey": False}).get("job")

    def claim(self, job: dict[str, Any]) -> bool:
        """Set the job to 'starting'; False if another compute client claimed it first."""
        try:
            self.set_status(job, "starting")
        except DendroApiError as e:
            if e.status in (400, 409):  # the service answers 400 to a claim of a job no longer pending
                return False
            raise
        return True

    def set_status(self, job: dict[str, Any], status: str, error: str | None = None) -> None:
        body = {"jobId": job["jobId"], "computeClientId": self.client_id, "status": status}
        if error is not None:
            body["error"] = error
        self.transport.post("setJobStatus", body, token=job["jobPrivateKey"])

    def upload(self, job: dict[str, Any], path: str, upload_type: str, output_name: str | None = None) -> None:
        body: dict[str, Any] = {"jobId": job["jobId"], "uploadType": upload_type, "size": os.path.getsize(path)}
        if output_name is not None:
            body["outputName"] = output_name
        resp = self.transport.post("getSignedUploadUrl", body, token=job["jobPrivateKey"])
        self.transport.put_file(resp["signedUrl"], path)

    def download(self, job: dict[str, Any], url: str, path: str) -> None:
        """Download an input, through a signed URL when it lives on this service."""
        if not url.startswith(("http://", "https://")):
            copy_allowed_url(url, path, self.input_url_prefixes)
            return
        resp = self.transport.post("getSignedDownloadUrl", {"jobId": job["jobId"], "url": url},
                                   token=job["jobPrivateKey"])
        self.transport.download(resp["signedUrl"], path)


def _local_path(url: str) -> str:
    """The resolved local path of a file:// URL (no `..`, no symlink escapes)."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    return os.path.realpath(url2pathname(urlparse(url).path))


def url_is_under(url: str, prefix: str) -> bool:
    if url.startswith("file://") != prefix.startswith("file://"):
        return False
    if url.startswith("file://"):
        root = _local_path(prefix)
        return os.path.commonpath([root, _local_path(url)]) == root
    return url.startswith(prefix.rstrip("/") + "/") and ".." not in url.split("/")


def copy_allowed_url(url: str, path: str, prefixes: tuple[str, ...]) -> None:
    """Copy an input from a non-HTTP URL (any fsspec URL) if it is under an allowed prefix
    (`start-compute-resource --allow-input-url`)."""
    if not any(url_is_under(url, prefix) for prefix in prefixes):
        raise RuntimeError(f"input URL {url} is not under an allowed input URL prefix "
                           "(start-compute-resource --allow-input-url PREFIX)")
    import fsspec

    source = _local_path(url) if url.startswith("file://") else url
    with fsspec.open(source, "rb") as src, open(path, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
