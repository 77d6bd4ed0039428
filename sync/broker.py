"""The back-office broker's configuration (mosquitto 2.0), rendered from one place.

``sync/mosquitto/comptoir.conf`` is this rendering with the production paths (a test keeps the two
equal) and ``sync/mosquitto/acl`` is the access list, used verbatim by the tests and the benchmark.
Why each setting:

- ``require_certificate`` + ``use_identity_as_username``: mutual TLS is the only way in; the
  certificate's common name (``<pharmacy>/<device>`` for a box, ``backoffice`` for the back office)
  becomes the MQTT user the ACL is written for. No passwords to leak or rotate on boxes.
- ``allow_anonymous false`` and the ACL: anything not granted is denied (mosquitto 2.0 answers a
  denied MQTT 5 publish with PUBACK "Not authorized", which the box treats as not delivered).
- ``persistence`` with ``autosave_on_changes`` every 1,000 changes: the retained states, sessions and
  queued messages survive a clean restart. A crash loses at most the changes since the last save,
  and none of them for good: a box marks an event delivered only when the back office acknowledged it
  end to end (it sends it again otherwise), clients subscribe again on each connection, and the back
  office sends unanswered commands again when a box comes online.
- ``max_queued_messages 0`` (no limit) and ``max_queued_bytes`` bounded in bytes: mosquitto's default
  of 1000 queued messages per offline client would silently drop the events of a fleet while the
  back office is down, after each box had them acknowledged and forgot them.
- ``max_inflight_messages``: QoS 1 messages in flight towards one client; the back office commits
  them in batches before acknowledging, so it needs more than the default 20.
- ``set_tcp_nodelay``: small messages go out at once instead of waiting for delayed ACKs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "mosquitto"
SHIPPED_CONF = SHIPPED_DIR / "comptoir.conf"
SHIPPED_ACL = SHIPPED_DIR / "acl"


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker finds its TLS material, ACL and persistence directory."""

    ca: Path
    cert: Path
    key: Path
    acl: Path
    persistence_dir: Path


PRODUCTION = BrokerFiles(
    ca=Path("/etc/mosquitto/comptoir/ca.crt"),
    cert=Path("/etc/mosquitto/comptoir/broker.crt"),
    key=Path("/etc/mosquitto/comptoir/broker.key"),
    acl=Path("/etc/mosquitto/comptoir/acl"),
    persistence_dir=Path("/var/lib/mosquitto"),
)


def render_config(
    files: BrokerFiles,
    *,
    port: int = 8883,
    bind: str | None = None,
    run_as: str | None = None,
    log_dest: str = "syslog",
    max_inflight: int = 1000,
    autosave_changes: int = 1000,
) -> str:
    """The mosquitto configuration text for ``files``; ``bind`` limits the listener to one address
    (tests: 127.0.0.1), ``run_as`` is the account mosquitto drops to when started as root.

    ``autosave_changes``: mosquitto rewrites its whole persistence file after this many changes
    (retained messages, subscriptions, queued messages). Each save costs in proportion to the broker's
    state, so saving often is quadratic in the fleet size: with 1, bench/sync.py measured that one
    mosquitto could not even connect 2,000 boxes in minutes (bench/README.md). What a crash loses
    between two saves is recovered end to end (see the module docstring), so the shipped value is
    1,000; the tests' killed broker runs with it.
    """
    listener = f"listener {port} {bind}" if bind else f"listener {port}"
    lines = [
        "# comptoir back-office broker (mosquitto 2.0): mutual TLS, one user per certificate, ACL.",
        "# Rendered by sync/broker.py (render_config); see its docstring for why each setting.",
        "per_listener_settings false",
        *([f"user {run_as}"] if run_as else []),
        "allow_anonymous false",
        f"acl_file {files.acl}",
        "persistence true",
        f"persistence_location {files.persistence_dir}/",
        f"autosave_interval {autosave_changes}",
        "autosave_on_changes true",
        "max_queued_messages 0",
        "max_queued_bytes 1073741824",
        f"max_inflight_messages {max_inflight}",
        "set_tcp_nodelay true",
        f"log_dest {log_dest}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
        listener,
        "protocol mqtt",
        f"cafile {files.ca}",
        f"certfile {files.cert}",
        f"keyfile {files.key}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        "",
    ]
    return "\n".join(lines)
