"""The optional packages (pyproject.toml's extras), imported where first needed: a missing one is one
line naming what needs it and how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType

from data_specs.errors import FamevilError


def optional_module(name: str, needed_by: str, package: str, install: str) -> ModuleType:
    """The module `name`; else FamevilError "NEEDED_BY needs PACKAGE: INSTALL"."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise FamevilError(f"{needed_by} needs {package}: {install}") from None
