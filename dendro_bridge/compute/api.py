"""The calls a compute client makes: find runnable jobs, claim them, report status, move files."""
from __future__ import annotations

import os
from typing import Any

from dendro_bridge.api import ApiTransport, DendroApiError


class ComputeApi:
    def __init__(self, base_url: str | None, client_id: str, private_key: str):
        self.transport = ApiTransport(base_url)
        self.client_id, self.private_key = client_id, private_key

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def clone(self) -> "ComputeApi":
        """A separate connection pool for use by another thread."""
        return ComputeApi(self.base_url, self.client_id, self.private_key)

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
            if e.status == 409:
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
        resp = self.transport.post("getSignedDownloadUrl", {"jobId": job["jobId"], "url": url},
                                   token=job["jobPrivateKey"])
        self.transport.download(resp["signedUrl"], path)
