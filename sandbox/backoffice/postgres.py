"""A throw-away PostgreSQL cluster on 127.0.0.1 for the tests and the benchmark (never shipped).

Debian's ``postgresql`` package (``make test`` installs it) puts ``initdb`` and ``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``. PostgreSQL refuses to run as root, so as root the cluster is
made and run as the ``postgres`` account (``runuser -u postgres --``), in a directory of its own under
the system's temporary directory (pytest's are private to root); as anyone else, as that user.

With a :class:`~sandbox.backoffice.pki.Pki` the server speaks TLS only (``hostssl`` in
``pg_hba.conf``, certificate for 127.0.0.1 from the test CA) and :meth:`PostgresCluster.conninfo`
says ``sslmode=verify-full``: the tests connect the way the shipped configuration does. The tests'
cluster runs with ``fsync=off`` (nothing here survives a power cut anyway); the benchmark's keeps
PostgreSQL's defaults (``fsync``, ``synchronous_commit``), as a server would.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sandbox.backoffice.broker import free_port, wait_port
from sandbox.backoffice.pki import Pki

SUPERUSER = "comptoir"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or would not start here (the message says why)."""


def bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` (or ``initdb`` on the PATH)."""
    found = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        match = re.fullmatch(r"\d+", candidate.parent.parent.name)
        if match:
            found.append((int(candidate.parent.parent.name), candidate.parent))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable("PostgreSQL is not installed (no initdb): apt-get install postgresql")


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; :meth:`stop` removes it all."""

    def __init__(self, *, pki: Pki | None = None, fsync: bool = False, port: int | None = None) -> None:
        self.pki = pki
        self.fsync = fsync
        self.port = port or free_port()
        self.bin = bindir()
        self.directory = Path(tempfile.mkdtemp(prefix="comptoir-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as: list[str] = []
        self._started = False
        self._databases = 0
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                self._remove()
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' account to run the server as"
                ) from None
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
            self._uid, self._gid = account.pw_uid, account.pw_gid
        else:
            self._uid, self._gid = os.getuid(), os.getgid()

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
            [*self._as, *args], cwd=self.directory, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, timeout: float = 30.0) -> PostgresCluster:
        done = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode != 0:
            self._remove()
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.directory}'",
            f"fsync = {'on' if self.fsync else 'off'}",
            "max_connections = 60",
            "log_min_messages = warning",
        ]
        hba = ["local all all trust"]
        if self.pki is not None:
            server = self.pki.server("postgres")
            for source, name in ((server.cert, "server.crt"), (server.key, "server.key")):
                target = self.data / name
                shutil.copyfile(source, target)
                os.chown(target, self._uid, self._gid)
                target.chmod(0o600)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            hba += ["hostssl all all 127.0.0.1/32 trust", "hostnossl all all 127.0.0.1/32 reject"]
        else:
            hba += ["host all all 127.0.0.1/32 trust"]
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# comptoir test cluster\n" + "\n".join(conf) + "\n")
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n", encoding="utf-8")
        started = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start"
        )
        if started.returncode != 0 or not wait_port(self.port, up=True, timeout=timeout):
            tail = self.tail_log()
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {tail}")
        self._started = True
        return self

    def tail_log(self, size: int = 2000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def conninfo(self, dbname: str = "postgres", **extra: str) -> str:
        """How to reach ``dbname`` over TCP (TLS verified when the cluster has a PKI)."""
        parts = [f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"]
        if self.pki is not None:
            parts.append(f"sslmode=verify-full sslrootcert={self.pki.ca.cert}")
        else:
            parts.append("sslmode=disable")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its connection string."""
        import psycopg

        self._databases += 1
        name = name or f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (immediate if it does not), then remove the directory."""
        if self._started:
            self._started = False
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop")
            if done.returncode != 0:
                self._kill_postmaster()
        self._remove()

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)
            time.sleep(0.5)

    def _remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
