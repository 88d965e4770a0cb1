"""Training: option groups and presets, the loop every training stage runs, its trackers, the recipe
the stages share, task sampling and gradient balancing."""
