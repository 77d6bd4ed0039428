"""The reference back office: MQTT subscriber, command sender, fleet page and JSON API.

It connects to the broker with its own certificate (common name ``backoffice``: the ACL lets it read
``comptoir/#`` and write the boxes' ``cmd`` topics), with a persistent session so that what the boxes
publish while it is down is queued by the broker and arrives when it is back.

After a batch is stored, the keys of the boxes' outbox messages in it (new or repeated) go back to
each box on ``comptoir/<pharmacy>/<device>/events/ack`` (``{"keys": [...], "held": [...]}``, QoS 1): the box marks a
message delivered only then, not on the broker's PUBACK (mosquitto PUBACKs before it persists).

Messages are acknowledged *after* they are stored: paho's ``manual_ack`` lets a writer thread commit
a batch of messages in one transaction, then send their PUBACKs. If the back office dies in between,
the broker delivers them again and the store's dedupe by key drops the repeats.

HTTP (127.0.0.1 only; a sandbox, no authentication)::

    GET  /                      the fleet page (HTML)
    GET  /api/fleet             {"devices": [{device, online, state, version, outbox_depth, last_sync,
                                               last_seen, events, duplicates, out_of_order, rejections}]}
    GET  /api/events?device=D   events of D (all devices without it), in order of arrival
    GET  /api/commands?device=D commands sent and their answers
    POST /api/commands          {"device": "<pharmacy>/<device>", "type", "args"?, "ttl"?} -> {"id"}
    GET  /api/rollouts          {"rollouts": [{id, version, url, started_at, state, stage, share, offered,
                                               succeeded, failed, paused_reason, offers}]}
    POST /api/rollouts          {"version", "url"} -> 201 {"id"} (409 if that version already has one)
    GET  /api/health            {"status": "ok", "connected": bool}
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sandbox.backoffice.rollouts import RolloutRunner
from sandbox.backoffice.store import Applied, BackOfficeStore, Incoming
from sync.commands import COMMAND_TYPES, make_command
from sync.mqtt import correlation_of, tls_context

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    "comptoir/+/+/state",
    "comptoir/+/+/events",
    "comptoir/+/+/events/update",
    "comptoir/+/+/telemetry",
    "comptoir/+/+/cmd/ack",
)
BATCH = 500
"""Messages committed in one transaction at most (then acknowledged)."""
RECEIVE_MAXIMUM = 1000
"""QoS 1 messages the broker may have in flight towards the back office (MQTT 5 Receive Maximum)."""


@dataclass(frozen=True, slots=True)
class BackOfficeSettings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    db: Path
    signing_key: Ed25519PrivateKey
    http_port: int = 0
    client_id: str = "backoffice"
    reports: Path | None = None
    """Where ``comptoir reconcile --out`` writes its report: the page shows the same reconciliation."""
    rollout_interval: float = 60.0
    """Seconds between two steps of the running roll-outs (0: never by itself, tests call ``tick``)."""


class BackOffice:
    """The back office: :meth:`start`, use, :meth:`stop` (bounded waits everywhere)."""

    def __init__(self, settings: BackOfficeSettings) -> None:
        self.settings = settings
        self.store = BackOfficeStore(settings.db)
        self._inbox: queue.Queue[tuple[mqtt.MQTTMessage, int, float] | None] = queue.Queue()
        self._connected = threading.Event()
        self._generation = 0
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._rollout_thread: threading.Thread | None = None
        self.rollouts = RolloutRunner(self.store, lambda device, kind, args: self.send_command(device, kind, args))
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.tls_set_context(tls_context(settings.ca, settings.cert, settings.key))
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # --- lifecycle

    def start(self) -> None:
        """Connect (in the background), start the writer and the web server."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 7 * 24 * 3600
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=30, clean_start=False, properties=properties
        )
        self._client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="backoffice-writer", daemon=True)
        self._writer.start()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.settings.http_port), _handler(self))
        self._httpd.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="backoffice-http", daemon=True
        )
        self._http_thread.start()
        if self.settings.rollout_interval > 0:
            self._rollout_thread = threading.Thread(target=self._rollout_loop, name="backoffice-rollouts", daemon=True)
            self._rollout_thread.start()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the back office is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect, flush what was received, stop the web server, close the database."""
        self._client.disconnect()
        self._client.loop_stop()
        self._stop.set()
        self._inbox.put(None)
        if self._writer is not None:
            self._writer.join(5)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join(5)
        if self._rollout_thread is not None:
            self._rollout_thread.join(5)
        self.store.close()

    def __enter__(self) -> BackOffice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- MQTT (paho's thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("back office: connection refused (%s)", reason)
            return
        self._generation += 1
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message, self._generation, time.time()))

    def _write_loop(self) -> None:
        """Commit batches of messages, then acknowledge them (on the connection they came from)."""
        while True:
            item = self._inbox.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < BATCH:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                batch.append(more)
            try:
                applied = self.store.apply(
                    Incoming(m.topic, bytes(m.payload), at, correlation_of(m)) for m, _, at in batch
                )
            except Exception:
                log.exception("back office: could not store %d messages (the broker will resend them)", len(batch))
                continue
            self._acknowledge(applied)
            for device, signed in applied.commands:
                self._client.publish(f"comptoir/{device}/cmd", signed, qos=1)
            for message, generation, _ in batch:
                if message.qos > 0 and generation == self._generation:
                    self._client.ack(message.mid, message.qos)

    def _acknowledge(self, applied: Applied) -> None:
        """Tell each box which of its outbox messages are stored and which are held back (QoS 1, not
        waited for: a lost acknowledgement only means the box sends the message again, deduplicated).

        Held-back notices carry the correlation data of the send they answer, so that the box ignores
        one that arrives after it has already sent again."""
        stored: dict[str, list[str]] = {}
        for device, key in applied.stored:
            stored.setdefault(device, []).append(key)
        for device, keys in stored.items():
            body = json.dumps({"keys": keys}, separators=(",", ":")).encode("utf-8")
            self._client.publish(f"comptoir/{device}/events/ack", body, qos=1)
        held: dict[tuple[str, bytes | None], list[str]] = {}
        for device, key, correlation in applied.held:
            held.setdefault((device, correlation), []).append(key)
        for (device, correlation), keys in held.items():
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                properties.CorrelationData = correlation
            body = json.dumps({"held": keys}, separators=(",", ":")).encode("utf-8")
            self._client.publish(f"comptoir/{device}/events/ack", body, qos=1, properties=properties)

    # --- roll-outs

    def _rollout_loop(self) -> None:
        """Step the roll-outs every ``rollout_interval`` seconds; an error is logged, never fatal (the
        state is in the database, the next step starts from it)."""
        while not self._stop.wait(self.settings.rollout_interval):
            try:
                self.rollouts.tick(time.time())
            except Exception:
                log.exception("back office: roll-out step failed")

    # --- commands

    def send_command(
        self,
        device: str,
        kind: str,
        args: dict[str, Any] | None = None,
        *,
        ttl: float = 3600.0,
        command_id: str | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Sign a command for ``device`` (``<pharmacy>/<device>``), record it and publish it (QoS 1).

        Not retained: the box's persistent session queues it while the box is offline, and it is sent
        again each time the box comes online until answered (a crashed broker may have lost the queue).
        Returns its id.
        """
        ident = command_id or uuid.uuid4().hex
        command = make_command(
            self.settings.signing_key, command_id=ident, device=device, kind=kind, args=args or {}, ttl=ttl
        )
        signed = json.dumps(command).encode("utf-8")
        self.store.record_command(
            ident, device, kind, args or {}, signed=signed, expires_at=float(command.get("expires_at") or 0)
        )
        self.publish_raw(f"comptoir/{device}/cmd", signed, timeout=timeout)
        return ident

    def publish_raw(self, topic: str, payload: bytes, *, timeout: float = 5.0) -> None:
        """Publish bytes as they are (tests: forged or repeated commands)."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()


# --- web


ROLLOUT_STATES = {"running": "en cours", "paused": "en pause", "done": "terminé"}


def _rollouts_table(rollouts: list[dict[str, Any]]) -> str:
    """The roll-outs on the fleet page, a paused one with the reason the policy gave."""
    if not rollouts:
        return "<h2>Déploiements</h2><p>Aucun déploiement.</p>"
    rows = []
    for r in rollouts:
        state = ROLLOUT_STATES.get(r["state"], r["state"])
        if r["paused_reason"]:
            state = f"{state} : {r['paused_reason']}"
        cells = (
            r["version"],
            state,
            f"{r['stage'] + 1} ({r['share']:.0%} du parc)",
            r["offered"],
            r["succeeded"],
            r["failed"],
        )
        style = " style='background:#fdd'" if r["state"] == "paused" else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (
        "<h2>Déploiements</h2><table border='1' cellpadding='4'><tr><th>version</th><th>état</th>"
        "<th>étape</th><th>proposés</th><th>réussis</th><th>échoués</th></tr>" + "".join(rows) + "</table>"
    )


def _page(fleet: list[dict[str, Any]], rollouts: list[dict[str, Any]] | None = None) -> str:
    def when(value: Any) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value))) if value else "—"

    rows = []
    for d in fleet:
        rejections = "; ".join(
            f"lot {r.get('batch')} FSE {r.get('claim')}: {r.get('reason')}"
            if r["kind"] == "claim"
            else f"commande {r.get('type')}: {r.get('reason')}"
            for r in d["rejections"][:5]
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    d["device"],
                    "en ligne" if d["online"] else "hors ligne",
                    d["version"] or "—",
                    "—" if d["outbox_depth"] is None else d["outbox_depth"],
                    when(d["last_sync"]),
                    d["events"],
                    rejections or "—",
                )
            )
            + "</tr>"
        )
    return (
        "<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>comptoir — parc</title>"
        "<meta http-equiv='refresh' content='10'></head><body><h1>Parc comptoir</h1>"
        "<table border='1' cellpadding='4'><tr><th>poste</th><th>état</th><th>version</th>"
        "<th>file d'envoi</th><th>dernière synchro</th><th>événements</th><th>rejets récents</th></tr>"
        + "".join(rows)
        + "</table>"
        + _rollouts_table(rollouts or [])
        + "<p><a href='/reconciliation'>Rapprochement des paiements</a></p></body></html>"
    )


def _handler(backoffice: BackOffice) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            store = backoffice.store
            if url.path == "/":
                self._send(
                    200, _page(store.fleet(), backoffice.rollouts.list()).encode("utf-8"), "text/html; charset=utf-8"
                )
            elif url.path == "/api/fleet":
                self._json(200, {"devices": store.fleet()})
            elif url.path == "/api/events":
                self._json(200, {"events": store.events(query.get("device"), query.get("stream", "events"))})
            elif url.path == "/api/commands":
                self._json(200, {"commands": store.commands(query.get("device"))})
            elif url.path == "/api/rollouts":
                self._json(200, {"rollouts": backoffice.rollouts.list()})
            elif url.path == "/api/health":
                self._json(200, {"status": "ok", "connected": backoffice.connected})
            elif url.path in ("/reconciliation", "/api/reconciliation"):
                self._report(url.path.startswith("/api/"))
            else:
                self._json(404, {"error": "not found"})

        def _report(self, as_json: bool) -> None:
            """The payments reconciliation (issue 8), as ``comptoir reconcile`` wrote it last."""
            reports = backoffice.settings.reports
            name = "reconciliation.json" if as_json else "reconciliation.html"
            path = reports / name if reports is not None else None
            if path is None or not path.is_file():
                self._json(404, {"error": "aucun rapport de rapprochement : lancez comptoir reconcile --out"})
                return
            kind = "application/json; charset=utf-8" if as_json else "text/html; charset=utf-8"
            self._send(200, path.read_bytes(), kind)

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path not in ("/api/commands", "/api/rollouts"):
                self._json(404, {"error": "not found"})
                return
            try:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 16)
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": "JSON expected"})
                return
            if not isinstance(body, dict):
                self._json(400, {"error": "JSON object expected"})
                return
            if path == "/api/rollouts":
                self._start_rollout(body)
                return
            device, kind = body.get("device"), body.get("type")
            if not isinstance(device, str) or device.count("/") != 1 or kind not in COMMAND_TYPES:
                self._json(400, {"error": f"device '<pharmacy>/<device>' and type in {list(COMMAND_TYPES)} expected"})
                return
            args = body.get("args") if isinstance(body.get("args"), dict) else {}
            ident = backoffice.send_command(device, kind, args, ttl=float(body.get("ttl", 3600.0)))
            self._json(202, {"id": ident})

        def _start_rollout(self, body: dict[str, Any]) -> None:
            version, url = body.get("version"), body.get("url")
            if not isinstance(version, str) or not version or not isinstance(url, str) or not url:
                self._json(400, {"error": "version and url expected"})
                return
            try:
                ident = backoffice.rollouts.start(version, url, time.time())
            except ValueError as exc:
                self._json(409, {"error": str(exc)})
                return
            self._json(201, {"id": ident})

    return Handler


# --- command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``comptoir backoffice`` (the reference back office, for development and demos)."""
    parser = subparsers.add_parser("backoffice", help="run the reference back office (MQTT + web page)")
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=8883, help="broker TLS port")
    parser.add_argument("--ca", type=Path, required=True, help="fleet CA (PEM)")
    parser.add_argument("--cert", type=Path, required=True, help="back office certificate (CN backoffice)")
    parser.add_argument("--key", type=Path, required=True, help="its private key")
    parser.add_argument("--signing-key", type=Path, required=True, help="Ed25519 private key signing commands (PEM)")
    parser.add_argument("--db", type=Path, default=Path("backoffice.db"), help="the back office's SQLite file")
    parser.add_argument("--http-port", type=int, default=8780, help="web page port on 127.0.0.1")
    parser.add_argument("--reports", type=Path, help="directory of the last `comptoir reconcile --out` report")
    parser.set_defaults(func=cmd_backoffice)


def cmd_backoffice(args: argparse.Namespace) -> int:
    signing = load_pem_private_key(args.signing_key.read_bytes(), password=None)
    if not isinstance(signing, Ed25519PrivateKey):
        print("comptoir backoffice: --signing-key must be an Ed25519 private key", flush=True)
        return 2
    office = BackOffice(
        BackOfficeSettings(
            args.host, args.port, args.ca, args.cert, args.key, args.db, signing, args.http_port, reports=args.reports
        )
    )
    office.start()
    print(f"comptoir backoffice: fleet page on {office.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        office.stop()
    return 0
