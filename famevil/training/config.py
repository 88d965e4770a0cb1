"""Training options: one dataclass, presets as JSON files beside it, any field overridable by name.

A run saves the resolved options it used, so the preset file changing later changes no record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from data_specs.errors import FamevilError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "famevil-small"  # open_clip architecture of the backbone
    tsa_bottleneck: int = 64  # task-specific adapters (paper: 64)
    xaa_bottleneck: int = 64  # cross-attention adapters, a setting of their own
    batch_size: int = 32  # per process; the global batch is this x processes x accumulation
    gradient_accumulation: int = 1  # micro-batches per optimiser update
    max_steps: int = 300  # optimiser updates
    warmup_steps: int = 30  # linear warm-up from 0, then the schedule
    schedule: str = "cosine"  # "cosine" to 0, or "step": x0.1 at each of decay_steps
    decay_steps: tuple[int, ...] = ()  # with schedule "step"
    lr_backbone: float = 1e-5  # CLIP's own weights
    lr_adapters: float = 1e-3  # adapters and heads: 100x the backbone's, as in the paper
    weight_decay: float = 1e-5
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    mixed_precision: str = "no"  # "no" or "bf16" (GPUs)
    batches_per_epoch: int = 100  # per process: the data stream is endless, epochs are for reshuffling and resume
    eval_every: int = 100  # updates between validations, and one at the end; 0: none, the last weights are kept
    checkpoint_every: int = 100  # updates between resumable states (checkpoints/step-N); the last step always saves one
    keep_checkpoints: int = 2  # resumable states kept (the newest); the best weights are kept apart
    early_stopping: int = 0  # validations without improvement before stopping; 0 never stops
    workers: int = 0  # data-loader worker processes per training process
    seed: int = 0  # initialisation, data order and augmentation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"decay_steps": list(self.decay_steps)}


PRESET_NAMES = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.json")))


def load_config(preset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A preset by name (or a JSON file of the same fields), then overrides, each checked by name and type."""
    path = Path(preset) if preset.endswith(".json") else PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        raise FamevilError(f"--preset {preset!r}: no such preset; choose one of {', '.join(PRESET_NAMES)} or a .json file")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FamevilError(f"{path}: malformed JSON at line {error.lineno} ({error.msg})") from None
    return _apply(TrainConfig(), {**values, **(overrides or {})}, str(path))


def _apply(config: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    known = {field.name: field for field in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise FamevilError(f"{source}: unknown training option {unknown[0]!r}; the options are: {', '.join(known)}")
    converted = {}
    for name, value in values.items():
        default = getattr(config, name)
        try:
            converted[name] = tuple(int(v) for v in value) if isinstance(default, tuple) else type(default)(value)
        except (TypeError, ValueError):
            raise FamevilError(f"{source}: option {name!r} = {value!r} is not a {type(default).__name__}") from None
    resolved = replace(config, **converted)
    if resolved.schedule not in ("cosine", "step"):
        raise FamevilError(f"{source}: schedule {resolved.schedule!r} is not one of cosine, step")
    if resolved.mixed_precision not in ("no", "bf16"):
        raise FamevilError(f"{source}: mixed_precision {resolved.mixed_precision!r} is not one of no, bf16")
    return resolved


def parse_overrides(assignments: list[str]) -> dict[str, str]:
    """`--set name=value` pairs; values stay strings until the dataclass converts them."""
    overrides = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            raise FamevilError(f"--set {assignment!r}: expected NAME=VALUE, for example --set max_steps=50")
        overrides[name.strip()] = value.split(",") if "," in value else value
    return overrides
