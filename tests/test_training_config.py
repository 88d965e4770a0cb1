"""Training presets and overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pytest

from data_specs.errors import FamevilError
from famevil.limits import BOTTLENECK, KEEP_CHECKPOINTS, TRAINING_BATCH
from famevil.model.adapter_config import AdapterConfig
from famevil.model.backbone import backbone_config
from famevil.tasks.base import selection_keys
from famevil.training.config import LIMITS, PRESET_DIR, PRESET_NAMES, SET_SOURCE, TrainConfig, _apply, convert_options, load_config, parse_overrides


def test_presets_load_and_name_real_architectures():
    assert set(PRESET_NAMES) >= {"paper", "paper-student", "demo-cpu", "demo-base"}
    paper = load_config("paper")
    assert (paper.model, paper.lr_backbone, paper.lr_adapters, paper.mixed_precision) == ("ViT-B-16-quickgelu", 1e-6, 1e-4, "bf16")
    # The paper's weights are OpenAI's: a bare file of them under the paper presets runs their QuickGELU.
    assert all(backbone_config(load_config(name).model)["quick_gelu"] for name in ("paper", "paper-student"))
    assert load_config("paper-student").decay_steps == (50000, 80000)  # a JSON list from the preset file
    for name in PRESET_NAMES:
        backbone_config(load_config(name).model)  # raises for an unknown architecture


def test_overrides_are_converted_and_checked():
    config = load_config("demo-cpu", parse_overrides(["max_steps=50", "lr_adapters=0.01", "schedule=step", "decay_steps=20,40"]))
    assert (config.max_steps, config.lr_adapters, config.decay_steps) == (50, 0.01, (20, 40))
    assert config.to_dict()["decay_steps"] == [20, 40] and isinstance(config, TrainConfig)
    with pytest.raises(FamevilError, match="unknown training option 'learning_rate'; the options are: model"):
        load_config("demo-cpu", {"learning_rate": 1})
    with pytest.raises(FamevilError, match="--set max_steps='many': max_steps takes an integer"):
        load_config("demo-cpu", {"max_steps": "many"})
    with pytest.raises(FamevilError, match="--set mixed_precision='fp8': mixed_precision takes one of no, bf16"):
        load_config("demo-cpu", {"mixed_precision": "fp8"})
    with pytest.raises(FamevilError, match="--set schedule='linear': schedule takes one of cosine, step"):
        load_config("demo-cpu", {"schedule": "linear"})
    with pytest.raises(FamevilError, match="expected NAME=VALUE"):
        parse_overrides(["max_steps"])
    with pytest.raises(FamevilError, match="no such preset; choose one of"):
        load_config("fast")


def test_parse_overrides_keeps_the_raw_text():
    assert parse_overrides(["decay_steps=50000,80000", "model=ViT-B-16", "seed="]) == {"decay_steps": "50000,80000", "model": "ViT-B-16", "seed": ""}


@pytest.mark.parametrize(
    ("assignment", "name", "expected"),
    [
        ("batch_size=16", "batch_size", 16),  # int
        ("lr_backbone=3e-4", "lr_backbone", 3e-4),  # float
        ("grad_clip=2", "grad_clip", 2.0),  # an integer is a number too
        ("model=ViT-B-32", "model", "ViT-B-32"),  # str
        ("schedule=step", "schedule", "step"),  # one of a few strings
        ("decay_steps=50000", "decay_steps", (50000,)),  # tuple[int, ...], one value
        ("decay_steps=50000,80000", "decay_steps", (50000, 80000)),
        ("decay_steps= 50000 , 80000 ", "decay_steps", (50000, 80000)),
        ("decay_steps=", "decay_steps", ()),
    ],
)
def test_set_values_take_the_declared_type(assignment, name, expected):
    value = getattr(load_config("demo-cpu", parse_overrides([assignment])), name)
    assert value == expected and type(value) is type(expected)


def test_a_single_decay_step_is_written_as_a_list():
    config = load_config("demo-cpu", parse_overrides(["schedule=step", "decay_steps=50000"]))
    assert config.decay_steps == (50000,)
    assert json.loads(json.dumps(config.to_dict()))["decay_steps"] == [50000]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("batch_size=abc", "--set batch_size='abc': batch_size takes an integer, e.g. --set batch_size=32"),
        ("batch_size=1.5", "--set batch_size='1.5': batch_size takes an integer, e.g. --set batch_size=32"),
        ("lr_backbone=1e-4,2e-4", "--set lr_backbone='1e-4,2e-4': lr_backbone takes a number, e.g. --set lr_backbone=1e-05"),
        ("lr_backbone=nan", "--set lr_backbone='nan': lr_backbone takes a number, e.g. --set lr_backbone=1e-05"),
        ("lr_adapters=inf", "--set lr_adapters='inf': lr_adapters takes a number, e.g. --set lr_adapters=0.001"),
        ("decay_steps=50000,8e4", "--set decay_steps='50000,8e4': decay_steps takes a list of integers, e.g. --set decay_steps=20,40"),
    ],
)
def test_set_values_that_do_not_fit_are_refused_in_one_line(assignment, message):
    with pytest.raises(FamevilError) as refusal:
        load_config("demo-cpu", parse_overrides([assignment]))
    assert str(refusal.value) == message and "\n" not in message


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("max_steps=0", "--set max_steps=0: max_steps must be at least 1"),
        ("gradient_accumulation=0", "--set gradient_accumulation=0: gradient_accumulation must be from 1 to 1024"),
        ("decay_steps=50000,0", "--set decay_steps=0: decay_steps must be at least 1"),
        ("checkpoint_every=0", "--set checkpoint_every=0: checkpoint_every must be at least 1"),
        ("seed=-1", "--set seed=-1: seed must be from 0 to 4294967295"),
        ("workers=-1", "--set workers=-1: workers must be from 0 to 64"),
        ("batch_size=0", "--set batch_size=0: batch_size must be from 1 to 1024"),
        ("batch_size=99999999", f"--set batch_size=99999999: batch_size must be from 1 to 1024 ({TRAINING_BATCH.why})"),
        ("keep_checkpoints=1000", f"--set keep_checkpoints=1000: keep_checkpoints must be from 1 to 100 ({KEEP_CHECKPOINTS.why})"),
        ("tsa_bottleneck=100000", f"--set tsa_bottleneck=100000: tsa_bottleneck must be from 1 to 2048 ({BOTTLENECK.why})"),
        ("lr_adapters=-0.001", "--set lr_adapters=-0.001: lr_adapters must be from 0.0 to 1.0"),
        ("adapter_dropout=1", "--set adapter_dropout=1.0: adapter_dropout must be from 0.0 to 0.99"),
    ],
)
def test_values_out_of_range_are_refused_before_any_work(assignment, message):
    with pytest.raises(FamevilError) as refusal:
        load_config("demo-cpu", parse_overrides([assignment]))
    assert str(refusal.value) == message


def test_every_numeric_option_has_a_range_and_every_preset_is_within_it():
    numeric = {f.name for options in (TrainConfig, AdapterConfig) for f in fields(options) if f.type in ("int", "float", "tuple[int, ...]")}
    assert numeric == set(LIMITS)
    for preset in PRESET_NAMES:
        load_config(preset)
    path = PRESET_DIR / "demo-cpu.json"
    with pytest.raises(FamevilError, match=rf'{path}: "max_steps": 0: max_steps must be at least 1'):
        _apply(load_config("demo-cpu"), {"max_steps": 0}, str(path))


@pytest.mark.parametrize("value", [True, 1.5, [1, 2], "abc"])
def test_a_preset_file_with_a_value_that_does_not_fit_is_named(tmp_path, value):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"batch_size": value}))
    with pytest.raises(FamevilError) as refusal:
        load_config(str(path))
    message = str(refusal.value)
    assert message.startswith(f'{path}: "batch_size": {json.dumps(value)}: batch_size takes an integer, e.g. "batch_size": 32')
    assert "\n" not in message


def test_a_preset_file_of_ones_own(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('{"model": "famevil-tiny", "batch_size": 4, "grad_clip": 2, "decay_steps": 50000}')
    config = load_config(str(path))
    assert (config.batch_size, config.grad_clip, config.decay_steps) == (4, 2.0, (50000,))
    with pytest.raises(FamevilError, match="^--set batch_size='x'"):  # the override, not the file, is to blame
        load_config(str(path), {"batch_size": "x"})
    path.write_text('{"model": ')
    with pytest.raises(FamevilError, match="mine.json: malformed JSON"):
        load_config(str(path))


@dataclass(frozen=True)
class Options:
    """A dataclass with the field types TrainConfig lacks, to check convert_options beyond it."""

    verbose: bool = False
    limit: int | None = None
    scales: tuple[float, ...] = (1.0,)
    name: str | None = "x"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        *[("verbose", text, True) for text in ("true", "True", "YES", "1", True)],
        *[("verbose", text, False) for text in ("false", "False", "no", "0", False)],
        ("limit", "7", 7),
        ("limit", 7, 7),
        ("limit", "none", None),
        ("limit", "NULL", None),
        ("limit", None, None),
        ("scales", "0.5,2", (0.5, 2.0)),
        ("scales", "0.5", (0.5,)),
        ("scales", [0.5, 2], (0.5, 2.0)),
        ("name", "none", None),
        ("name", "y", "y"),
    ],
)
def test_convert_options_takes_bool_optional_and_tuple_fields(name, value, expected):
    converted = convert_options(Options, {name: value}, SET_SOURCE)[name]
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("verbose", "maybe", "--set verbose='maybe': verbose takes true or false, e.g. --set verbose=false"),
        ("verbose", 1, "--set verbose=1: verbose takes true or false, e.g. --set verbose=false"),
        ("limit", "1.5", "--set limit='1.5': limit takes an integer or none, e.g. --set limit=20"),
        ("limit", True, "--set limit=True: limit takes an integer or none, e.g. --set limit=20"),
        ("scales", "0.5,nan", "--set scales='0.5,nan': scales takes a list of numbers, e.g. --set scales=1.0"),
    ],
)
def test_convert_options_refuses_what_does_not_fit(name, value, message):
    with pytest.raises(FamevilError) as refusal:
        convert_options(Options, {name: value}, SET_SOURCE)
    assert str(refusal.value) == message


def test_convert_options_names_a_file_source_in_its_syntax():
    with pytest.raises(FamevilError) as refusal:
        convert_options(Options, {"verbose": "maybe"}, "opts.json")
    assert str(refusal.value) == 'opts.json: "verbose": "maybe": verbose takes true or false, e.g. "verbose": false'


@pytest.mark.parametrize("command", ["teach", "pretrain", "distill"])
def test_preset_help_lists_every_preset(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    help_text = " ".join(result.stdout.split())  # rich wraps the help over lines
    for name in PRESET_NAMES:
        assert name in help_text
    assert "paper-student" in help_text and "demo-base" in help_text


def test_the_selection_criterion_follows_the_authors_configs():
    assert selection_keys(["xmr"], "authors") == ["xmr.full.mean"]  # contrastive.yaml
    assert selection_keys(["fic"], "authors") == ["fic.bleu4"]  # captioning.yaml
    assert selection_keys(["xmr", "tgir", "scr", "fic"], "authors") == ["tgir.mean"]  # mtl_wa_kd.yaml
    assert selection_keys(["xmr", "fic"], "headlines") == ["xmr.random100.mean", "fic.cider"]
    assert selection_keys(["scr"], "scr.macro_f1") == ["scr.macro_f1"]
    assert all(load_config(name).select_by == "authors" for name in ("paper", "paper-student"))
    with pytest.raises(FamevilError, match="tgir is not trained"):
        selection_keys(["xmr", "fic"], "authors")
