"""Back-office worker processes for the tests and the benchmark (never shipped).

Each :class:`WorkerProcess` is the shipped command, ``python -m sync.backoffice --config FILE``, with
a configuration file written the way an operator would (:func:`write_config`): the test PKI's
``backoffice`` certificate, a shared-subscription group, the database (SQLite file or PostgreSQL with
``sslmode=verify-full``), a web port on 127.0.0.1 that :meth:`WorkerProcess.wait_ready` polls
(``/api/worker``, logged in as the ``probe`` viewer account it adds to the database first: every
page and API of the back office needs a session). :meth:`WorkerProcess.kill` is a SIGKILL (a crash),
:meth:`WorkerProcess.stop` a SIGTERM (a clean stop: the current batch is committed and acknowledged).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.backoffice.broker import free_port
from sandbox.backoffice.pki import Pki

REPO = Path(__file__).resolve().parents[2]
PROBE, PROBE_PASSWORD = "probe", "sandbox probe, never shipped"


def write_signing_key(path: Path, key: Ed25519PrivateKey | None = None) -> Path:
    """An Ed25519 private key (PEM, mode 0600) for ``[commands] signing_key``."""
    key = key or Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_config(
    path: Path,
    *,
    pki: Pki,
    broker_port: int,
    signing_key: Path,
    database: dict[str, Any],
    name: str,
    group: str | None = "backoffice",
    http_port: int | None = None,
    hold_grace: float | None = None,
) -> Path:
    """The TOML of one worker (``database``: the ``[database]`` table's keys)."""
    issued = pki.client("backoffice")
    mqtt: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": broker_port,
        "ca": str(pki.ca.cert),
        "cert": str(issued.cert),
        "key": str(issued.key),
        "client_id": name,
    }
    if group is not None:
        mqtt["group"] = group
    if hold_grace is not None:
        mqtt["hold_grace"] = hold_grace
    tables: dict[str, dict[str, Any]] = {
        "mqtt": mqtt,
        "database": {"application_name": name, **database} if database.get("engine") == "postgresql" else database,
        "commands": {"signing_key": str(signing_key)},
        "rollouts": {"interval": 0},
    }
    if http_port is not None:
        tables["http"] = {"port": http_port}
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def postgres_table(conninfo: str) -> dict[str, Any]:
    """``[database]`` keys for a cluster's connection string (``host=… port=… dbname=…``)."""
    params = dict(item.split("=", 1) for item in conninfo.split())
    table: dict[str, Any] = {
        "engine": "postgresql",
        "host": params["host"],
        "port": int(params["port"]),
        "dbname": params["dbname"],
        "user": params["user"],
        "sslmode": params.get("sslmode", "verify-full"),
    }
    if "sslrootcert" in params:
        table["ca"] = params["sslrootcert"]
    return table


class WorkerProcess:
    """One ``python -m sync.backoffice`` process."""

    def __init__(self, config: Path, http_port: int, log: Path) -> None:
        self.config = config
        self.http_port = http_port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._cookie: str | None = None

    @classmethod
    def make(
        cls,
        directory: Path,
        name: str,
        *,
        pki: Pki,
        broker_port: int,
        signing_key: Path,
        database: dict[str, Any],
        group: str | None = "backoffice",
        hold_grace: float | None = None,
    ) -> WorkerProcess:
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = write_config(
            directory / f"{name}.toml",
            pki=pki,
            broker_port=broker_port,
            signing_key=signing_key,
            database=database,
            name=name,
            group=group,
            http_port=port,
            hold_grace=hold_grace,
        )
        return cls(config, port, directory / f"{name}.log")

    def _add_probe(self) -> None:
        """The viewer account :meth:`info` logs in with (once per database)."""
        from sync.backoffice.accounts import AccountError, Accounts
        from sync.backoffice.config import load_config
        from sync.backoffice.store import BackOfficeStore

        store = BackOfficeStore(load_config(self.config).db)
        try:
            Accounts(store).add(PROBE, "viewer", PROBE_PASSWORD)
        except AccountError:
            pass  # another worker of the same database added it
        finally:
            store.close()

    def _login(self) -> str | None:
        form = urllib.parse.urlencode({"name": PROBE, "password": PROBE_PASSWORD}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/login", data=form, method="POST")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(request, timeout=1)
        except urllib.error.HTTPError as answer:  # the 303 to the page, with the cookie
            cookie = answer.headers.get("Set-Cookie") or ""
            return cookie.split(";", 1)[0] or None
        return None

    def start(self) -> WorkerProcess:
        self._add_probe()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                [sys.executable, "-m", "sync.backoffice", "--config", str(self.config)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def info(self) -> dict[str, Any] | None:
        """``/api/worker``, or None while it does not answer."""
        try:
            self._cookie = self._cookie or self._login()
            request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/api/worker")
            if self._cookie:
                request.add_header("Cookie", self._cookie)
            with urllib.request.urlopen(request, timeout=1) as answer:  # noqa: S310 - http on 127.0.0.1
                body: dict[str, Any] = json.loads(answer.read())
                return body
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until it answers and the broker granted its subscriptions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited ({self.process.returncode}): {self.tail()}")
            info = self.info()
            if info is not None and info.get("subscribed"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready within {timeout} s: {self.tail()}")

    def tail(self, size: int = 2000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, whatever it was doing is left half done."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
