"""famevil: FAME-ViL on open_clip. `famevil.load(DIR)` opens a trained model for use (famevil.api).

Importing famevil is light: torch comes with famevil.api, on the first use of `load` or `FashionModel`.
The errors a user sees are `FamevilError` and `FamevilWarning`.
"""

import importlib

from data_specs.errors import FamevilError, FamevilWarning

__all__ = ["FamevilError", "FamevilWarning", "FashionModel", "load"]
_FROM_API = ("FashionModel", "load")


def __getattr__(name: str):
    if name in _FROM_API:
        value = getattr(importlib.import_module("famevil.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
