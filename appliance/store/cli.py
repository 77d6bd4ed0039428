"""Store commands for installers and support: ``audit verify``, ``backup``, ``restore``, ``operator add``,
``operator unlock``, ``key create``.

:func:`register` adds them to the ``comptoir`` command (``appliance/cli.py``); ``python -m
appliance.store.cli`` runs them alone. ``--db`` and ``--key`` default to the environment variables
``COMPTOIR_DB`` and ``COMPTOIR_KEY`` (set in the systemd units), so an operator at the box types less.

Exit status: 0 done / chain intact; 1 refused or failed (the reason on stderr; for ``audit verify``
the problems on stdout); 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.domain import Role
from appliance.store import audit
from appliance.store.backup import backup, restore
from appliance.store.database import StoreError, open_database
from appliance.store.operators import (
    InvalidPin,
    UnknownOperator,
    add_operator,
    clear_lock,
    operator_by_name,
    operator_by_rpps,
    set_rpps,
)
from appliance.store.sealing import FieldCipher

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DB_ENV, KEY_ENV = "COMPTOIR_DB", "COMPTOIR_KEY"

CommandHandler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A required option is missing from both the command line and the environment."""


def _path(value: Path | None, env: str, option: str) -> Path:
    if value is not None:
        return value
    from_env = os.environ.get(env)
    if not from_env:
        raise UsageError(f"{option} is required (or set {env})")
    return Path(from_env)


def _optional_key(value: Path | None) -> Path | None:
    if value is not None:
        return value
    from_env = os.environ.get(KEY_ENV)
    return Path(from_env) if from_env else None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit chain of a database without changing it (read-only, no migration): the keyed
    hashes (with the key file), the append-only triggers, and the anchors (``--anchor`` from the back
    office, and the last one the back office acknowledged)."""
    anchor = audit.Anchor.parse(args.anchor) if args.anchor else None
    key_file = _optional_key(args.key)
    key = audit.load_key(key_file) if key_file is not None else None
    db = open_database(_path(args.db, DB_ENV, "--db"), readonly=True)
    try:
        report = audit.verify(db, key=key, anchor=anchor)
    finally:
        db.close()
    if report.ok:
        anchored = (
            f"; matches the {' and '.join(report.anchors_checked)} anchor"
            if report.anchors_checked
            else "; NOT anchored: give --anchor <head-hash>:<count> from the back office to rule out truncation"
        )
        print(
            f"audit journal intact: {report.rows_checked} rows ({report.keyed_rows} keyed), "
            f"head {report.head_hash}:{report.rows_checked}{anchored}"
        )
        return EXIT_OK
    where = f"first broken seq {report.first_broken_seq}" if report.first_broken_seq is not None else "problems"
    print(f"audit journal BROKEN ({report.rows_checked} rows); {where}:")
    for problem in report.problems:
        print(f"  - {problem}")
    return EXIT_FAILED


def cmd_backup(args: argparse.Namespace) -> int:
    """Write one encrypted backup and print its path (for the scheduled unit's log)."""
    target = backup(_path(args.db, DB_ENV, "--db"), _path(args.key, KEY_ENV, "--key"), args.to)
    print(target)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup over the database, after checking it."""
    db_path = _path(args.db, DB_ENV, "--db")
    restore(args.file, _path(args.key, KEY_ENV, "--key"), db_path)
    print(f"restored {db_path} from {args.file}")
    return EXIT_OK


def _read_pin(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("PIN (4 to 8 digits): ")
    second = getpass.getpass("PIN again: ")
    if first != second:
        raise InvalidPin("the two PINs differ")
    return first


def cmd_operator_add(args: argparse.Namespace) -> int:
    """Create an operator with a personal PIN (typed twice, never on the command line)."""
    db_path = _path(args.db, DB_ENV, "--db")
    pin = _read_pin(args.pin_stdin)
    db = open_database(db_path, key_file=_optional_key(args.key))
    try:
        if args.rpps and operator_by_rpps(db, args.rpps) is not None:
            raise ValueError(f"RPPS {args.rpps} is already the CPS of another operator")
        operator_id = add_operator(db, args.name, Role(args.role), pin)
        if args.rpps:
            set_rpps(db, operator_id, args.rpps, by=None)
    finally:
        db.close()
    print(f"operator {operator_id} added ({args.role})")
    return EXIT_OK


def cmd_operator_unlock(args: argparse.Namespace) -> int:
    """Lift an operator's PIN lock and reset their wrong-PIN count (support, or a locked-out titulaire)."""
    db = open_database(_path(args.db, DB_ENV, "--db"), key_file=_optional_key(args.key))
    try:
        operator = operator_by_name(db, args.name)
        if operator is None:
            raise UnknownOperator(f"no active operator named {args.name!r}")
        cleared = clear_lock(db, operator.id, by=None, reason=args.reason)
    finally:
        db.close()
    print(f"operator {operator.id} ({operator.name}) {'unlocked' if cleared else 'was not locked'}")
    return EXIT_OK


def cmd_key_create(args: argparse.Namespace) -> int:
    """Create the key file at installation (refuses to overwrite one)."""
    key_path = _path(args.key, KEY_ENV, "--key")
    FieldCipher.create_key(key_path)
    print(f"key file created: {key_path} (escrow a copy apart from the backups)")
    return EXIT_OK


def _guarded(handler: CommandHandler) -> CommandHandler:
    """Turn the store's refusals into a message on stderr and an exit status, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"comptoir: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (StoreError, InvalidPin, ValueError, OSError, sqlite3.Error) as exc:
            print(f"comptoir: {exc}", file=sys.stderr)
            return EXIT_FAILED

    run.__doc__ = handler.__doc__
    return run


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the store commands to a parser's subcommands; each sets ``func`` to its handler."""
    db_help = f"database file (default: ${DB_ENV})"
    key_help = f"key file (default: ${KEY_ENV})"

    audit_parser = subparsers.add_parser("audit", help="the audit journal")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check the hash chain; exit 1 if tampered")
    verify.add_argument("--db", type=Path, help=db_help)
    verify.add_argument("--key", type=Path, help=key_help + "; checks the keyed rows")
    verify.add_argument(
        "--anchor", metavar="HEAD:COUNT", help="the journal's head as the back office recorded it (<head-hash>:<count>)"
    )
    verify.set_defaults(func=_guarded(cmd_audit_verify))

    backup_parser = subparsers.add_parser("backup", help="write an encrypted backup of the database")
    backup_parser.add_argument("--db", type=Path, help=db_help)
    backup_parser.add_argument("--key", type=Path, help=key_help)
    backup_parser.add_argument("--to", type=Path, required=True, help="directory to write the backup into")
    backup_parser.set_defaults(func=_guarded(cmd_backup))

    restore_parser = subparsers.add_parser("restore", help="check a backup and put it in place of the database")
    restore_parser.add_argument("file", type=Path, help="backup file (.cbk)")
    restore_parser.add_argument("--db", type=Path, help=db_help)
    restore_parser.add_argument("--key", type=Path, help=key_help)
    restore_parser.set_defaults(func=_guarded(cmd_restore))

    operator_parser = subparsers.add_parser("operator", help="people at the counter")
    operator_commands = operator_parser.add_subparsers(dest="operator_command", required=True)
    add = operator_commands.add_parser("add", help="add an operator with a personal PIN")
    add.add_argument("--db", type=Path, help=db_help)
    add.add_argument("--key", type=Path, help=key_help + "; keys the audit row")
    add.add_argument("--name", required=True)
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    add.add_argument("--pin-stdin", action="store_true", help="read the PIN from one line of stdin (scripts)")
    add.add_argument("--rpps", help="the operator's RPPS number (11 digits), for the CPS and e-CPS logins")
    add.set_defaults(func=_guarded(cmd_operator_add))
    unlock = operator_commands.add_parser("unlock", help="lift a PIN lock and reset the wrong-PIN count")
    unlock.add_argument("name", help="the operator's name (any case)")
    unlock.add_argument("--db", type=Path, help=db_help)
    unlock.add_argument("--key", type=Path, help=key_help + "; keys the audit row")
    unlock.add_argument("--reason", default="comptoir operator unlock", help="why, for the audit journal")
    unlock.set_defaults(func=_guarded(cmd_operator_unlock))

    key_parser = subparsers.add_parser("key", help="the key file")
    key_commands = key_parser.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create the key file (never overwrites)")
    create.add_argument("--key", type=Path, help=key_help)
    create.set_defaults(func=_guarded(cmd_key_create))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one store command on its own (``python -m appliance.store.cli``)."""
    parser = argparse.ArgumentParser(prog="comptoir", description=__doc__.splitlines()[0] if __doc__ else None)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
