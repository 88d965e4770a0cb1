"""The layout of a `metrics` artifact, written by `famevil evaluate` and read by report, export and
distill (IAS targets).

    EVAL/
      metrics.json                  {"schema_version", "metrics": {task: {...}}, "warnings": [...]}
      retrieval.jsonl, captions.jsonl, classifications.jsonl   the predictions behind the metrics
      manifest.json                 kind "metrics"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact

METRICS_FILE = "metrics.json"
METRICS_SCHEMA_VERSION = 1


def metrics_payload(metrics: dict[str, Any], warnings: list[str]) -> str:
    """metrics.json's text."""
    return json.dumps({"schema_version": METRICS_SCHEMA_VERSION, "metrics": metrics, "warnings": warnings}, indent=2) + "\n"


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"xmr": {"full": {"i2t_r1": x}}} -> {"xmr.full.i2t_r1": x}"""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        flat |= flatten(value, name + ".") if isinstance(value, dict) else {name: value}
    return flat


def read_metrics(directory: Path) -> dict[str, Any]:
    """The metrics of an evaluation artifact."""
    require_artifact(directory, "metrics")
    payload = json.loads((directory / METRICS_FILE).read_text(encoding="utf-8"))
    if payload.get("schema_version") != METRICS_SCHEMA_VERSION:
        raise FamevilError(f"{directory / METRICS_FILE}: unknown schema_version; rerun famevil evaluate")
    return payload["metrics"]
