"""famevil: FAME-ViL on open_clip. `famevil.load(DIR)` opens a trained model for use (famevil.api)."""

from famevil.api import FashionModel, load

__all__ = ["FashionModel", "load"]
