"""Experiment trackers for training runs (`--report-to`): Accelerate's own for TensorBoard and Weights &
Biases, and a CSV file. They receive the scalars metrics.jsonl records, under the run's directory."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from accelerate.tracking import GeneralTracker

from data_specs.errors import FamevilError

TRACKERS = ("tensorboard", "wandb", "csv", "none")
CSV_FILE = "metrics.csv"
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


class CsvTracker(GeneralTracker):
    """One row per scalar: step, name, value (long format, since tasks log different names)."""

    name = "csv"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: Path):
        super().__init__()
        self.path = Path(logging_dir) / CSV_FILE

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        """The options are in train_config.json already."""

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            rows = csv.writer(handle)
            if new:
                rows.writerow(["step", "name", "value"])
            rows.writerows([step, name, value] for name, value in values.items())


def trackers(report_to: list[str], directory: Path) -> list:
    """What Accelerator(log_with=...) takes for the asked trackers; one line when one cannot run here."""
    chosen = []
    for name in dict.fromkeys(report_to):
        if name not in TRACKERS:
            raise FamevilError(f"--report-to {name}: unknown tracker; choose from {', '.join(TRACKERS)}")
        if name == "none":
            continue
        if name in _PACKAGES and not any(importlib.util.find_spec(package) for package in _PACKAGES[name]):
            raise FamevilError(f"--report-to {name}: needs the {_PACKAGES[name][0]} package; pip install {_PACKAGES[name][0]}")
        chosen.append(CsvTracker(name, directory) if name == "csv" else name)
    return chosen


def scalars(record: dict) -> dict[str, float]:
    """A metrics.jsonl record as flat scalar names ("validation/xmr.full.mean"), without its step."""
    flat = {}
    for name, value in record.items():
        if name == "step":
            continue
        if isinstance(value, dict):
            flat |= {f"{name}/{inner}": v for inner, v in value.items() if isinstance(v, (int, float))}
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat
