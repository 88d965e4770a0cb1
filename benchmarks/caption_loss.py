"""Teacher-forced caption loss on the validation split, with each image's own text and with the
images shuffled across the batch: a captioner that looks at the image does worse on shuffled images
(its grounding gap, (shuffled - matching) / matching, is above zero).

    python benchmarks/caption_loss.py --shards runs/demo/shards runs/demo/seed-0/teacher-fic runs/demo/seed-0/student
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from data_specs.shards import Shards
from famevil.checkpoint import load_checkpoint
from famevil.data.loading import batched, samples
from famevil.data.transforms import image_transform
from famevil.multitask import task_loss
from famevil.tasks import find_task


@torch.no_grad()
def caption_losses(model_dir: Path, shards: Path, batch_size: int, seed: int) -> tuple[float, float]:
    model = load_checkpoint(model_dir).eval()
    task = find_task("captioning")
    transform = image_transform(model.preprocess, train=False)
    tokenize = model.tokenizer()
    generator = torch.Generator().manual_seed(seed)
    matching, shuffled, count = 0.0, 0.0, 0
    for chunk in batched(samples(Shards.open(shards), task.subsets("val")[0]), batch_size):
        batch = task.batch(chunk, transform, tokenize)
        matching += task_loss(model, task.name, batch)[0].item() * len(chunk)
        batch["images"] = batch["images"][torch.randperm(len(chunk), generator=generator)]
        shuffled += task_loss(model, task.name, batch)[0].item() * len(chunk)
        count += len(chunk)
    return matching / count, shuffled / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'model':<60}{'matching':>10}{'shuffled':>10}{'gap':>9}")
    for model in args.models:
        matching, shuffled = caption_losses(model, args.shards, args.batch_size, args.seed)
        print(f"{str(model):<60}{matching:10.4f}{shuffled:10.4f}{100 * (shuffled - matching) / matching:8.2f}%")


if __name__ == "__main__":
    main()
