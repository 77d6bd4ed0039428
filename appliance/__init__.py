"""comptoir core: domain model, counter workflow, code parsers, store, audit, CLI.

The core imports no UI, hardware or network library at module level; adapters
(`drivers`, `ui`, `sync`) depend on it, never the reverse.
"""

__version__ = "0.1.0"
