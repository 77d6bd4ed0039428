"""``comptoir backoffice``: run one back-office worker until SIGTERM or Ctrl-C.

With ``--config FILE`` (or ``$COMPTOIR_BACKOFFICE_CONFIG``) everything comes from the TOML file
(:mod:`sync.backoffice.config`); without it, the flags of the development back office (SQLite file,
one worker, web page on 127.0.0.1) still work. Exit status 0 stopped, 1 the database could not be
opened (systemd starts it again), 2 bad usage or configuration (including a database schema newer
than this release).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sync.backoffice.accounts import ROLES, AccountError, Accounts
from sync.backoffice.config import CONFIG_ENV, ConfigError, database_target, load_config
from sync.backoffice.migrations import SchemaError
from sync.backoffice.service import BackOffice, BackOfficeSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``comptoir backoffice``."""
    parser = subparsers.add_parser("backoffice", help="run a back-office worker (MQTT, database, web page)")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None,
        help=f"TOML configuration (default: ${CONFIG_ENV}); without it, the flags below",
    )
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=8883, help="broker TLS port")
    parser.add_argument("--ca", type=Path, help="fleet CA (PEM)")
    parser.add_argument("--cert", type=Path, help="back office certificate (CN backoffice)")
    parser.add_argument("--key", type=Path, help="its private key")
    parser.add_argument("--signing-key", type=Path, help="Ed25519 private key signing commands (PEM)")
    parser.add_argument("--db", type=Path, default=Path("backoffice.db"), help="the back office's SQLite file")
    parser.add_argument("--http-port", type=int, default=8780, help="web page port on 127.0.0.1")
    parser.add_argument("--reports", type=Path, help="directory of the last `comptoir reconcile --out` report")
    parser.set_defaults(func=cmd_backoffice)
    actions = parser.add_subparsers(title="accounts", metavar="account add NAME --role ROLE")
    account = actions.add_parser("account", help="the web page's operator accounts")
    account_actions = account.add_subparsers(required=True, metavar="add")
    add = account_actions.add_parser(
        "add", help="add an operator account (the password from a prompt, or one line of standard input)"
    )
    add.add_argument("name", help="account name (lower-case letters, digits, '.', '_', '-')")
    add.add_argument(
        "--role", required=True, choices=ROLES, help="viewer reads; operator also runs roll-outs; admin also accounts"
    )
    add.add_argument("--config", dest="account_config", metavar="FILE", type=Path, help="the worker's TOML")
    add.add_argument("--db", dest="account_db", metavar="FILE", type=Path, help="or the SQLite file, without --config")
    add.set_defaults(func=cmd_account_add)


def _settings_from_flags(args: argparse.Namespace) -> BackOfficeSettings:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    missing = [f"--{n.replace('_', '-')}" for n in ("ca", "cert", "key", "signing_key") if getattr(args, n) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required without --config")
    signing = load_pem_private_key(args.signing_key.read_bytes(), password=None)
    if not isinstance(signing, Ed25519PrivateKey):
        raise ConfigError("--signing-key must be an Ed25519 private key")
    return BackOfficeSettings(
        args.host, args.port, args.ca, args.cert, args.key, args.db, signing, args.http_port, reports=args.reports
    )


def cmd_backoffice(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config) if args.config is not None else _settings_from_flags(args)
        office = BackOffice(settings)
    except (ConfigError, SchemaError) as exc:
        print(f"comptoir backoffice: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception as exc:  # the database is unreachable or refused us: psycopg or sqlite3 says why
        print(f"comptoir backoffice: cannot open the database: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    office.start()
    where = f"fleet page on {office.url}" if settings.http_port is not None else "no web page"
    group = f", shared subscription group {settings.group!r}" if settings.group else ""
    print(
        f"comptoir backoffice: worker {settings.client_id} on {office.store.dialect}{group}; {where}"
        " (SIGTERM or Ctrl-C to stop)",
        flush=True,
    )
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        office.stop()
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _read_password() -> str:
    """From a prompt (twice) on a terminal, else the first line of standard input: never from argv."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Mot de passe : ")
        if getpass.getpass("Le même, encore : ") != first:
            raise AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _account_store_target(args: argparse.Namespace) -> Path | str:
    """The database of ``--config`` (or ``$COMPTOIR_BACKOFFICE_CONFIG``), else ``--db``."""
    import tomllib

    config: Path | None = args.account_config or args.config
    if config is None:
        db: Path = args.account_db or args.db
        return db
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config}: {exc}") from None
    from sync.backoffice.config import _Table

    table = data.get("database", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{config}: [database] must be a table")
    return database_target(_Table("database", table, config.resolve().parent), "comptoir-backoffice-account")


def cmd_account_add(args: argparse.Namespace) -> int:
    from sync.backoffice.store import BackOfficeStore

    try:
        target = _account_store_target(args)
        password = _read_password()
        store = BackOfficeStore(target)
    except (ConfigError, SchemaError, AccountError) as exc:
        print(f"comptoir backoffice account: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception as exc:
        print(f"comptoir backoffice account: cannot open the database: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    try:
        Accounts(store).add(args.name, args.role, password, by=f"cli:{os.environ.get('USER', '?')}")
    except AccountError as exc:
        print(f"comptoir backoffice account: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    finally:
        store.close()
    print(f"comptoir backoffice account: {args.name} added ({args.role})", flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m sync.backoffice [options]``: the same as ``comptoir backoffice [options]``."""
    parser = argparse.ArgumentParser(prog="python -m sync.backoffice")
    register(parser.add_subparsers())
    args = parser.parse_args(["backoffice", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status
