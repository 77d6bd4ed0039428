"""The counter's durable store (DESIGN §5): SQLite in WAL mode with versioned migrations, a hash-chained
audit journal, operators with personal PINs, the outbox, gapless numbering, sealed identity fields
and encrypted backups.

The domain tables and the workflow are built on top of these pieces; this package knows nothing of
claims or patients beyond "a sealed field" and "a number series". It imports no UI, hardware or
network library, and opens nothing at import time.
"""

from __future__ import annotations

from appliance.store.database import (
    Migration,
    StoreError,
    migrate,
    open_database,
    schema_version,
    transaction,
)

__all__ = ["Migration", "StoreError", "migrate", "open_database", "schema_version", "transaction"]
