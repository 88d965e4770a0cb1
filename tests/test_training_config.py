"""Training presets and overrides."""

from __future__ import annotations

import pytest

from data_specs.errors import FamevilError
from famevil.model.backbone import backbone_config
from famevil.training.config import PRESET_NAMES, TrainConfig, load_config, parse_overrides


def test_presets_load_and_name_real_architectures():
    assert set(PRESET_NAMES) >= {"paper", "demo-cpu"}
    paper = load_config("paper")
    assert (paper.model, paper.lr_backbone, paper.lr_adapters, paper.mixed_precision) == ("ViT-B-16", 1e-6, 1e-4, "bf16")
    for name in PRESET_NAMES:
        backbone_config(load_config(name).model)  # raises for an unknown architecture


def test_overrides_are_converted_and_checked():
    config = load_config("demo-cpu", parse_overrides(["max_steps=50", "lr_adapters=0.01", "schedule=step", "decay_steps=20,40"]))
    assert (config.max_steps, config.lr_adapters, config.decay_steps) == (50, 0.01, (20, 40))
    assert config.to_dict()["decay_steps"] == [20, 40] and isinstance(config, TrainConfig)
    with pytest.raises(FamevilError, match="unknown training option 'learning_rate'; the options are: model"):
        load_config("demo-cpu", {"learning_rate": 1})
    with pytest.raises(FamevilError, match="option 'max_steps' = 'many' is not a int"):
        load_config("demo-cpu", {"max_steps": "many"})
    with pytest.raises(FamevilError, match="mixed_precision 'fp8' is not one of no, bf16"):
        load_config("demo-cpu", {"mixed_precision": "fp8"})
    with pytest.raises(FamevilError, match="expected NAME=VALUE"):
        parse_overrides(["max_steps"])
    with pytest.raises(FamevilError, match="no such preset; choose one of"):
        load_config("fast")


def test_a_preset_file_of_ones_own(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('{"model": "famevil-tiny", "batch_size": 4}')
    assert load_config(str(path)).batch_size == 4
    path.write_text('{"model": ')
    with pytest.raises(FamevilError, match="mine.json: malformed JSON"):
        load_config(str(path))
