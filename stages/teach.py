"""famevil teach: one task's single-task teacher."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from famevil.tasks import find_task
from famevil.tasks.base import selection_keys
from famevil.training.loop import Job, TrainingResult
from famevil.training.recipe import build_model, fit_one_task, model_vocabularies, network_config, training_base, training_shards


def teach(
    task: str,
    shards: Path,
    out: Path,
    base: str | None = None,
    preset: str = "demo-cpu",
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    report_to: list[str] | None = None,
) -> TrainingResult:
    """Train a single-task teacher: the backbone, the task's adapters (and the cross-attention adapters
    where its mode fuses or generates) and its head, then keep the best weights by validation.

    --base gives the starting weights, and with them the architecture, activation and image
    preprocessing they were trained with: an open_clip NAME:TAG (the paper's: ViT-B-16:openai, run with
    the QuickGELU OpenAI trained it with; SigLIP's, ViT-B-16-SigLIP:webli), hf-hub:ORG/NAME (a fashion
    backbone: hf-hub:Marqo/marqo-fashionSigLIP, hf-hub:patrickjohncyh/fashion-clip), local-dir:DIR, a
    transformers CLIPModel folder, a famevil checkpoint directory, or a bare weights file of the
    architecture --set model= names. Without --base the backbone starts from random weights.

    --preset paper is the paper's setting (ViT-B-16 with OpenAI's QuickGELU, batch 16 per process, 30,000 updates, lr 1e-6 for
    CLIP and 1e-4 for the rest, bf16; TGIR teachers use --max-steps 6000); demo-cpu is a small
    backbone for the synthetic demo. --set NAME=VALUE overrides any option (see train_config.json in a
    run). The run is resumable: rerun the same command with --resume auto after an interruption.
    Under `accelerate launch` the same command trains on several processes, GPUs or nodes.

    Example (seconds on a laptop CPU, after famevil pretrain; two updates, a smoke test):

        famevil teach --task xmr --shards runs/example/shards \\
            --base runs/example/base --out runs/example/teacher-xmr --max-steps 2

    Repeat it for tgir, scr and fic in place of xmr: famevil distill learns from all four.
    """
    chosen = find_task(task)
    config, backbone = training_base(preset, overrides, base)
    selection_keys([chosen.name], config.select_by)  # a bad criterion fails before any work
    opened = training_shards(shards, [chosen])
    model_config = network_config(config, (chosen.name,), model_vocabularies(opened, [chosen], config, backbone))
    inputs = [backbone.ref, opened.ref]
    job = Job(
        kind="teacher",
        out=out,
        config=config,
        inputs=inputs,
        details={"task": chosen.name},
        resume=resume,
        overwrite=overwrite,
        title=f"teach {chosen.name}",
        report_to=tuple(report_to or ()),
    )
    return fit_one_task(job, partial(build_model, model_config, backbone, config.xaa_init, config.head_init), chosen, opened, config, backbone)
