"""The back office's operator page and JSON API (HTTP on 127.0.0.1), behind operator accounts.

Every page and API needs a session (:mod:`sync.backoffice.accounts`): without one a page redirects to
``/login`` and an API answers 401. A POST also needs the session's CSRF token (the form's ``csrf``
field, or the ``X-CSRF-Token`` header for the API), and a request whose ``Origin`` is another site is
refused. ``viewer`` reads; ``operator`` also starts, pauses and resumes roll-outs and sends commands;
``admin`` also manages accounts. Nothing is fetched from outside: the chart is SVG drawn here, the
styles are in the page, and ``Content-Security-Policy`` forbids anything else::

    GET  /login, POST /login    the login form (name, password) -> the session cookie, then /
    POST /logout                ends the session
    GET  /                      the fleet page: boxes (filters ``etat=online|offline``, ``version=V``,
                                ``file=N`` outbox deeper than N, ``vu=M`` last seen more than M minutes
                                ago, ``rejets=1`` with rejects), roll-outs, versions over time, journal
    POST /rollouts              form: version, url (operator)
    POST /rollouts/<id>/pause, /rollouts/<id>/resume   (operator)
    GET  /api/session           {"account", "role", "csrf"}
    GET  /api/fleet             {"devices": [{device, online, state, version, outbox_depth, last_sync,
                                               last_seen, events, duplicates, out_of_order, rejections}]}
                                (the same filters as the page)
    GET  /api/events?device=D   events of D (all devices without it), in the order they were applied
    GET  /api/commands?device=D commands sent and their answers
    POST /api/commands          {"device": "<pharmacy>/<device>", "type", "args"?, "ttl"?} -> {"id"} (operator)
    GET  /api/rollouts          {"rollouts": [{id, version, url, started_at, state, stage, share, offered,
                                               succeeded, failed, paused_reason, offers}]}
    POST /api/rollouts          {"version", "url"} -> 201 {"id"} (409 if that version already has one) (operator)
    POST /api/rollouts/<id>/pause {"reason"?}, /api/rollouts/<id>/resume  (operator; 409 if not in that state)
    GET  /api/versions          {"points": [{"at", "versions": {version: boxes}}]}: the chart's data
    GET  /api/journal           the operators' journal, newest first (admin)
    GET  /api/accounts, POST /api/accounts {"name", "role", "password"}  (admin)
    GET  /api/health            {"status": "ok", "connected": bool}
    GET  /api/worker            this worker: {client_id, group, engine, connected, subscribed, received,
                                               batches, messages, failed_batches}
    GET  /reconciliation        the last ``comptoir reconcile --out`` report (``/api/reconciliation``: JSON)
"""

from __future__ import annotations

import html
import json
import re
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sync.backoffice.accounts import SESSION_SECONDS, AccountError, Accounts, LoginRefused, Session, csrf_ok
from sync.commands import COMMAND_TYPES

if TYPE_CHECKING:
    from sync.backoffice.service import BackOffice

COOKIE = "comptoir_bo"
ROLLOUT_STATES = {"running": "en cours", "paused": "en pause", "done": "terminé"}
ACTION_NAMES = {
    "login": "connexion",
    "login.failed": "échec de connexion",
    "login.refused": "connexion refusée (compte verrouillé)",
    "logout": "déconnexion",
    "account.added": "compte ajouté",
    "rollout.started": "déploiement démarré",
    "rollout.paused": "déploiement mis en pause",
    "rollout.resumed": "déploiement repris",
    "command.sent": "commande envoyée",
}
DETAIL_NAMES = {
    "id": "n°",
    "url": "paquet",
    "name": "compte",
    "role": "rôle",
    "failures": "échecs",
    "locked_until": "verrouillé jusqu'à",
    "reason": "motif",
    "device": "poste",
}
ROLE_NAMES = {"viewer": "lecture", "operator": "opérateur", "admin": "administrateur"}
CHART_COLOURS = ("#1f6feb", "#d97706", "#059669", "#b91c1c", "#7c3aed", "#0e7490", "#a16207", "#be185d")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make the browser send "Origin: null"
    "Cache-Control": "no-store",
}
STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.5em;margin:0}"
    "h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse}"
    "th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;font-size:.92em}th{background:#eee}"
    "tr.off td{color:#888}tr.paused td{background:#fdecea}.ok{color:#05762f}.ko{color:#b42318}"
    "header{display:flex;justify-content:space-between;align-items:center;margin-bottom:1em}"
    "form.inline{display:inline}form.filters label{margin-right:1em}input[type=number]{width:5em}"
    "button{cursor:pointer}.msg{padding:.4em .8em;background:#fff4ce;border:1px solid #e0c060}"
    ".login{max-width:22em;margin:4em auto}.login label{display:block;margin:.6em 0}"
    ".login input{width:100%;padding:.3em}#start-form{margin-top:.8em}.caption{color:#555;font-size:.9em}"
)


def _when(value: Any) -> str:
    return time.strftime("%d/%m/%Y %H:%M", time.localtime(float(value))) if value else "—"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --- filters


def filter_fleet(fleet: list[dict[str, Any]], query: dict[str, str], now: float) -> list[dict[str, Any]]:
    """The boxes the filters keep: ``etat`` online/offline, ``version``, ``file`` (outbox deeper than N),
    ``vu`` (last seen more than N minutes ago, or never), ``rejets`` (with recent rejects)."""
    out = fleet
    state = query.get("etat", "")
    if state in ("online", "offline"):
        out = [d for d in out if d["online"] is (state == "online")]
    if query.get("version"):
        out = [d for d in out if d["version"] == query["version"]]
    depth = _int(query.get("file"))
    if depth is not None:
        out = [d for d in out if (d["outbox_depth"] or 0) > depth]
    minutes = _int(query.get("vu"))
    if minutes is not None:
        out = [d for d in out if not d["last_seen"] or float(d["last_seen"]) < now - 60 * minutes]
    if query.get("rejets"):
        out = [d for d in out if d["rejections"]]
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


# --- the chart of versions over time


def version_points(changes: list[dict[str, Any]], now: float, buckets: int = 8) -> list[dict[str, Any]]:
    """Boxes per version at ``buckets`` instants from the first change recorded to ``now``."""
    if not changes:
        return []
    start = float(changes[0]["at"])
    span = max(now - start, 1.0)
    points = []
    for n in range(buckets):
        at = start + span * (n + 1) / buckets
        current: dict[str, str] = {}
        for change in changes:
            if float(change["at"]) <= at:
                current[str(change["device"])] = str(change["version"])
        counts: dict[str, int] = {}
        for version in current.values():
            counts[version] = counts.get(version, 0) + 1
        points.append({"at": at, "versions": dict(sorted(counts.items()))})
    return points


def version_chart(points: list[dict[str, Any]]) -> str:
    """Stacked bars, one per instant, a colour per version, with its legend (inline SVG)."""
    if not points:
        return "<p>Aucune version relevée pour l'instant.</p>"
    versions = sorted({v for p in points for v in p["versions"]}, key=_version_key)
    colour = {v: CHART_COLOURS[i % len(CHART_COLOURS)] for i, v in enumerate(versions)}
    width, height, left, bottom, top = 640, 240, 40, 30, 10
    plot_h = height - bottom - top
    most = max(sum(p["versions"].values()) for p in points) or 1
    slot = (width - left - 10) / len(points)
    span = points[-1]["at"] - points[0]["at"]
    fmt = "%H:%M" if span < 12 * 3600 else "%d/%m %Hh" if span < 7 * 86400 else "%d/%m"
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'"
        " aria-label='Versions du parc dans le temps' id='versions-chart'>",
        f"<line x1='{left}' y1='{top + plot_h}' x2='{width - 10}' y2='{top + plot_h}' stroke='#888'/>",
        f"<text x='{left - 6}' y='{top + 10}' font-size='11' text-anchor='end'>{most}</text>",
        f"<text x='{left - 6}' y='{top + plot_h}' font-size='11' text-anchor='end'>0</text>",
    ]
    for i, point in enumerate(points):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        for version in versions:
            count = point["versions"].get(version, 0)
            if not count:
                continue
            h = plot_h * count / most
            y -= h
            parts.append(
                f"<rect x='{x:.1f}' y='{y:.1f}' width='{slot * 0.7:.1f}' height='{h:.1f}' fill='{colour[version]}'"
                f" data-version='{_e(version)}'><title>{_e(version)} : {count} poste(s)</title></rect>"
            )
        label = time.strftime(fmt, time.localtime(point["at"]))
        parts.append(
            f"<text x='{x + slot * 0.35:.1f}' y='{height - 12}' font-size='11' text-anchor='middle'>{label}</text>"
        )
    parts.append("</svg>")
    legend = "".join(
        f"<span style='margin-right:1.2em'><span style='display:inline-block;width:.9em;height:.9em;"
        f"background:{colour[v]};vertical-align:middle'></span> {_e(v)}</span>"
        for v in versions
    )
    return "".join(parts) + f"<p class='legend'>{legend}</p>"


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-]", version))


# --- pages


def _document(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<meta name='viewport' content='width=device-width'><style>{STYLE}</style></head><body>{body}</body></html>"
    )


def login_page(message: str = "") -> str:
    notice = f"<p class='msg' id='message'>{_e(message)}</p>" if message else ""
    return _document(
        "comptoir — connexion",
        "<div class='login'><h1>Parc comptoir</h1><h2>Connexion</h2>" + notice + "<form method='post' action='/login'>"
        "<label>Identifiant <input name='name' id='name' autocomplete='username' required autofocus></label>"
        "<label>Mot de passe <input name='password' id='password' type='password'"
        " autocomplete='current-password' required></label>"
        "<button type='submit' id='login'>Se connecter</button></form></div>",
    )


def _rejections(d: dict[str, Any]) -> str:
    return "; ".join(
        f"lot {r.get('batch')} FSE {r.get('claim')} : {r.get('reason')}"
        if r["kind"] == "claim"
        else f"commande {r.get('type')} : {r.get('reason')}"
        for r in d["rejections"][:3]
    )


def _filters(fleet: list[dict[str, Any]], query: dict[str, str]) -> str:
    versions = sorted({str(d["version"]) for d in fleet if d["version"]}, key=_version_key)

    def option(value: str, label: str, current: str) -> str:
        selected = " selected" if value == current else ""
        return f"<option value='{_e(value)}'{selected}>{_e(label)}</option>"

    state = query.get("etat", "")
    version = query.get("version", "")
    return (
        "<form class='filters' method='get' action='/' id='filters'>"
        "<label>État <select name='etat' id='f-etat'>"
        + option("", "tous", state)
        + option("online", "en ligne", state)
        + option("offline", "hors ligne", state)
        + "</select></label><label>Version <select name='version' id='f-version'>"
        + option("", "toutes", version)
        + "".join(option(v, v, version) for v in versions)
        + "</select></label>"
        f"<label>File d'envoi &gt; <input type='number' min='0' name='file' id='f-file'"
        f" value='{_e(query.get('file', ''))}'></label>"
        f"<label>Vu il y a plus de <input type='number' min='0' name='vu' id='f-vu'"
        f" value='{_e(query.get('vu', ''))}'> min</label>"
        "<label><input type='checkbox' name='rejets' value='1' id='f-rejets'"
        + (" checked" if query.get("rejets") else "")
        + "> avec rejets</label>"
        "<button type='submit' id='f-apply'>Filtrer</button> <a href='/'>Tout afficher</a></form>"
    )


def _boxes(shown: list[dict[str, Any]], total: int) -> str:
    rows = []
    for d in shown:
        online = "<span class='ok'>en ligne</span>" if d["online"] else "<span class='ko'>hors ligne</span>"
        cells = (
            _e(d["device"]),
            online,
            _e(d["version"] or "—"),
            _e("—" if d["outbox_depth"] is None else d["outbox_depth"]),
            _e(_when(d["last_seen"])),
            _e(_when(d["last_sync"])),
            _e(_rejections(d) or "—"),
        )
        css = "" if d["online"] else " class='off'"
        rows.append(f"<tr{css} data-device='{_e(d['device'])}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    body = "".join(rows) or "<tr><td colspan='7'>Aucun poste ne correspond.</td></tr>"
    return (
        f"<p id='count'>{len(shown)} poste(s) sur {total}</p>"
        "<table id='boxes'><tr><th>Poste</th><th>État</th><th>Version</th><th>File d'envoi</th>"
        "<th>Vu le</th><th>Dernière synchro</th><th>Rejets récents</th></tr>" + body + "</table>"
    )


def _rollouts(rollouts: list[dict[str, Any]], session: Session | None) -> str:
    may = session is not None and session.may("operator")
    csrf = f"<input type='hidden' name='csrf' value='{_e(session.csrf)}'>" if session is not None else ""
    rows = []
    for r in rollouts:
        state = ROLLOUT_STATES.get(r["state"], r["state"])
        if r["paused_reason"]:
            state = f"{state} : {r['paused_reason']}"
        action = ""
        if may and r["state"] in ("running", "paused"):
            verb, label = ("pause", "Mettre en pause") if r["state"] == "running" else ("resume", "Reprendre")
            action = (
                f"<form class='inline' method='post' action='/rollouts/{int(r['id'])}/{verb}'>{csrf}"
                f"<button type='submit' id='{verb}-{int(r['id'])}'>{label}</button></form>"
            )
        cells = (
            _e(r["version"]),
            _e(state),
            _e(f"{r['stage'] + 1} ({r['share']:.0%} du parc)"),
            _e(r["offered"]),
            _e(r["succeeded"]),
            _e(r["failed"]),
        )
        css = " class='paused'" if r["state"] == "paused" else ""
        rows.append(
            f"<tr{css} data-rollout='{int(r['id'])}' data-state='{_e(r['state'])}'>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + (f"<td>{action}</td>" if may else "")
            + "</tr>"
        )
    table = (
        "<table id='rollouts'><tr><th>Version</th><th>État</th><th>Étape</th><th>Proposés</th><th>Réussis</th>"
        "<th>Échoués</th>" + ("<th>Action</th>" if may else "") + "</tr>" + "".join(rows) + "</table>"
        if rows
        else "<p>Aucun déploiement.</p>"
    )
    start = ""
    if may:
        start = (
            "<form method='post' action='/rollouts' id='start-form'>" + csrf + "<label>Version "
            "<input name='version' id='r-version' required size='10'></label> "
            "<label>Adresse du paquet <input name='url' id='r-url' required size='40' type='url'></label> "
            "<button type='submit' id='start'>Démarrer le déploiement</button></form>"
        )
    return "<h2>Déploiements</h2>" + table + start


def _detail(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        if value is None:
            continue
        if key == "locked_until":
            value = time.strftime("%H:%M", time.localtime(float(value)))
        elif key == "role":
            value = ROLE_NAMES.get(str(value), value)
        parts.append(f"{DETAIL_NAMES.get(key, key)} {value}")
    return ", ".join(parts) or "—"


def _journal(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    rows = "".join(
        f"<tr data-action='{_e(e['action'])}'><td>{_e(_when(e['at']))}</td><td>{_e(e['account'] or '—')}</td>"
        f"<td>{_e(ACTION_NAMES.get(e['action'], e['action']))}</td><td>{_e(_detail(e['detail']))}</td></tr>"
        for e in entries
    )
    return (
        "<h2>Journal</h2><table id='journal'><tr><th>Quand</th><th>Qui</th><th>Action</th><th>Détail</th></tr>"
        + rows
        + "</table>"
    )


def page(
    fleet: list[dict[str, Any]],
    rollouts: list[dict[str, Any]] | None = None,
    *,
    session: Session | None = None,
    query: dict[str, str] | None = None,
    points: list[dict[str, Any]] | None = None,
    journal: list[dict[str, Any]] | None = None,
    message: str = "",
    now: float | None = None,
) -> str:
    """The fleet page (``session`` None: read-only, as for a viewer)."""
    query = query or {}
    now = time.time() if now is None else now
    shown = filter_fleet(fleet, query, now)
    who = ""
    if session is not None:
        who = (
            f"<div id='who'>{_e(session.account)} ({_e(ROLE_NAMES.get(session.role, session.role))}) "
            f"<form class='inline' method='post' action='/logout'><input type='hidden' name='csrf'"
            f" value='{_e(session.csrf)}'><button type='submit' id='logout'>Se déconnecter</button></form></div>"
        )
    notice = f"<p class='msg' id='message'>{_e(message)}</p>" if message else ""
    return _document(
        "comptoir — parc",
        f"<header><h1>Parc comptoir</h1>{who}</header>"
        + notice
        + "<h2>Postes</h2>"
        + _filters(fleet, query)
        + _boxes(shown, len(fleet))
        + _rollouts(rollouts or [], session)
        + "<h2>Versions dans le temps</h2><p class='caption'>Postes par version, du premier relevé à maintenant.</p>"
        + version_chart(points or [])
        + _journal(journal or [])
        + "<p><a href='/reconciliation'>Rapprochement des paiements</a></p>",
    )


MESSAGES = {
    "started": "Déploiement démarré.",
    "paused": "Déploiement mis en pause.",
    "resumed": "Déploiement repris.",
}


def handler(backoffice: BackOffice) -> type[BaseHTTPRequestHandler]:
    accounts = Accounts(backoffice.web_store or backoffice.store)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def _html(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", headers)

        def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
            self._send(303, b"", "text/plain", {"Location": where, **(headers or {})})

        # --- sessions

        def _token(self) -> str | None:
            cookie = SimpleCookie()
            try:
                cookie.load(self.headers.get("Cookie") or "")
            except Exception:
                return None
            morsel = cookie.get(COOKIE)
            return morsel.value if morsel is not None else None

        def _session(self) -> Session | None:
            return accounts.session(self._token())

        def _cookie(self, token: str, max_age: int) -> str:
            secure = backoffice.settings.secure_cookies or self.headers.get("X-Forwarded-Proto") == "https"
            flags = "; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
            return f"{COOKIE}={token}; Path=/; Max-Age={max_age}{flags}"

        def _refuse(self, api: bool) -> None:
            if api:
                self._json(401, {"error": "connexion requise"})
            else:
                self._redirect("/login")

        def _same_origin(self) -> bool:
            origin = self.headers.get("Origin")
            if not origin or origin == "null":
                return origin is None
            return urlsplit(origin).netloc == (self.headers.get("Host") or "")

        # --- GET

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/login":
                self._html(200, login_page())
                return
            session = self._session()
            if session is None:
                self._refuse(url.path.startswith("/api/"))
                return
            store = backoffice.store
            if url.path == "/":
                now = time.time()
                self._html(
                    200,
                    page(
                        store.fleet(),
                        backoffice.rollouts.list(),
                        session=session,
                        query=query,
                        points=version_points(store.version_changes(), now),
                        journal=accounts.entries(10) if session.may("operator") else [],
                        message=MESSAGES.get(query.get("ok", ""), query.get("erreur", "")[:200]),
                        now=now,
                    ),
                )
            elif url.path == "/api/session":
                self._json(200, {"account": session.account, "role": session.role, "csrf": session.csrf})
            elif url.path == "/api/fleet":
                self._json(200, {"devices": filter_fleet(store.fleet(), query, time.time())})
            elif url.path == "/api/events":
                self._json(200, {"events": store.events(query.get("device"), query.get("stream", "events"))})
            elif url.path == "/api/commands":
                self._json(200, {"commands": store.commands(query.get("device"))})
            elif url.path == "/api/rollouts":
                self._json(200, {"rollouts": backoffice.rollouts.list()})
            elif url.path == "/api/versions":
                self._json(200, {"points": version_points(store.version_changes(), time.time())})
            elif url.path in ("/api/journal", "/api/accounts"):
                if not session.may("admin"):
                    self._json(403, {"error": "réservé aux administrateurs"})
                elif url.path == "/api/journal":
                    self._json(200, {"journal": accounts.entries(500)})
                else:
                    self._json(200, {"accounts": accounts.list()})
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

        # --- POST

        def _body(self) -> bytes:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 16)
            return self.rfile.read(length) if length > 0 else b""

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            api = path.startswith("/api/")
            try:
                raw = self._body()
            except ValueError:
                self._json(400, {"error": "bad Content-Length"})
                return
            if not self._same_origin():
                self._json(403, {"error": "requête d'un autre site refusée"})
                return
            if path == "/login":
                self._login(raw)
                return
            session = self._session()
            if session is None:
                self._refuse(api)
                return
            if api:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"error": "JSON expected"})
                    return
                if not isinstance(body, dict):
                    self._json(400, {"error": "JSON object expected"})
                    return
                given = self.headers.get("X-CSRF-Token")
            else:
                body = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
                given = body.get("csrf")
            if not csrf_ok(session, given):
                self._json(403, {"error": "jeton CSRF absent ou faux"})
                return
            if path == "/logout":
                token = self._token()
                if token:
                    accounts.logout(token)
                self._redirect("/login", {"Set-Cookie": self._cookie("", 0)})
                return
            need = "admin" if path == "/api/accounts" else "operator"
            if not session.may(need):
                self._json(403, {"error": f"droit « {ROLE_NAMES[need]} » requis"})
                return
            if path == "/api/accounts":
                self._add_account(session, body)
            elif path == "/api/commands":
                self._command(session, body)
            elif path in ("/api/rollouts", "/rollouts"):
                self._start_rollout(session, body, api)
            elif (match := re.fullmatch(r"(/api)?/rollouts/([0-9]+)/(pause|resume)", path)) is not None:
                self._pause_or_resume(session, int(match.group(2)), match.group(3), body, api)
            else:
                self._json(404, {"error": "not found"})

        def _login(self, raw: bytes) -> None:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            try:
                token, _ = accounts.login(form.get("name", "")[:64], form.get("password", "")[:1024])
            except LoginRefused as exc:
                message = "Identifiant ou mot de passe incorrect."
                if exc.until is not None:
                    until = time.strftime("%H:%M", time.localtime(exc.until))
                    message = f"Trop d'essais : compte verrouillé jusqu'à {until}."
                self._html(401, login_page(message))
                return
            self._redirect("/", {"Set-Cookie": self._cookie(token, SESSION_SECONDS)})

        def _done(self, api: bool, status: int, body: dict[str, Any], ok: str) -> None:
            if api:
                self._json(status, body)
            elif status >= 400:
                self._redirect("/?" + urlencode({"erreur": body.get("error", "erreur")}))
            else:
                self._redirect(f"/?ok={ok}")

        def _add_account(self, session: Session, body: dict[str, Any]) -> None:
            try:
                name, role, password = (str(body.get(k, "")) for k in ("name", "role", "password"))
                accounts.add(name, role, password, by=session.account)
            except AccountError as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(201, {"name": body["name"]})

        def _command(self, session: Session, body: dict[str, Any]) -> None:
            device, kind = body.get("device"), body.get("type")
            if not isinstance(device, str) or device.count("/") != 1 or kind not in COMMAND_TYPES:
                self._json(400, {"error": f"device '<pharmacy>/<device>' and type in {list(COMMAND_TYPES)} expected"})
                return
            args = body.get("args") if isinstance(body.get("args"), dict) else {}
            ident = backoffice.send_command(device, kind, args, ttl=float(body.get("ttl", 3600.0)))
            accounts.journal(session.account, "command.sent", {"id": ident, "device": device, "type": kind})
            self._json(202, {"id": ident})

        def _start_rollout(self, session: Session, body: dict[str, Any], api: bool) -> None:
            version, url = body.get("version"), body.get("url")
            if not isinstance(version, str) or not version or not isinstance(url, str) or not url:
                self._done(api, 400, {"error": "version et adresse du paquet attendues"}, "")
                return
            try:
                ident = backoffice.rollouts.start(version.strip(), url.strip(), time.time())
            except ValueError as exc:
                self._done(api, 409, {"error": f"déjà un déploiement de {version} ({exc})"}, "")
                return
            accounts.journal(session.account, "rollout.started", {"id": ident, "version": version, "url": url})
            self._done(api, 201, {"id": ident}, "started")

        def _pause_or_resume(self, session: Session, ident: int, verb: str, body: dict[str, Any], api: bool) -> None:
            try:
                if verb == "pause":
                    reason = str(body.get("reason") or f"mis en pause par {session.account}")[:200]
                    backoffice.rollouts.pause(ident, reason, time.time())
                else:
                    backoffice.rollouts.resume(ident, time.time())
            except ValueError as exc:
                self._done(api, 409, {"error": str(exc)}, "")
                return
            accounts.journal(session.account, f"rollout.{'paused' if verb == 'pause' else 'resumed'}", {"id": ident})
            self._done(api, 200, {"id": ident}, "paused" if verb == "pause" else "resumed")

    return Handler
