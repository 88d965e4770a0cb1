"""Training: option groups and presets (the loops live in stages/)."""
