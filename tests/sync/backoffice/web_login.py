"""Logging a test's HTTP client into the back office's page (accounts made in its store)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from sync.backoffice.accounts import Accounts
from sync.backoffice.service import BackOffice

PASSWORD = "correct horse battery"


@contextmanager
def signed_in(office: BackOffice, name: str = "alice", role: str = "operator") -> Iterator[httpx.Client]:
    """An httpx client on the office's page, logged in as a new account ``name`` with ``role``; its
    POSTs carry the session's CSRF token."""
    Accounts(office.store).add(name, role, PASSWORD)
    with httpx.Client(base_url=office.url, timeout=5) as http:
        assert http.post("/login", data={"name": name, "password": PASSWORD}).status_code == 303
        http.headers["X-CSRF-Token"] = http.get("/api/session").json()["csrf"]
        yield http
