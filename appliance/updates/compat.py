"""Opening a database that a newer release may already have migrated (the roll-back case).

:func:`appliance.store.database.open_database` does it: it accepts a newer file when its
``schema.readable_from`` setting (absent: 1, nothing was ever contracted) is at or below what the code
knows, and migrates it forward otherwise. The names below are kept for the update hooks.
"""

from __future__ import annotations

from appliance.store.database import READABLE_FROM_KEY, SchemaState, schema_state
from appliance.store.database import open_database as open_compatible

__all__ = ["READABLE_FROM_KEY", "SchemaState", "open_compatible", "schema_state"]
