"""SQLite state of the self-hosted service: one table per collection of the hosted service.

Each record is a JSON document; the columns beside it exist only for lookups.  Every
request runs in one transaction, and writes take the database lock up front
(`BEGIN IMMEDIATE`), so check-then-update sequences such as claiming a job are atomic.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, api_key_hash TEXT UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (service_name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS service_apps (
    service_name TEXT NOT NULL, app_name TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (service_name, app_name));
CREATE TABLE IF NOT EXISTS compute_clients (
    compute_client_id TEXT PRIMARY KEY, private_key_hash TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, service_name TEXT, user_id TEXT, batch_id TEXT, app_name TEXT,
    processor_name TEXT, status TEXT, is_runnable INTEGER, compute_client_id TEXT,
    definition_hash TEXT, created REAL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_hash ON jobs (service_name, definition_hash, created);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, is_runnable);
CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (compute_client_id, status);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch_id);
CREATE TABLE IF NOT EXISTS job_dependencies (
    job_id TEXT NOT NULL, depends_on TEXT NOT NULL, PRIMARY KEY (job_id, depends_on));
CREATE INDEX IF NOT EXISTS job_dependencies_up ON job_dependencies (depends_on);
CREATE TABLE IF NOT EXISTS deleted_jobs (job_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""

# findJobs filters that map to indexed columns; the others are applied to the documents.
_JOB_COLUMNS = {
    "jobId": "job_id", "serviceName": "service_name", "userId": "user_id", "batchId": "batch_id",
    "appName": "app_name", "processorName": "processor_name", "status": "status",
    "computeClientId": "compute_client_id",
}
JOB_FILTER_COLUMNS = frozenset(_JOB_COLUMNS)


def key_digest(secret: str) -> str:
    """Keys are stored as digests, so a copy of the database does not leak credentials."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Db:
    """Queries on one connection inside one transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self.conn.execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

    # users
    def user_by_key(self, api_key: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM users WHERE api_key_hash = ?", key_digest(api_key))

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM users WHERE user_id = ?", user_id)

    def put_user(self, user: dict[str, Any], api_key: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)",
                          (user["userId"], key_digest(api_key), json.dumps(user)))

    # services and apps
    def service(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM services WHERE service_name = ?", name)

    def services(self) -> list[dict[str, Any]]:
        return self._all("SELECT doc FROM services ORDER BY service_name")

    def put_service(self, service: dict[str, Any]) -> None:
        self.conn.execute("INSERT OR REPLACE INTO services VALUES (?, ?)",
                          (service["serviceName"], json.dumps(service)))

    def app(self, service_name: str, app_name: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM service_apps WHERE service_name = ? AND app_name = ?",
                         service_name, app_name)

    def apps(self, service_name: str) -> list[dict[str, Any]]:
        return self._all("SELECT doc FROM service_apps WHERE service_name = ? ORDER BY app_name", service_name)

    def put_app(self, app: dict[str, Any]) -> None:
        self.conn.execute("INSERT OR REPLACE INTO service_apps VALUES (?, ?, ?)",
                          (app["serviceName"], app["appName"], json.dumps(app)))

    # compute clients
    def compute_client(self, client_id: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM compute_clients WHERE compute_client_id = ?", client_id)

    def compute_client_key_matches(self, client_id: str, private_key: str) -> bool:
        row = self.conn.execute("SELECT private_key_hash FROM compute_clients WHERE compute_client_id = ?",
                                (client_id,)).fetchone()
        return bool(row) and row[0] == key_digest(private_key)

    def compute_clients(self) -> list[dict[str, Any]]:
        return self._all("SELECT doc FROM compute_clients ORDER BY compute_client_id")

    def put_compute_client(self, client: dict[str, Any], private_key: str | None = None) -> None:
        if private_key is None:
            self.conn.execute("UPDATE compute_clients SET doc = ? WHERE compute_client_id = ?",
                              (json.dumps(client), client["computeClientId"]))
        else:
            self.conn.execute("INSERT OR REPLACE INTO compute_clients VALUES (?, ?, ?)",
                              (client["computeClientId"], key_digest(private_key), json.dumps(client)))

    # jobs
    def job(self, job_id: str) -> dict[str, Any] | None:
        return self._one("SELECT doc FROM jobs WHERE job_id = ?", job_id)

    def put_job(self, job: dict[str, Any]) -> None:
        d = job["jobDefinition"]
        self.conn.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job["jobId"], job["serviceName"], job["userId"], job["batchId"], d["appName"], d["processorName"],
             job["status"], int(job["isRunnable"]), job["computeClientId"], job["jobDefinitionHash"],
             job["timestampCreatedSec"], json.dumps(job)))

    def add_dependencies(self, job_id: str, upstream_ids: list[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO job_dependencies VALUES (?, ?)",
                              [(job_id, up) for up in upstream_ids])

    def pending_dependents(self, job_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT j.doc FROM job_dependencies d JOIN jobs j ON j.job_id = d.job_id "
            "WHERE d.depends_on = ? AND j.status = 'pending'", job_id)

    def latest_job_with_hash(self, service_name: str, definition_hash: str) -> dict[str, Any] | None:
        return self._one(
            "SELECT doc FROM jobs WHERE service_name = ? AND definition_hash = ? "
            "ORDER BY created DESC, rowid DESC LIMIT 1", service_name, definition_hash)

    def delete_job(self, job: dict[str, Any]) -> None:
        """Move a job to `deleted_jobs`, as the hosted service does."""
        self.conn.execute("DELETE FROM jobs WHERE job_id = ?", (job["jobId"],))
        self.conn.execute("INSERT OR REPLACE INTO deleted_jobs VALUES (?, ?)", (job["jobId"], json.dumps(job)))

    def find_jobs(self, filters: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
        """Jobs matching the column filters, newest first."""
        where = [f"{_JOB_COLUMNS[k]} = ?" for k in filters]
        sql = "SELECT doc FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._all(sql, *filters.values())

    def runnable_jobs(self, service_name: str) -> list[dict[str, Any]]:
        return self._all("SELECT doc FROM jobs WHERE service_name = ? AND status = 'pending' AND is_runnable = 1 "
                         "ORDER BY created DESC, rowid DESC", service_name)

    def active_jobs_of_client(self, client_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT doc FROM jobs WHERE compute_client_id = ? AND status IN ('starting', 'running') "
                         "ORDER BY created", client_id)


class Store:
    """Opens one connection per thread to `<data_dir>/dendro.sqlite`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Db]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Db(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
