"""Importing a library without the optional heavy packages it would pick up only because they are installed.

sqlite-utils imports numpy (and pandas) at import time when they are present, to map their scalar types to
column types. The counter never stores a numpy value, yet the import costs the kiosk about 20 MB of resident
memory and 100 ms of start-up; numpy is installed for the camera driver, which a box without a camera never
loads (``ui/production.py``). Refusing those imports while the library itself is imported leaves the library
on its documented "not installed" path, and leaves numpy importable by anyone who needs it afterwards.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class RefuseImports(importlib.abc.MetaPathFinder):
    """Answers "not installed" for the named top-level packages (and their submodules), once placed first
    on ``sys.meta_path``: the process then sees the packages as if they were not installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} left out on purpose", name=fullname)
        return None


def import_without(module: str, *, optional: Sequence[str]) -> ModuleType:
    """Import ``module`` as if ``optional`` packages were not installed, unless it is already imported.

    A package someone already imported stays in use (refusing it then would change nothing but the
    library's behaviour). Only the import of ``module`` itself is affected; the refusal is removed after.
    """
    if module in sys.modules:
        return sys.modules[module]
    refused = [name for name in optional if name not in sys.modules]
    finder = RefuseImports(refused)
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module(module)
    finally:
        sys.meta_path.remove(finder)
