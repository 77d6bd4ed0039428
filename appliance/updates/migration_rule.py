"""The rule that lets the previous release run on a migrated database, and its checker.

Why: an update migrates the database *before* it switches to the new code (the old release is still
running), and a failed health check or a power cut rolls the box back to the previous release
*without* undoing the migration (claims written by the new release in between are financial
records: they must not be lost by restoring a snapshot). So the previous release must run on the
new schema. The rule that guarantees it — **expand only**:

A migration may only

1. ``CREATE TABLE`` / ``CREATE VIEW`` a new object (``CREATE TABLE … AS SELECT`` included);
2. ``CREATE INDEX`` on any table — but ``CREATE UNIQUE INDEX`` only on a table created in the same
   migration (a new uniqueness on an old table could make the old code's inserts fail), or on columns
   all added in the same migration, nullable and without a ``DEFAULT``: the old code never writes them,
   so its rows hold NULL there, and SQLite never counts two NULLs as duplicates;
3. ``CREATE TRIGGER`` only on a table created in the same migration (a trigger on an old table could
   make the old code's writes fail or change what they do);
4. ``ALTER TABLE … ADD COLUMN`` with a column the old code can ignore: nullable, or with a
   ``DEFAULT`` (old inserts do not name it); no ``REFERENCES`` to a new table, no ``CHECK`` that the
   default would fail (SQLite refuses that anyway);
5. ``INSERT`` / ``UPDATE`` / ``DELETE`` only rows of a table created in the same migration, and
   ``INSERT`` (never ``UPDATE``/``DELETE``) into the ``pharmacy`` settings table.

Never: ``DROP`` anything, ``ALTER TABLE … RENAME`` (table or column), ``ALTER TABLE … DROP COLUMN``,
``PRAGMA`` (``user_version`` is :func:`~appliance.store.database.migrate`'s job), ``ATTACH``,
``VACUUM``, changes to old rows, ``REPLACE`` / ``INSERT OR REPLACE`` (a delete in disguise).

And on the code side: name the columns in every ``INSERT`` and never unpack ``SELECT *`` rows by
position (a test greps the core for positional inserts).

A contraction (dropping or renaming what an old release still uses) is done in two releases: release
N stops using the object (expand only), release N+k — once no box can roll back below N — drops it.
Such a migration is listed in :data:`CONTRACTIONS` with the oldest release schema that can still run
on it; it writes ``schema.readable_from`` in ``pharmacy`` (see :mod:`appliance.updates.compat`) and
the agent refuses a roll-back below it. The list is empty: no contraction has shipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.store.database import Migration, split_statements

CONTRACTIONS: dict[int, str] = {}
"""Migration version -> why it may break older readers. Each entry needs a review; empty so far."""

SETTINGS_TABLE = "pharmacy"

_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"(?:{_IDENT}\s*\.\s*)?({_IDENT})"


@dataclass(frozen=True, slots=True)
class Violation:
    """One statement that breaks the rule: where, what and why."""

    version: int
    name: str
    statement: str
    reason: str

    def __str__(self) -> str:
        short = " ".join(self.statement.split())[:100]
        return f"migration {self.version} ({self.name}): {self.reason}: {short}"


def _strip_comments(sql: str) -> str:
    """Remove ``-- …`` and ``/* … */`` comments outside string literals."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _name(raw: str) -> str:
    return raw.strip('"`[]').lower()


def _match(pattern: str, text: str) -> re.Match[str] | None:
    return re.match(pattern, text, re.IGNORECASE | re.DOTALL)


def _column_clause_problem(column_def: str) -> str | None:
    """Why an ``ADD COLUMN`` definition would break old inserts, or None."""
    text = column_def.upper()
    has_default = re.search(r"\bDEFAULT\b", text) is not None
    if re.search(r"\bNOT\s+NULL\b", text) and not has_default:
        return "ADD COLUMN NOT NULL without a DEFAULT (old inserts do not name the column)"
    if re.search(r"\bPRIMARY\s+KEY\b|\bUNIQUE\b", text):
        return "ADD COLUMN with PRIMARY KEY or UNIQUE"
    if re.search(r"\bREFERENCES\b", text) and re.search(r"\bNOT\s+NULL\b", text):
        return "ADD COLUMN NOT NULL REFERENCES (old inserts cannot fill it)"
    return None


def check_statement(
    statement: str, *, new_tables: set[str], known_tables: set[str], new_columns: set[str] | None = None
) -> str | None:
    """Why ``statement`` breaks the rule (None when it is allowed). ``new_tables`` (tables created
    earlier in the same migration) grows as ``CREATE TABLE`` statements are seen; ``new_columns``
    (``table.column`` added earlier in the same migration, nullable and without a default) as
    ``ADD COLUMN`` statements are."""
    added = new_columns if new_columns is not None else set()
    sql = " ".join(_strip_comments(statement).split()).rstrip(";").strip()
    if not sql:
        return None
    m = _match(rf"CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}", sql)
    if m:
        table = _name(m.group(1))
        if table in known_tables:
            return f"CREATE TABLE {table} again: it exists in an earlier migration (a re-creation is a rename/drop)"
        new_tables.add(table)
        return None
    if _match(r"CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?VIEW\s", sql):
        return None
    m = _match(rf"CREATE\s+(UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}\s+ON\s+{_QUALIFIED}", sql)
    if m:
        table = _name(m.group(3))
        if m.group(1) and table not in new_tables and not _only_new_columns(sql[m.end() :], table, added):
            return "CREATE UNIQUE INDEX on a table of an earlier migration (old inserts could fail)"
        return None
    m = _match(
        rf"CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}\s+.*?\bON\s+{_QUALIFIED}",
        sql,
    )
    if m:
        if _name(m.group(2)) not in new_tables:
            return "CREATE TRIGGER on a table of an earlier migration (old writes could fail or change meaning)"
        return None
    m = _match(rf"ALTER\s+TABLE\s+{_QUALIFIED}\s+ADD\s+(?:COLUMN\s+)?(.*)$", sql)
    if m:
        problem = _column_clause_problem(m.group(2))
        column = _match(rf"({_IDENT})", m.group(2))
        if problem is None and column and not re.search(r"\bDEFAULT\b|\bNOT\s+NULL\b", m.group(2), re.IGNORECASE):
            added.add(f"{_name(m.group(1))}.{_name(column.group(1))}")
        return problem
    if _match(r"ALTER\s+TABLE\s", sql):
        return "ALTER TABLE other than ADD COLUMN (RENAME or DROP COLUMN break the previous release)"
    if _match(r"DROP\s", sql):
        return "DROP (the previous release may still use it; contract in a later release)"
    m = _match(rf"(?:INSERT|REPLACE)(\s+OR\s+\w+)?\s+INTO\s+{_QUALIFIED}", sql)
    if m:
        table = _name(m.group(2))
        replaces = sql.upper().startswith("REPLACE") or bool(m.group(1) and "REPLACE" in m.group(1).upper())
        if replaces and table not in new_tables:
            return "REPLACE into a table of an earlier migration (deletes old rows)"
        if table in new_tables or table == SETTINGS_TABLE:
            return None
        return "INSERT into a table of an earlier migration (old code does not expect those rows)"
    m = _match(rf"(?:UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+{_QUALIFIED}", sql)
    if m:
        if _name(m.group(1)) in new_tables:
            return None
        return "UPDATE/DELETE of rows of an earlier migration's table"
    if _match(r"WITH\s", sql):
        return "WITH … statement (a data change the checker cannot classify)"
    if _match(r"PRAGMA\s", sql):
        return "PRAGMA in a migration (user_version is migrate()'s job; settings belong to connect())"
    if _match(r"(ATTACH|DETACH|VACUUM|REINDEX|ANALYZE)\b", sql):
        return "maintenance statement in a migration"
    return "statement not recognised by the expand-only checker"


def _only_new_columns(rest: str, table: str, added: set[str]) -> bool:
    """Whether the index's column list (``rest`` starts at it) names only plain columns of ``table``
    added in this migration (no expression: its value could be non-NULL on old rows)."""
    m = _match(r"\s*\(([^()]*)\)", rest)
    if not m:
        return False
    columns = [c.strip() for c in m.group(1).split(",")]
    plain = [re.fullmatch(rf"({_IDENT})(?:\s+(?:ASC|DESC))?", c, re.IGNORECASE) for c in columns]
    return all(p is not None and f"{table}.{_name(p.group(1))}" in added for p in plain)


def check_migrations(migrations: Sequence[Migration], *, exempt: Iterable[int] = ()) -> list[Violation]:
    """Every violation of the expand-only rule in ``migrations`` (in order), except the versions in
    ``exempt`` (defaults to none; pass :data:`CONTRACTIONS` keys for a reviewed contraction)."""
    skip = set(exempt)
    known: set[str] = set()
    problems: list[Violation] = []
    for migration in migrations:
        new_tables: set[str] = set()
        new_columns: set[str] = set()
        for statement in split_statements(migration.sql):
            reason = check_statement(statement, new_tables=new_tables, known_tables=known, new_columns=new_columns)
            if reason is not None and migration.version not in skip:
                problems.append(Violation(migration.version, migration.name, statement, reason))
        known |= new_tables
    return problems


def readable_from(migrations: Sequence[Migration]) -> int:
    """The oldest schema version whose code can run on the schema these migrations produce:
    1 while there is no contraction, else the highest contraction's declared floor."""
    floor = 1
    for migration in migrations:
        if migration.version in CONTRACTIONS:
            floor = max(floor, migration.version)
    return floor
