"""``comptoir release …`` (release engineer) and ``comptoir update …`` (on a box).

:func:`register` adds both to the ``comptoir`` command (``appliance/cli.py``); ``python -m
appliance.updates.cli`` runs them alone. The TUF client and systemd adapters are imported inside the
commands that need them (``sync.update_agent``).

Box settings come from options or the environment set by the units: ``COMPTOIR_DB``,
``COMPTOIR_BOX_ID``, ``COMPTOIR_UPDATE_URL`` (the repository's base URL: ``metadata/`` and
``targets/`` below it), ``COMPTOIR_UPDATE_CA`` (CA bundle), ``COMPTOIR_UPDATE_CERT`` /
``COMPTOIR_UPDATE_KEY`` (client certificate for mutual TLS), ``COMPTOIR_UPDATE_ROOT`` (a layout below
one directory instead of the real paths; tests and image builds).

Exit status: 0 done (or nothing to do), 1 refused/aborted/rolled back, 2 bad usage.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.updates.layout import Layout

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


# -- release ------------------------------------------------------------------------------------


def cmd_release_keys(args: argparse.Namespace) -> int:
    from appliance.updates.repository import generate_keys

    _print(generate_keys(args.keys))
    return EXIT_OK


def cmd_release_init(args: argparse.Namespace) -> int:
    from appliance.updates.repository import Repository

    Repository(args.repo, args.keys).init()
    print(f"repository initialised in {args.repo}; give {args.repo / 'metadata' / '1.root.json'} to new boxes")
    return EXIT_OK


def cmd_release_build(args: argparse.Namespace) -> int:
    from appliance.store.migrations import MIGRATIONS
    from appliance.updates.archive import build_archive, build_project_wheel
    from appliance.updates.migration_rule import CONTRACTIONS, check_migrations, readable_from

    problems = check_migrations(MIGRATIONS, exempt=CONTRACTIONS)
    if problems:
        for problem in problems:
            print(f"comptoir release build: {problem}", file=sys.stderr)
        return EXIT_FAILED
    work = args.out / ".wheels"
    project_wheel = build_project_wheel(args.source, work, version=args.version)
    wheels = [project_wheel]
    for house in args.wheelhouse:
        wheels += sorted(p for p in house.glob("*.whl") if not p.name.startswith("comptoir-"))
    path, manifest = build_archive(
        args.out,
        version=args.version,
        wheels=wheels,
        schema_version=MIGRATIONS[-1].version,
        reads_schema_from=readable_from(MIGRATIONS),
        binary_dependencies=args.binary_dependency,
    )
    _print({"archive": str(path), "size": path.stat().st_size, "wheels": len(manifest.wheels)})
    return EXIT_OK


def cmd_release_publish(args: argparse.Namespace) -> int:
    from appliance.updates.repository import Repository

    _print(Repository(args.repo, args.keys).publish(args.archive, channel=args.channel))
    return EXIT_OK


def cmd_release_timestamp(args: argparse.Namespace) -> int:
    from appliance.updates.repository import Repository

    print(Repository(args.repo, args.keys).refresh_timestamp())
    return EXIT_OK


def cmd_release_rotate(args: argparse.Namespace) -> int:
    from appliance.updates.repository import Repository

    print(Repository(args.repo, args.keys).rotate_key(args.role, args.new_key))
    return EXIT_OK


# -- update (on a box) ----------------------------------------------------------------------------


def _layout(args: argparse.Namespace) -> Layout:
    root = args.root or os.environ.get("COMPTOIR_UPDATE_ROOT")
    return Layout.under(Path(root)) if root else Layout.default()


def _agent(args: argparse.Namespace, *, with_source: bool) -> tuple[Any, Any]:
    from appliance.updates.agent import UpdateAgent, UpdateConfig
    from appliance.updates.events import OutboxStageReporter

    layout = _layout(args)
    db = Path(args.db or os.environ.get("COMPTOIR_DB", "/var/lib/comptoir/data/comptoir.db"))
    config = UpdateConfig(
        layout=layout,
        db_path=db,
        box_id=os.environ.get("COMPTOIR_BOX_ID", "unknown"),
        health_deadline=float(args.health_deadline),
    )
    source = None
    if with_source:
        from sync.update_agent import TufArchiveSource, TufSettings

        url = (args.url or os.environ.get("COMPTOIR_UPDATE_URL", "")).rstrip("/")
        if not url:
            raise SystemExit("comptoir update: --url or COMPTOIR_UPDATE_URL is required")
        env = os.environ.get
        source = TufArchiveSource(
            TufSettings(
                metadata_url=f"{url}/metadata/",
                targets_url=f"{url}/targets/",
                metadata_dir=layout.tuf_metadata,
                ca_file=Path(env("COMPTOIR_UPDATE_CA", "")) if env("COMPTOIR_UPDATE_CA") else None,
                client_cert=Path(env("COMPTOIR_UPDATE_CERT", "")) if env("COMPTOIR_UPDATE_CERT") else None,
                client_key=Path(env("COMPTOIR_UPDATE_KEY", "")) if env("COMPTOIR_UPDATE_KEY") else None,
            )
        )
    from sync.update_agent import SystemctlRestarter

    agent = UpdateAgent(config, source=source, restarter=SystemctlRestarter(), reporter=OutboxStageReporter(db))
    return agent, source


def _locked(layout: Layout) -> int:
    layout.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.state / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit("comptoir update: another update is running") from None
    return fd


def cmd_update_install(args: argparse.Namespace) -> int:
    from sync.update_agent import handle_update_offer

    agent, _ = _agent(args, with_source=args.archive is None)
    _locked(agent.layout)
    if args.archive is not None:
        outcome = agent.install(args.version, archive=args.archive)
    else:
        outcome = handle_update_offer(agent, {"version": args.version, "offer_id": "cli"})
    _print(outcome.to_json())
    return EXIT_OK if outcome.result in ("committed", "noop") else EXIT_FAILED


def _take_offer(db_path: Path) -> dict[str, Any] | None:
    """The update offer the back office sent over MQTT (stored by the sync process), removed once taken:
    the timer's run installs it before looking at the channel, so an offer is acted on within one period."""
    import json

    from appliance.store.database import get_setting, open_database, transaction
    from sync.commands import UPDATE_OFFER_SETTING

    if not db_path.exists():
        return None
    db = open_database(db_path)
    try:
        raw = get_setting(db, UPDATE_OFFER_SETTING)
        if raw is None:
            return None
        with transaction(db) as conn:
            conn.execute("DELETE FROM pharmacy WHERE key = ?", (UPDATE_OFFER_SETTING,))
        offer: dict[str, Any] = json.loads(raw)
        return offer
    finally:
        db.close()


def cmd_update_check(args: argparse.Namespace) -> int:
    from sync.update_agent import check_channel, handle_update_offer

    agent, source = _agent(args, with_source=True)
    _locked(agent.layout)
    offer = _take_offer(agent.config.db_path)
    if offer is not None:
        outcome = handle_update_offer(agent, {"version": offer.get("version"), "offer_id": offer.get("command")})
    else:
        outcome = check_channel(agent, source, args.channel)
    _print(outcome.to_json())
    return EXIT_OK if outcome.result in ("committed", "noop") else EXIT_FAILED


def cmd_update_recover(args: argparse.Namespace) -> int:
    agent, _ = _agent(args, with_source=False)
    _locked(agent.layout)
    outcome = agent.recover(restart=args.restart)
    _print(None if outcome is None else outcome.to_json())
    return EXIT_OK


def cmd_update_status(args: argparse.Namespace) -> int:
    from appliance.updates.agent import journal_status

    _print(journal_status(_layout(args)))
    return EXIT_OK


def cmd_update_provision(args: argparse.Namespace) -> int:
    agent, _ = _agent(args, with_source=False)
    _locked(agent.layout)
    if args.trusted_root is not None:
        agent.layout.tuf_metadata.mkdir(parents=True, exist_ok=True)
        (agent.layout.tuf_metadata / "root.json").write_bytes(args.trusted_root.read_bytes())
    _print(agent.provision(args.archive).to_json())
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``release`` and ``update`` to ``comptoir``'s sub-commands."""
    release = subparsers.add_parser("release", help="build, sign and publish releases (TUF)")
    rel = release.add_subparsers(dest="release_command", required=True)
    p = rel.add_parser("keys", help="create one Ed25519 key per TUF role")
    p.add_argument("--keys", type=Path, required=True)
    p.set_defaults(func=cmd_release_keys)
    p = rel.add_parser("init", help="create a repository (root v1, empty targets)")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--keys", type=Path, required=True)
    p.set_defaults(func=cmd_release_init)
    p = rel.add_parser("build", help="build comptoir-<version>.tar from the source tree and wheelhouses")
    p.add_argument("--version", required=True)
    p.add_argument("--out", type=Path, default=Path("dist"))
    p.add_argument("--source", type=Path, default=Path("."))
    p.add_argument("--wheelhouse", type=Path, action="append", default=[], help="dependency wheels (repeatable)")
    p.add_argument("--binary-dependency", action="append", default=[], help="provided by the image, not a wheel")
    p.set_defaults(func=cmd_release_build)
    p = rel.add_parser("publish", help="add an archive to the repository and sign targets/snapshot/timestamp")
    p.add_argument("archive", type=Path)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--keys", type=Path, required=True)
    p.add_argument("--channel", help="move this channel (e.g. stable) to the release")
    p.set_defaults(func=cmd_release_publish)
    p = rel.add_parser("timestamp", help="re-sign timestamp.json (online key)")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--keys", type=Path, required=True)
    p.set_defaults(func=cmd_release_timestamp)
    p = rel.add_parser("rotate", help="replace a role's key in a new root version")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--keys", type=Path, required=True)
    p.add_argument("--role", required=True, choices=["root", "targets", "snapshot", "timestamp"])
    p.add_argument("--new-key", type=Path, required=True)
    p.set_defaults(func=cmd_release_rotate)

    update = subparsers.add_parser("update", help="the box's update agent")
    upd = update.add_subparsers(dest="update_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--root", type=Path, help="box layout below this directory (default: real paths)")
        q.add_argument("--db", type=Path, help="database (default: $COMPTOIR_DB)")
        q.add_argument("--url", help="repository base URL (default: $COMPTOIR_UPDATE_URL)")
        q.add_argument("--health-deadline", type=float, default=120.0, help="seconds for the health check")

    p = upd.add_parser("install", help="install a version offered by the back office (verified through TUF)")
    p.add_argument("version")
    p.add_argument("--archive", type=Path, help="an archive already verified (support use)")
    common(p)
    p.set_defaults(func=cmd_update_install)
    p = upd.add_parser("check", help="install what the channel points to, if newer (the timer)")
    p.add_argument("--channel", default="stable")
    common(p)
    p.set_defaults(func=cmd_update_check)
    p = upd.add_parser("recover", help="finish or undo an interrupted install (boot)")
    p.add_argument("--restart", action="store_true", help="restart the units after a roll-back")
    common(p)
    p.set_defaults(func=cmd_update_recover)
    p = upd.add_parser("status", help="current, good and installed releases, last journal entries")
    common(p)
    p.set_defaults(func=cmd_update_status)
    p = upd.add_parser("provision", help="first installation of a box from an archive")
    p.add_argument("archive", type=Path)
    p.add_argument("--trusted-root", type=Path, help="the repository's root.json to trust")
    common(p)
    p.set_defaults(func=cmd_update_provision)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comptoir")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
