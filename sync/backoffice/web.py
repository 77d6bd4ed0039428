"""The back office's fleet page and JSON API (HTTP on 127.0.0.1, no authentication yet).

Every worker may serve it: it reads the shared database. Operator accounts and a page fit for
operators outside the machine are the next slice of issue 16; until then it listens on 127.0.0.1
only (reach it through an SSH tunnel or a reverse proxy that authenticates)::

    GET  /                      the fleet page (HTML)
    GET  /api/fleet             {"devices": [{device, online, state, version, outbox_depth, last_sync,
                                               last_seen, events, duplicates, out_of_order, rejections}]}
    GET  /api/events?device=D   events of D (all devices without it), in the order they were applied
    GET  /api/commands?device=D commands sent and their answers
    POST /api/commands          {"device": "<pharmacy>/<device>", "type", "args"?, "ttl"?} -> {"id"}
    GET  /api/rollouts          {"rollouts": [{id, version, url, started_at, state, stage, share, offered,
                                               succeeded, failed, paused_reason, offers}]}
    POST /api/rollouts          {"version", "url"} -> 201 {"id"} (409 if that version already has one)
    GET  /api/health            {"status": "ok", "connected": bool}
    GET  /api/worker            this worker: {client_id, group, engine, connected, subscribed, received,
                                               batches, messages, failed_batches}
    GET  /reconciliation        the last ``comptoir reconcile --out`` report (``/api/reconciliation``: JSON)
"""

from __future__ import annotations

import html
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sync.commands import COMMAND_TYPES

if TYPE_CHECKING:
    from sync.backoffice.service import BackOffice


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


def page(fleet: list[dict[str, Any]], rollouts: list[dict[str, Any]] | None = None) -> str:
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


def handler(backoffice: BackOffice) -> type[BaseHTTPRequestHandler]:
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
                    200, page(store.fleet(), backoffice.rollouts.list()).encode("utf-8"), "text/html; charset=utf-8"
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
            elif url.path == "/api/worker":
                settings = backoffice.settings
                self._json(
                    200,
                    {
                        "client_id": settings.client_id,
                        "group": settings.group,
                        "engine": store.dialect,
                        "connected": backoffice.connected,
                        "subscribed": backoffice.subscribed,
                        **backoffice.stats,
                    },
                )
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
