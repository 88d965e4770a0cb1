"""Training options: one dataclass, presets as JSON files beside it, any field overridable by name.

A run saves the resolved options it used, so the preset file changing later changes no record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from data_specs.errors import FamevilError, did_you_mean
from famevil.limits import GRADIENT_ACCUMULATION, KEEP_CHECKPOINTS, LOADER_WORKERS, SEED, TRAINING_BATCH, Range
from famevil.model.adapter_config import ADAPTER_LIMITS, ADAPTER_OPTIONS, AdapterConfig

PRESET_DIR = Path(__file__).parent / "presets"
SET_SOURCE = "--set"  # the source of values typed on the command line; any other source is a preset file's path


@dataclass(frozen=True)
class TrainConfig:
    model: str = "famevil-small"  # open_clip architecture of the backbone
    # The adapters' six options, each set by its own name (--set tsa_bottleneck=128; famevil.model.adapter_config).
    adapters: AdapterConfig = AdapterConfig()
    # XMR's and TGIR's learnt logit scale: "log", stored as its log like CLIP's, or "squared", the authors' s x s
    # with s from 4; the form sets how far it can travel in a run (famevil.model.heads.Temperature).
    retrieval_scale: Literal["log", "squared"] = "log"
    # The cross-attention adapters' last projection at the start: "zero", the authors' (the model starts as
    # its backbone), or "default", PyTorch's initialisation, so that the other stream's gradient flows from
    # the first update; the demo's from-scratch captioner reads the image far sooner (docs/captioning.md).
    xaa_init: Literal["zero", "default"] = "zero"
    # How the heads start: "backbone", from the backbone's weights where a head has a counterpart (the
    # captioning head from the token embedding; it learns in far fewer updates, docs/fidelity.md row 2b),
    # or "default", PyTorch's initialisation, as the authors' code does.
    head_init: Literal["backbone", "default"] = "backbone"
    batch_size: int = 32  # per process; the global batch is this x processes x accumulation
    gradient_accumulation: int = 1  # micro-batches per optimiser update
    max_steps: int = 300  # optimiser updates
    warmup_steps: int = 30  # linear warm-up, then the schedule
    warmup_start: float = 0.0  # the learning rate's factor where warm-up starts (the authors' student: 0.25)
    schedule: Literal["cosine", "step"] = "cosine"  # "cosine" to 0, or "step": x0.1 at each of decay_steps
    decay_steps: tuple[int, ...] = ()  # with schedule "step"
    lr_backbone: float = 1e-5  # CLIP's own weights
    lr_adapters: float = 1e-3  # adapters and heads: 100x the backbone's, as in the paper
    weight_decay: float = 1e-5
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    # None: Accelerate's choice (`accelerate launch --mixed_precision`, `accelerate config`; "no" if neither)
    mixed_precision: Literal["no", "bf16", "fp16"] | None = None
    batches_per_epoch: int = 100  # per process: the data stream is endless, epochs are for reshuffling and resume
    eval_every: int = 100  # updates between validations, and one at the end; 0: none, the last weights are kept
    checkpoint_every: int = 100  # updates between resumable states (checkpoints/step-N); the last step always saves one
    keep_checkpoints: int = 2  # resumable states kept (the newest); the best weights are kept apart
    early_stopping: int = 0  # validations without improvement before stopping; 0 never stops
    # What picks the best weights by validation: "headlines", the mean of the tasks' headline metrics;
    # "authors", the authors' criterion (a teacher by its task's metric in their config: XMR's full-gallery
    # mean, TGIR's R@K average, SCR's accuracy, FIC's BLEU-4; a multi-task model by TGIR's R@K average);
    # or one validation metric by its flattened name, e.g. "tgir.mean".
    select_by: str = "headlines"
    head_vocabulary: Literal["full", "training"] = "full"  # a language-model head writes any token, or only the training text's (cheaper; evaluation unchanged)
    augment: bool = True  # random crops and flips; off: the evaluation transform, the view teachers' outputs are dumped from
    workers: int = 0  # data-loader worker processes per training process
    seed: int = 0  # initialisation, data order and augmentation

    def to_dict(self) -> dict[str, Any]:
        """train_config.json: every option by the name --set takes, the adapters' among them."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        flat = {}
        for name, value in values.items():
            flat |= value.to_dict() if name == "adapters" else {name: value}
        return flat | {"decay_steps": list(self.decay_steps)}


def option_names() -> list[str]:
    """The training options by the names --set and presets take, in train_config.json's order."""
    return [name for item in fields(TrainConfig) for name in (ADAPTER_OPTIONS if item.name == "adapters" else (item.name,))]


# Each numeric option's range, None for no bound; checked before any work starts, since a value out of
# range would otherwise train nothing, publish an untrained or NaN model, or run out of memory late.
# Sizes have upper bounds (famevil.limits says why); counts of updates do not, since they cost only time.
LIMITS: dict[str, Range] = {
    **ADAPTER_LIMITS,
    "batch_size": Range.up_to(1, TRAINING_BATCH),
    "gradient_accumulation": Range.up_to(1, GRADIENT_ACCUMULATION),
    "max_steps": Range(1, None),
    "warmup_steps": Range(0, None),
    "warmup_start": Range(0.0, 1.0),
    "decay_steps": Range(1, None),
    "lr_backbone": Range(0.0, 1.0),
    "lr_adapters": Range(0.0, 1.0),
    "weight_decay": Range(0.0, 10.0),
    "adam_eps": Range(1e-12, 1.0),
    "grad_clip": Range(0.0, None),
    "batches_per_epoch": Range(1, None),
    "eval_every": Range(0, None),
    "checkpoint_every": Range(1, None),
    "keep_checkpoints": Range.up_to(1, KEEP_CHECKPOINTS),
    "early_stopping": Range(0, None),
    "workers": Range.up_to(0, LOADER_WORKERS),
    "seed": Range.up_to(0, SEED),
}

PRESET_NAMES = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.json")))


def load_config(preset: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A preset by name (or a JSON file of the same fields), then overrides, each checked by name and type."""
    path = Path(preset) if preset.endswith(".json") else PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        raise FamevilError(f"--preset {preset!r}: no such preset; choose one of {', '.join(PRESET_NAMES)} or a .json file")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FamevilError(f"{path}: malformed JSON at line {error.lineno} ({error.msg})") from None
    # Two passes, so that an error names where the bad value came from.
    from_preset = _apply(TrainConfig(), values, str(path))
    return _apply(from_preset, overrides or {}, SET_SOURCE)


def _apply(config: TrainConfig, values: Mapping[str, Any], source: str) -> TrainConfig:
    known = option_names()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise FamevilError(f"{source}: unknown training option {unknown[0]!r}{did_you_mean(unknown[0], known)}; the options are: {', '.join(known)}")
    adapter_values = {name: value for name, value in values.items() if name in ADAPTER_OPTIONS}
    converted = convert_options(TrainConfig, {name: value for name, value in values.items() if name not in ADAPTER_OPTIONS}, source)
    converted_adapters = convert_options(AdapterConfig, adapter_values, source)
    for name, value in (converted | converted_adapters).items():
        for item in value if isinstance(value, tuple) else (value,):
            _check_range(name, item, source)
    if converted_adapters:
        converted["adapters"] = replace(config.adapters, **converted_adapters)
    return replace(config, **converted)


def _check_range(name: str, value: Any, source: str) -> None:
    if name not in LIMITS or LIMITS[name].admits(value):
        return
    where = f"--set {name}={value}" if source == SET_SOURCE else f'{source}: "{name}": {json.dumps(value)}'
    raise FamevilError(f"{where}: {LIMITS[name].refusal(name, value)}")


def parse_overrides(assignments: list[str]) -> dict[str, str]:
    """`--set name=value` pairs; values stay strings until load_config converts them to each field's type."""
    overrides = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            raise FamevilError(f"--set {assignment!r}: expected NAME=VALUE, for example --set max_steps=50")
        overrides[name.strip()] = value
    return overrides


def convert_options(options: type, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Each value converted to the declared type of its field in the dataclass `options`.

    Declared types may be int, float, bool, str, a Literal of strings, tuple[X, ...] of those, and X | None.
    Values from --set (source SET_SOURCE) are strings; values from a JSON file (source: its path) come typed.
    """
    declared = get_type_hints(options)
    defaults = {field.name: field.default for field in fields(options)}
    return {name: _convert_option(name, value, declared[name], defaults[name], source) for name, value in values.items()}


def _convert_option(name: str, value: Any, declared: Any, default: Any, source: str) -> Any:
    try:
        return _convert(value, declared)
    except (TypeError, ValueError):
        raise FamevilError(_refusal(name, value, declared, default, source)) from None


def _refusal(name: str, value: Any, declared: Any, default: Any, source: str) -> str:
    """One line: where the value came from, what the option takes, and an example in the same syntax."""
    example = default if default not in (MISSING, None, ()) else _sample(declared)
    if source == SET_SOURCE:
        return f"--set {name}={value!r}: {name} takes {_in_words(declared)}, e.g. --set {name}={_as_set_text(example)}"
    return f'{source}: "{name}": {json.dumps(value)}: {name} takes {_in_words(declared)}, e.g. "{name}": {json.dumps(example)}'


def _convert(value: Any, declared: Any) -> Any:
    origin, args = get_origin(declared), get_args(declared)
    if origin in (Union, UnionType):
        return None if _means_none(value) else _convert(value, _optional_inner(declared))
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ValueError(value)
    if origin is tuple:  # tuple[X, ...]
        return tuple(_convert(item, args[0]) for item in _items(value))
    return _SCALARS[declared](value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool | float):  # int() would quietly turn true into 1 and 1.5 into 1
        raise TypeError(value)
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):  # no option means anything at nan or inf
        raise ValueError(value)
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise ValueError(value)  # bool() would take any non-empty text, "false" included, for true


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


_SCALARS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "true/false values"), str: ("text", "texts")}
_SAMPLES = {int: (20, 40), float: (0.5, 0.25), bool: (True, False), str: ("a", "b")}  # for fields whose default is no example


def _items(value: Any) -> list:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")] if value.strip() else []
    return list(value) if isinstance(value, list | tuple) else [value]


def _means_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _optional_inner(declared: Any) -> Any:
    """X from X | None."""
    return next(arg for arg in get_args(declared) if arg is not type(None))


def _in_words(declared: Any) -> str:
    origin, args = get_origin(declared), get_args(declared)
    if origin in (Union, UnionType):
        return f"{_in_words(_optional_inner(declared))} or none"
    if origin is Literal:
        return f"one of {', '.join(args)}"
    if origin is tuple:
        return f"a list of {_WORDS[args[0]][1]}"
    return _WORDS[declared][0]


def _sample(declared: Any) -> Any:
    origin, args = get_origin(declared), get_args(declared)
    if origin in (Union, UnionType):
        return _sample(_optional_inner(declared))
    if origin is Literal:
        return args[0]
    if origin is tuple:
        return _SAMPLES[args[0]]
    return _SAMPLES[declared][0]


def _as_set_text(value: Any) -> str:
    """A value as one would type it after --set NAME=."""
    if isinstance(value, tuple):
        return ",".join(_as_set_text(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)
