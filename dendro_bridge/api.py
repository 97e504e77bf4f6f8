"""HTTP transport for the Dendro API: `POST {base}/api/<name>` with typed JSON bodies."""
from __future__ import annotations

import os
import re
import time
from typing import Any

import requests

DEFAULT_API_URL = "https://dendro.vercel.app"
# Waits between retries of a request that failed for a transient reason.
_RETRY_WAITS_SEC = (0.5, 1.0, 2.0)
_TRANSIENT_STATUS = {502, 503, 504}
# The signature parameter of a signed URL (ours, S3's X-Amz-Signature ...), absolute or not.
_SIGNATURE = re.compile(r"([?&][\w.-]*signature=)[A-Za-z0-9%+/=_.~-]*", re.IGNORECASE)


def redact_signed_urls(text: str) -> str:
    """`text` with the signatures of signed URLs removed: a signed URL is a credential,
    and error texts end up in job records and logs that anyone may read."""
    return _SIGNATURE.sub(r"\1<removed>", text)


class DendroApiError(RuntimeError):
    """The service refused a request (non-200) or could not be reached."""

    def __init__(self, endpoint: str, status: int | None, message: str):
        super().__init__(f"{endpoint}: {message}" + (f" (HTTP {status})" if status else ""))
        self.endpoint, self.status, self.message = endpoint, status, message


def resolve_api_url(base_url: str | None = None) -> str:
    """Argument, then `DENDRO_API_URL` (or pairio's `PAIRIO_API_URL`), then the hosted service."""
    return (base_url or env_setting("API_URL") or DEFAULT_API_URL).rstrip("/")


def env_setting(name: str) -> str | None:
    """`DENDRO_<name>`, falling back to pairio's `PAIRIO_<name>`."""
    return os.environ.get(f"DENDRO_{name}") or os.environ.get(f"PAIRIO_{name}") or None


class ApiTransport:
    """Sends one endpoint call; retries only connection failures and gateway errors."""

    def __init__(self, base_url: str | None = None, *, timeout_sec: float = 60.0):
        self.base_url = resolve_api_url(base_url)
        self.timeout_sec = timeout_sec
        self._session = requests.Session()

    def post(self, endpoint: str, body: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
        payload = {"type": f"{endpoint}Request", **body}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{self.base_url}/api/{endpoint}"
        waits = list(_RETRY_WAITS_SEC)
        while True:
            try:
                resp = self._session.post(url, json=payload, headers=headers, timeout=self.timeout_sec)
            except requests.ConnectionError as e:
                if not waits:
                    raise DendroApiError(endpoint, None, f"cannot reach {self.base_url}: {e}") from e
            except requests.RequestException as e:  # e.g. a read timeout: the request may have been applied
                raise DendroApiError(endpoint, None, str(e)) from e
            else:
                if resp.status_code not in _TRANSIENT_STATUS or not waits:
                    return self._decode(endpoint, resp)
            time.sleep(waits.pop(0))

    @staticmethod
    def _decode(endpoint: str, resp: requests.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200:
            message = data.get("error") if isinstance(data, dict) else None
            raise DendroApiError(endpoint, resp.status_code, message or resp.text[:200] or resp.reason)
        expected = f"{endpoint}Response"
        if not isinstance(data, dict) or data.get("type") != expected:
            raise DendroApiError(endpoint, resp.status_code, f"expected a {expected}")
        return data

    def put_file(self, signed_url: str, path: str) -> None:
        """Upload a file to a signed URL (the service answers 200 on success)."""
        try:
            with open(path, "rb") as f:
                resp = self._session.put(signed_url, data=f, timeout=self.timeout_sec)
        except requests.RequestException as e:  # its text quotes the signed URL
            raise DendroApiError("upload", None, redact_signed_urls(str(e))) from None
        if resp.status_code != 200:
            raise DendroApiError("upload", resp.status_code, redact_signed_urls(resp.text[:200] or resp.reason))

    def download(self, url: str, path: str) -> None:
        try:
            with self._session.get(url, stream=True, timeout=self.timeout_sec) as resp:
                if resp.status_code != 200:
                    raise DendroApiError("download", resp.status_code,
                                         redact_signed_urls(f"{url}: {resp.text[:200] or resp.reason}"))
                with open(path, "wb") as f:
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
        except requests.RequestException as e:  # its text quotes the signed URL
            raise DendroApiError("download", None, redact_signed_urls(str(e))) from None
