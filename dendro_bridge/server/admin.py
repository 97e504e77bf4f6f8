"""Administration of a self-hosted service, working on its database directly.

The hosted service does this through GitHub-authenticated web pages; here whoever can
write the data directory is the administrator.  Keys are printed once and stored hashed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dendro_bridge.appspec import normalize_spec
from dendro_bridge.model import is_safe_segment
from dendro_bridge.server.jobs import random_id
from dendro_bridge.server.slots import DEFAULT_SLOT, check_slot
from dendro_bridge.server.store import Store

RIGHTS = ("admin", "createJobs", "processJobs")


class AdminError(ValueError):
    """A refused administrative change."""


class Admin:
    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(data_dir / "dendro.sqlite")

    def create_user(self, user_id: str, name: str = "", email: str = "") -> str:
        """Create a user, or give an existing one a new API key; returns the key."""
        if not user_id or any(c.isspace() for c in user_id):
            raise AdminError(f"invalid user id: {user_id!r}")
        api_key = random_id(32)
        with self.store.transaction(write=True) as db:
            user = db.user(user_id) or {"userId": user_id, "name": name, "email": email,
                                        "timestampCreatedSec": time.time()}
            db.put_user(user, api_key)
        return api_key

    def create_service(self, service_name: str, owner: str, users: dict[str, list[str]] | None = None) -> None:
        """`users` maps a user id to the rights it gets (see RIGHTS)."""
        if not is_safe_segment(service_name):
            raise AdminError(f"invalid service name: {service_name!r}")
        entries = []
        for user_id, rights in (users or {}).items():
            unknown = set(rights) - set(RIGHTS)
            if unknown:
                raise AdminError(f"unknown right {sorted(unknown)[0]!r}; use {', '.join(RIGHTS)}")
            entries.append({"userId": user_id, **{r: r in rights for r in RIGHTS}})
        with self.store.transaction(write=True) as db:
            for user_id in [owner, *(users or {})]:
                if db.user(user_id) is None:
                    raise AdminError(f"no user {user_id}")
            db.put_service({"serviceName": service_name, "userId": owner, "users": entries})

    def add_app(self, service_name: str, spec: dict[str, Any], spec_uri: str = "") -> str:
        """Register (or replace) an app on a service; returns the app name."""
        spec = normalize_spec(spec)
        with self.store.transaction(write=True) as db:
            if db.service(service_name) is None:
                raise AdminError(f"no service {service_name}")
            db.put_app({"serviceName": service_name, "appName": spec["name"], "appSpecificationUri": spec_uri,
                        "appSpecificationCommit": "", "appSpecification": spec})
        name: str = spec["name"]
        return name

    def create_compute_client(self, service_names: list[str], user_id: str, name: str,
                              slots: list[dict[str, Any]] | None = None) -> tuple[str, str]:
        """Register a compute client; returns (computeClientId, computeClientPrivateKey)."""
        client_id, private_key = random_id(20), random_id(32)
        try:
            compute_slots = [check_slot(s) for s in slots] if slots else [dict(DEFAULT_SLOT)]
        except ValueError as e:
            raise AdminError(str(e)) from e
        with self.store.transaction(write=True) as db:
            if db.user(user_id) is None:
                raise AdminError(f"no user {user_id}")
            for service_name in service_names:
                if db.service(service_name) is None:
                    raise AdminError(f"no service {service_name}")
            db.put_compute_client({
                "computeClientId": client_id, "computeClientName": name, "userId": user_id,
                "serviceNames": service_names, "description": "", "computeSlots": compute_slots,
                "processJobsForUsers": None}, private_key)
        return client_id, private_key
