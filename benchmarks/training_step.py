"""Benchmark: samples/s of whole training steps (forward, backward, AdamW update) of a teacher against
plain open_clip's contrastive step, and of the distilling student against the teacher, on one batch.

    python benchmarks/training_step.py --shards runs/demo/shards [--model famevil-small] [--batch-size 32] [--steps 5]

The batch is real: the first training batch of each task from the shards, through the training
transform. A teacher step is what `famevil teach` runs per update (the task's loss on a single-task
model, AdamW over the backbone and the task's adapters and head). The plain step is open_clip's own
CLIP loss on the same images and captions with AdamW over the same backbone. A distill step is what
`famevil distill` runs (the multi-task student's task loss plus the distillation loss against
teacher outputs read from a dump written here by the real `famevil dump` storage code). Steps are
timed in alternation with their reference, so a busy machine slows both alike; medians are printed.
A task with a language-model head gets a second row, "(training vocabulary)": its head restricted to
the tokens of the shards' training text (training option head_vocabulary=training).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import interleaved  # benchmarks/timing.py, beside this script

from data_specs.shards import Shards
from famevil.data.loading import training_batches
from famevil.data.teacher_outputs import TeacherOutputs, write_outputs
from famevil.data.transforms import image_transform
from famevil.losses import symmetric_info_nce
from famevil.model.backbone import backbone_config
from famevil.model.tokenizer import text_tokenizer
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.tasks import TASKS, task_names
from famevil.tasks.base import Task
from stages.distill import distillation_loss


def _update(model: torch.nn.Module, loss_of) -> callable:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of().backward()
        optimizer.step()

    return step


def _time_task(task: Task, student: MultiTaskModel, args: argparse.Namespace, label: str) -> None:
    """One row: the task's teacher step against open_clip's, and the distillation step against the teacher's."""
    name = task.name
    classes = student.config.vocabularies
    tokenize = student.tokenizer()
    batch = next(
        iter(
            training_batches(
                Shards.open(args.shards), task.train_subset(), task.batch, args.batch_size, image_transform(student.preprocess, train=True), tokenize, 0, 0, 1
            )
        )
    )
    teacher = MultiTaskModel(ModelConfig(backbone=args.model, tasks=(name,), vocabularies=classes)).train()
    clip = teacher.backbone

    # open_clip's text tower takes its whole context (77 positions); famevil's batches are cut
    # after their longest text, which changes no output (tests/test_model.py) but saves work.
    full_tokens = F.pad(batch["tokens"], (0, clip.context_length - batch["tokens"].shape[1]))

    def plain_loss():  # TGIR's batch: the reference images and the modification captions
        image = F.normalize(clip.encode_image(batch["images"]), dim=-1)
        text = F.normalize(clip.encode_text(full_tokens), dim=-1)
        return symmetric_info_nce(clip.logit_scale.exp() * image @ text.T)

    with tempfile.TemporaryDirectory() as dump, torch.no_grad():
        (Path(dump) / "outputs").mkdir()
        write_outputs(Path(dump) / "outputs" / "shard-000000.safetensors", batch["keys"], task.signals(teacher.eval(), teacher.head(name), batch, 8))
        outputs = {name: TeacherOutputs(Path(dump))}
    teacher.train()
    plain_step = _update(clip, plain_loss)
    teacher_step = _update(teacher, lambda: task_loss(teacher, name, batch)[0])
    distill_step = _update(student, lambda: distillation_loss(outputs, lambda step: 1.0, 1.0, student, name, batch, 0)[0])
    plain_s, teacher_s, teacher_ratio = interleaved(plain_step, teacher_step, args.steps)
    teacher_again_s, distill_s, distill_ratio = interleaved(teacher_step, distill_step, args.steps)
    n = args.batch_size
    print(
        f"{label:<28}{n / plain_s:10.1f}{n / teacher_s:10.1f}{teacher_ratio:10.2f}x   |{n / teacher_again_s:10.1f}{n / distill_s:10.1f}{distill_ratio:10.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--model", default="famevil-small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, batch {args.batch_size}, random weights")
    classes = {"subcategory": [f"class {i}" for i in range(30)]}
    tokenize = text_tokenizer(backbone_config(args.model))
    restricted = {name: words for task in TASKS.values() for name, words in task.text_vocabulary(Shards.open(args.shards), tokenize).items()}
    students = {
        vocabularies: MultiTaskModel(ModelConfig(backbone=args.model, tasks=task_names(), vocabularies=classes | extra)).train()
        for vocabularies, extra in (("full", {}), ("training", restricted))
    }
    print(f"{'':<28}{'samples/s':>20}{'time':>11}    |{'samples/s':>20}{'time':>11}")
    print(f"{'task':<28}{'open_clip':>10}{'teacher':>10}{'ratio':>11}    |{'teacher':>10}{'distill':>10}{'ratio':>11}")
    for task in TASKS.values():
        _time_task(task, students["full"], args, task.name)
        if task.text_vocabulary(Shards.open(args.shards), tokenize):
            _time_task(task, students["training"], args, f"{task.name} (training vocabulary)")
    print("samples/s from each pair's own alternating run; time ratios: above 1 means slower than the reference")


if __name__ == "__main__":
    main()
