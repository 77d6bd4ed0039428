"""``comptoir backoffice``'s configuration file (TOML; ``sync/backoffice/backoffice.toml.example``).

Every table and key is checked: an unknown one is an error naming the table, the key and the keys
known there (a typo must not pass silently), and so is a wrong type. TLS is verified by default: the
broker against the fleet CA (mutual TLS, the worker's certificate with common name ``backoffice``);
PostgreSQL with ``sslmode = "verify-full"`` (the server's certificate and host name checked against
``ca``). A weaker ``sslmode`` must be written out, and ``disable`` is accepted only for a server on
the loopback or a Unix socket. Relative paths are relative to the file's directory.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sync.backoffice.service import BackOfficeSettings, default_client_id

CONFIG_ENV = "COMPTOIR_BACKOFFICE_CONFIG"
DEFAULT_CONFIG = Path("/etc/comptoir-backoffice/backoffice.toml")
DEFAULT_SQLITE = Path("/var/lib/comptoir-backoffice/backoffice.db")
"""The embedded engine's file when ``[database]`` says nothing (the unit's ``StateDirectory``)."""

KNOWN: dict[str, set[str]] = {
    "mqtt": {"host", "port", "ca", "cert", "key", "client_id", "group", "keepalive", "hold_grace"},
    "database": {
        "engine",
        "path",
        "host",
        "port",
        "dbname",
        "user",
        "password_file",
        "sslmode",
        "ca",
        "cert",
        "key",
        "application_name",
        "connect_timeout",
    },
    "commands": {"signing_key"},
    "http": {"port", "reports", "secure_cookies"},
    "rollouts": {"interval"},
}
SSLMODES = ("verify-full", "verify-ca", "disable")


class ConfigError(Exception):
    """The back office's configuration is missing something or is malformed (the message says what)."""


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    values: Mapping[str, Any]
    base: Path

    def _get(self, key: str, kinds: tuple[type, ...], what: str, default: Any) -> Any:
        value = self.values.get(key, default)
        if value is None:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"[{self.name}] {key} must be {what}")
        return value

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(key, (str,), "a string", default)
        if required and not value:
            raise ConfigError(f"[{self.name}] {key} is required")
        return str(value) if value is not None else None

    def integer(self, key: str, default: int | None = None) -> int | None:
        value = self._get(key, (int,), "an integer", default)
        return None if value is None else int(value)

    def number(self, key: str, default: float | None = None) -> float | None:
        value = self._get(key, (int, float), "a number", default)
        return None if value is None else float(value)

    def path(self, key: str, *, required: bool = False) -> Path | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else self.base / path


def _tables(data: Mapping[str, Any], base: Path) -> dict[str, _Table]:
    unknown = sorted(set(data) - set(KNOWN))
    if unknown:
        raise ConfigError(f"unknown table(s): {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})")
    out = {}
    for name, known in KNOWN.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        extra = sorted(set(table) - known)
        if extra:
            raise ConfigError(f"[{name}] unknown key(s): {', '.join(extra)} (known: {', '.join(sorted(known))})")
        out[name] = _Table(name, table, base)
    return out


def _loopback(host: str) -> bool:
    if host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def database_target(table: _Table, application_name: str) -> Path | str:
    """``[database]``: a SQLite :class:`Path`, or a PostgreSQL connection string."""
    engine = table.text("engine", "sqlite")
    if engine == "sqlite":
        for key in ("host", "port", "dbname", "user", "password_file", "sslmode", "ca", "cert", "key"):
            if key in table.values:
                raise ConfigError(f'[database] {key} is for engine = "postgresql", not sqlite')
        return table.path("path") or DEFAULT_SQLITE
    if engine != "postgresql":
        raise ConfigError('[database] engine must be "sqlite" or "postgresql"')
    from psycopg.conninfo import make_conninfo

    if "path" in table.values:
        raise ConfigError('[database] path is for engine = "sqlite"; PostgreSQL takes host, port, dbname')
    host = table.text("host", required=True) or ""
    sslmode = table.text("sslmode", "verify-full") or "verify-full"
    if sslmode not in SSLMODES:
        raise ConfigError(
            f"[database] sslmode must be one of {', '.join(SSLMODES)} (TLS is verified; 'require' does not check"
            " the server's certificate)"
        )
    if sslmode == "disable" and not _loopback(host):
        raise ConfigError(f'[database] sslmode = "disable" only for a server on the loopback or a socket, not {host}')
    params: dict[str, Any] = {
        "host": host,
        "port": table.integer("port", 5432),
        "dbname": table.text("dbname", "comptoir_backoffice"),
        "user": table.text("user", "backoffice"),
        "application_name": table.text("application_name", application_name),
        "connect_timeout": table.integer("connect_timeout", 10),
    }
    if sslmode != "disable" and not host.startswith("/"):
        ca = table.path("ca")
        params["sslmode"] = sslmode
        params["sslrootcert"] = str(ca) if ca is not None else "system"
        cert_file, key_file = table.path("cert"), table.path("key")
        if (cert_file is None) != (key_file is None):
            raise ConfigError("[database] cert and key go together (client certificate and its key)")
        if cert_file is not None and key_file is not None:
            params["sslcert"], params["sslkey"] = str(cert_file), str(key_file)
    else:
        params["sslmode"] = "disable"
    password_file = table.path("password_file")
    if password_file is not None:
        try:
            params["password"] = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"[database] password_file {password_file}: {exc.strerror or exc}") from None
    return str(make_conninfo(**params))


def _signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"[commands] signing_key {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"[commands] signing_key {path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"[commands] signing_key {path} must be an Ed25519 private key")
    return key


def load_config(path: Path) -> BackOfficeSettings:
    """Read and check the whole file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse(data, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse(data: Mapping[str, Any], base: Path) -> BackOfficeSettings:
    t = _tables(data, base)
    mqtt, http = t["mqtt"], t["http"]
    group = mqtt.text("group")
    if group is not None and (not group or any(c in group for c in "/+#")):
        raise ConfigError("[mqtt] group must be a non-empty name without '/', '+' or '#'")
    client_id = mqtt.text("client_id") or default_client_id(group)
    ca, cert, key = (mqtt.path(k, required=True) or Path() for k in ("ca", "cert", "key"))
    signing = t["commands"].path("signing_key", required=True) or Path()
    port = http.integer("port", None)
    if port is not None and not 0 <= port < 65536:
        raise ConfigError("[http] port must be between 0 and 65535")
    rollouts = t["rollouts"].number("interval", 60.0)
    secure = http._get("secure_cookies", (bool,), "true or false", False)
    hold_grace = mqtt.number("hold_grace")
    if hold_grace is not None and hold_grace < 0:
        raise ConfigError("[mqtt] hold_grace must be 0 or more seconds")
    return BackOfficeSettings(
        host=mqtt.text("host", required=True) or "",
        port=mqtt.integer("port", 8883) or 8883,
        ca=ca,
        cert=cert,
        key=key,
        db=database_target(t["database"], client_id),
        signing_key=_signing_key(signing),
        http_port=port,
        client_id=client_id,
        reports=http.path("reports"),
        rollout_interval=rollouts if rollouts is not None else 60.0,
        group=group,
        hold_grace=hold_grace,
        keepalive=mqtt.integer("keepalive", 30) or 30,
        secure_cookies=bool(secure),
    )
