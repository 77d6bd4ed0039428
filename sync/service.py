"""``comptoir sync``: the process that moves the outbox to the teleservices and the back office.

It runs beside the kiosk (its own systemd unit) and shares the SQLite file with it (WAL: the kiosk
writes claims while this process marks messages delivered). One thread owns the database; paho's
network thread only hands over commands through a queue and wakes the loop.

Each pass of the loop:

1. apply the commands received (:mod:`sync.commands`), publish the answers that are not queued;
2. back-office streams (``events``, ``acks``, ``updates``) through MQTT in windows, marked delivered when
   the back office acknowledged their keys on ``events/ack`` after storing them (a PUBACK alone is not
   enough: the broker may lose a message it PUBACKed if it is killed), see
   :func:`appliance.delivery.deliver_published` and :mod:`sync.mqtt`;
3. teleservice streams (``call``, ``execution``, ``batch``, ``dmp``) over HTTPS with mutual TLS, one
   message at a time with its ``Idempotency-Key`` (:func:`appliance.delivery.deliver_pending`); secure
   messages (``mssante``) over SMTP with STARTTLS and the pharmacy's certificate to its MSSanté operator
   (:func:`appliance.delivery.deliver_mail`, :mod:`sync.mssante`);
4. telemetry when due.

Failures back off exponentially per message (the outbox's ``next_attempt_at``); a reconnection to
the broker makes the back-office streams due at once. The loop sleeps until something is due or a
command arrives, at most ``poll_interval``: the kiosk's new messages are noticed by polling (one indexed
query), which needs no signalling between the two processes.

Stopping: SIGTERM/SIGINT finish the current step, publish the retained "offline" state and
disconnect; a SIGKILL or power cut leaves the broker to publish the last will. Either way nothing is
lost (messages are marked delivered only after the receiver acknowledged them) and nothing is
applied twice (receivers deduplicate by key).

Configuration is a TOML file (``--config``; ``$COMPTOIR_SYNC_CONFIG``; else ``/etc/comptoir/sync.toml``)::

    [store]
    db = "/var/lib/comptoir/comptoir.db"      # or $COMPTOIR_DB
    key = "/var/lib/comptoir/keys/field.key"  # or $COMPTOIR_KEY (batches carry sealed NIRs)

    [teleservices]                             # optional
    url = "https://teleservices.example:8443"
    ca = "/etc/comptoir/tls/teleservices-ca.pem"  # verify the server against this CA
    cert = "/etc/comptoir/tls/pharmacy.crt"       # the pharmacy's client certificate
    key = "/etc/comptoir/tls/pharmacy.key"
    timeout = 10.0

    [backoffice]                               # optional
    host = "backoffice.example"
    port = 8883
    pharmacy = "ph-0042"
    device = "counter-1"
    ca = "/etc/comptoir/tls/fleet-ca.pem"
    cert = "/etc/comptoir/tls/device.crt"      # common name "<pharmacy>/<device>"
    key = "/etc/comptoir/tls/device.key"
    command_key = "/etc/comptoir/backoffice-commands.pub"  # Ed25519 public key (PEM)
    telemetry_interval = 60.0

    [mssante]                                  # optional: receipts, DMP copies, prescriber summaries
    host = "smtp.operateur.example"            # the MSSanté operator's submission server
    port = 587                                 # 465 with tls = "implicit"
    tls = "starttls"                           # STARTTLS required (never in clear), or "implicit"
    sender = "officine@pharmacie.mssante.fr"   # the pharmacy's MSSanté mailbox
    ca = "/etc/comptoir/tls/mssante-ca.pem"    # verify the operator (default: the system's CAs)
    cert = "/etc/comptoir/tls/pharmacy.crt"    # the pharmacy's certificate, required
    key = "/etc/comptoir/tls/pharmacy.key"
    timeout = 10.0
    products = "/var/lib/comptoir/products.csv"  # names the receipt's lines (default: the sandbox's)
    product_reference = "..."                  # X-MSS-NIL, when the software is declared to the ANS

    [sync]
    window = 200
    poll_interval = 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from appliance.delivery import (
    BACKOFFICE_STREAMS,
    MAIL_STREAMS,
    TELESERVICE_STREAMS,
    deliver_mail,
    deliver_pending,
    deliver_published,
    retry_now,
)
from appliance.store import audit
from appliance.store.database import get_setting, open_database, transaction
from appliance.store.records import CounterRecords
from appliance.store.sealing import FieldCipher
from sync import telemetry
from sync.commands import CONFIG_PREFIX, CommandProcessor
from sync.mqtt import BackOfficeLink, MqttSettings

if TYPE_CHECKING:
    from sync.insi_soap import InsiSettings
    from sync.mssante import SmtpSettings

log = logging.getLogger("comptoir.sync")

CONFIG_ENV, DB_ENV, KEY_ENV = "COMPTOIR_SYNC_CONFIG", "COMPTOIR_DB", "COMPTOIR_KEY"
DEFAULT_CONFIG = Path("/etc/comptoir/sync.toml")
"""Used when neither ``--config`` nor ``$COMPTOIR_SYNC_CONFIG`` says otherwise (the systemd unit runs
a bare ``comptoir sync`` with ``COMPTOIR_DB``/``COMPTOIR_KEY`` in its environment)."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ConfigError(Exception):
    """The sync configuration is missing something or is malformed (the message says what)."""


@dataclass(frozen=True, slots=True)
class TeleservicesConfig:
    url: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = 10.0
    insi: InsiSettings | None = None
    """``[teleservices.insi]``: the INSi endpoint and context values (deferred INSi calls)."""


@dataclass(frozen=True, slots=True)
class BackOfficeConfig:
    mqtt: MqttSettings
    command_key: Path | None
    telemetry_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class SyncConfig:
    db: Path
    key: Path | None
    teleservices: TeleservicesConfig | None = None
    backoffice: BackOfficeConfig | None = None
    window: int = 200
    poll_interval: float = 0.5
    mssante: SmtpSettings | None = None
    """``[mssante]``: the SMTP submission of secure messages (none: they wait in the outbox)."""


def _path(table: dict[str, Any], name: str, base: Path, *, required: bool = True) -> Path | None:
    value = table.get(name)
    if value is None:
        if required:
            raise ConfigError(f"missing {name!r}")
        return None
    path = Path(str(value))
    return path if path.is_absolute() else base / path


def load_config(path: Path) -> SyncConfig:
    """Read the TOML configuration; relative paths are relative to the file's directory."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    base = path.resolve().parent
    store = data.get("store", {})
    db = _path(store, "db", base, required=False) or (Path(os.environ[DB_ENV]) if os.environ.get(DB_ENV) else None)
    if db is None:
        raise ConfigError(f"[store] db is required (or set {DB_ENV})")
    key = _path(store, "key", base, required=False) or (Path(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV) else None)
    tele = None
    if "teleservices" in data:
        t = data["teleservices"]
        if "url" not in t:
            raise ConfigError("[teleservices] url is required")
        from sync.insi_soap import InsiSettingsError, settings_from_table

        try:
            insi = settings_from_table(t["insi"]) if "insi" in t else None
        except InsiSettingsError as exc:
            raise ConfigError(str(exc)) from None
        tele = TeleservicesConfig(
            url=str(t["url"]),
            ca=_path(t, "ca", base, required=False),
            cert=_path(t, "cert", base, required=False),
            key=_path(t, "key", base, required=False),
            timeout=float(t.get("timeout", 10.0)),
            insi=insi,
        )
    back = None
    if "backoffice" in data:
        b = data["backoffice"]
        try:
            mqtt = MqttSettings(
                host=str(b["host"]),
                port=int(b.get("port", 8883)),
                pharmacy=str(b["pharmacy"]),
                device=str(b["device"]),
                ca=_path(b, "ca", base) or Path(),
                cert=_path(b, "cert", base) or Path(),
                key=_path(b, "key", base) or Path(),
                publish_timeout=float(b.get("publish_timeout", 10.0)),
                reconnect_max=int(b.get("reconnect_max", 30)),
            )
        except KeyError as exc:
            raise ConfigError(f"[backoffice] {exc.args[0]} is required") from None
        back = BackOfficeConfig(
            mqtt=mqtt,
            command_key=_path(b, "command_key", base, required=False),
            telemetry_interval=float(b.get("telemetry_interval", 60.0)),
        )
    mssante = None
    if "mssante" in data:
        from sync.mssante import MssanteSettingsError
        from sync.mssante import settings_from_table as mssante_settings

        try:
            mssante = mssante_settings(data["mssante"], base)
        except (MssanteSettingsError, TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    loop = data.get("sync", {})
    return SyncConfig(
        db=db,
        key=key,
        teleservices=tele,
        backoffice=back,
        window=int(loop.get("window", 200)),
        poll_interval=float(loop.get("poll_interval", 0.5)),
        mssante=mssante,
    )


def load_command_key(path: Path) -> Ed25519PublicKey:
    """The back office's Ed25519 public key (PEM) that commands must be signed with."""
    key = load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


@dataclass
class PassReport:
    """What one pass of the loop did (for tests and logs)."""

    published: int = 0
    delivered: int = 0
    deferred: int = 0
    commands: int = 0
    telemetry: bool = False

    @property
    def worked(self) -> bool:
        return bool(self.published or self.delivered or self.commands)


class SyncService:
    """The sync loop; :meth:`run` until ``stop`` is set, or :meth:`run_pass` once (tests).

    Create it on the thread that runs it: it owns a SQLite connection, which Python ties to the
    thread that opened it.
    """

    def __init__(self, config: SyncConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.db = open_database(config.db, key_file=config.key)  # the key keys its audit rows
        self.wake = threading.Event()
        self._commands: queue.Queue[bytes] = queue.Queue()
        self._reconnected = threading.Event()
        self._telemetry_due = 0.0
        cipher = FieldCipher.load(config.key) if config.key is not None else None
        self.records = CounterRecords(self.db, cipher, clock) if cipher is not None else None
        self.teleservices: Any = None
        if config.teleservices is not None:
            from sync.teleservices_http import HttpTeleservices

            t = config.teleservices
            verify: bool | str = str(t.ca) if t.ca is not None else True
            cert = (str(t.cert), str(t.key)) if t.cert is not None and t.key is not None else None
            self.teleservices = HttpTeleservices(
                t.url, timeout=t.timeout, verify=verify, cert=cert, deliver_attempts=1, insi=t.insi
            )
        self.mail: Any = None
        self._product_name: Callable[[str], str | None] | None = None
        if config.mssante is not None:
            from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
            from sync.mssante import SmtpSecureMail

            self.mail = SmtpSecureMail(config.mssante)
            products = ProductTable.load(config.mssante.products or DEFAULT_PRODUCTS_PATH)
            self._product_name = lambda cip13: p.name if (p := products.get(cip13)) else None
        self.link: BackOfficeLink | None = None
        self.commands: CommandProcessor | None = None
        if config.backoffice is not None:
            b = config.backoffice
            self.link = BackOfficeLink(b.mqtt, on_command=self._command_received, on_connected=self._link_up)
            if b.command_key is not None:
                self.commands = CommandProcessor(
                    self.db,
                    load_command_key(b.command_key),
                    b.mqtt.client_id,
                    clock=clock,
                    diagnostics=lambda: telemetry.diagnostics(self.db, data_dir=self.config.db.parent),
                )

    # --- from paho's thread

    def _command_received(self, raw: bytes) -> None:
        self._commands.put(raw)
        self.wake.set()

    def _link_up(self) -> None:
        self._reconnected.set()
        self.wake.set()

    # --- the loop

    def telemetry_interval(self) -> float:
        """The configured interval, unless the back office changed it by a config command."""
        default = self.config.backoffice.telemetry_interval if self.config.backoffice else 60.0
        value = get_setting(self.db, CONFIG_PREFIX + "telemetry_interval_s")
        return float(value) if value else default

    def run_pass(self) -> PassReport:
        """One pass: commands, back-office streams, teleservice streams, telemetry."""
        report = PassReport()
        now = self.clock()
        if self.link is not None:
            if self._reconnected.is_set():
                self._reconnected.clear()
                retry_now(self.db, BACKOFFICE_STREAMS, now=now)
                self._telemetry_due = 0.0
            report.commands = self._apply_commands()
            with transaction(self.db) as conn:  # the journal's head, off the box (audit.verify --anchor)
                audit.enqueue_anchor_if_due(conn, now=now)
            if self.link.connected:
                published = deliver_published(
                    self.db, self.link, clock=self.clock, window=self.config.window, max_windows=20
                )
                report.published, report.deferred = published.delivered, published.deferred
                for note in published.notes:
                    log.info("back office: %s", note)  # transport reasons only, never patient data
                if self.clock() >= self._telemetry_due:
                    report.telemetry = self._send_telemetry()
        if self.teleservices is not None and self.records is not None:
            delivered = deliver_pending(self.records, self.teleservices, clock=self.clock, streams=TELESERVICE_STREAMS)
            report.delivered = delivered.delivered + delivered.refused
            report.deferred += delivered.deferred
        if self.mail is not None and self.records is not None and self.config.mssante is not None:
            sent = deliver_mail(
                self.records,
                self.mail,
                self.config.mssante.mail_settings(),
                clock=self.clock,
                product_name=self._product_name,
            )
            report.delivered += sent.delivered + sent.refused
            report.deferred += sent.deferred
            for note in sent.notes:
                log.info("mssante: %s", note)  # codes and French reasons, never an address
        return report

    def _apply_commands(self) -> int:
        count = 0
        while True:
            try:
                raw = self._commands.get_nowait()
            except queue.Empty:
                return count
            count += 1
            if self.commands is None or self.link is None:
                log.warning("back office: command ignored (no [backoffice] command_key configured)")
                continue
            answer = self.commands.handle(raw)
            log.info("back office: command %s %s", answer.payload.get("command"), answer.payload.get("status"))
            if not answer.queued:
                body = json.dumps(answer.payload, separators=(",", ":")).encode("utf-8")
                self.link.publish_now("cmd/ack", body)
            if answer.applied:
                self._telemetry_due = 0.0

    def _send_telemetry(self) -> bool:
        if self.link is None:
            return False
        snapshot = telemetry.collect(self.db, data_dir=self.config.db.parent, now=self.clock())
        error = self.link.publish_now("telemetry", json.dumps(snapshot, separators=(",", ":")).encode("utf-8"))
        self._telemetry_due = self.clock() + (self.telemetry_interval() if error is None else 5.0)
        return error is None

    def _streams(self) -> list[str]:
        """The outbox streams this process delivers, as configured: a stream nobody drains here (no
        ``[mssante]``, say) must not keep the loop from sleeping."""
        streams: list[str] = list(BACKOFFICE_STREAMS) if self.link is not None else []
        if self.records is not None and self.teleservices is not None:
            streams += TELESERVICE_STREAMS
        if self.records is not None and self.mail is not None:
            streams += MAIL_STREAMS
        return streams

    def _next_due(self) -> float:
        streams = self._streams()
        marks = ",".join("?" for _ in streams)
        row = self.db.conn.execute(
            f"SELECT min(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND stream IN ({marks})",  # noqa: S608
            streams,
        ).fetchone()
        due = float(row[0]) if row and row[0] is not None else float("inf")
        if self.link is not None and self.link.connected:
            due = min(due, self._telemetry_due)
        return due

    def run(self, stop: threading.Event) -> None:
        """Run passes until ``stop`` is set; sleeps while there is nothing to do."""
        if self.link is not None:
            self.link.start()
        try:
            while not stop.is_set():
                report = self.run_pass()
                if report.worked:
                    continue
                pause = min(self.config.poll_interval, max(0.0, self._next_due() - self.clock()))
                self.wake.wait(pause)
                self.wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Say offline, disconnect, close the HTTP client and the database."""
        if self.link is not None:
            self.link.stop()
        if self.teleservices is not None:
            self.teleservices.close()
        self.db.close()


# --- command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``comptoir sync --config FILE [--once]`` to the ``comptoir`` command."""
    parser = subparsers.add_parser("sync", help="deliver the outbox to the teleservices and the back office")
    parser.add_argument(
        "--config", type=Path, help=f"TOML configuration (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})"
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit (installation checks)")
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="with --once: how long to wait for the broker (s)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    """Run the sync process until SIGTERM/SIGINT."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    path = args.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG)
    if not path.exists():
        print(f"comptoir sync: no configuration at {path} (--config FILE or ${CONFIG_ENV})", file=sys.stderr)
        return EXIT_USAGE
    try:
        service = SyncService(load_config(path))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"comptoir sync: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        service.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.once:
        try:
            if service.link is not None:
                service.link.start()
                service.link.wait_connected(args.connect_timeout)
            report = service.run_pass()
        finally:
            service.close()
        print(json.dumps({"published": report.published, "delivered": report.delivered, "deferred": report.deferred}))
        return EXIT_OK
    service.run(stop)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sync``: the same as ``comptoir sync`` (for the systemd unit and the tests)."""
    parser = argparse.ArgumentParser(prog="comptoir")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sync", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status
