"""What a captioner on the synthetic demo reads of the image, and what its image tower holds.

`attributes EVAL_DIR...`: for each evaluation's captions.jsonl, how often the caption names the
reference's garment (the first garment noun, compared at the category level: "cardigan" and
"sweater" agree) and its colour (the first colour in the second sentence, "... in navy wool"), and
the share of distinct captions. The demo's copy is procedural (famevil/data/synthetic), so both are
exact string matches.

`probe --shards DIR MODEL_DIR...`: a linear probe of the garment category (FashionGen's category_id)
from each image layer's states, trained on 2,000 training views and scored on 1,000 validation views:
the states averaged over the patches (`mean`), and laid out flat, patch by patch (`flat`).

`units --shards DIR MODEL_DIR...`: the share of live ReLU units in a captioner's text-side adapters.

    python benchmarks/caption_diagnostics.py attributes runs/demo/seed-0/eval/teacher-fic
    python benchmarks/caption_diagnostics.py probe --shards runs/demo/shards runs/demo/base runs/demo/seed-0/teacher-fic
    python benchmarks/caption_diagnostics.py units --shards runs/demo/shards runs/demo/seed-0/teacher-fic
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from data_specs.shards import Shards
from famevil.checkpoint import load_checkpoint
from famevil.data.loading import samples
from famevil.data.synthetic.taxonomy import COLOURS, SUBCATEGORIES
from famevil.data.transforms import image_transform
from famevil.model import towers
from famevil.tasks import find_task

GENERIC = {s.noun: s.generic for s in SUBCATEGORIES} | {s.generic: s.generic for s in SUBCATEGORIES}


def _first(text: str, words: list[str]) -> str | None:
    """The word (or phrase) of `words` that occurs first in `text`."""
    text = text.lower().replace(" - ", "-")
    found = [(match.start(), word) for word in words if (match := re.search(rf"\b{re.escape(word)}\b", text))]
    return min(found)[1] if found else None


def attributes(evaluations: list[Path]) -> None:
    nouns = sorted(GENERIC, key=len, reverse=True)
    colours = sorted(COLOURS, key=len, reverse=True)
    second = lambda text: text.split(".")[1] if "." in text else text  # noqa: E731
    print(f"{'evaluation':<48}{'garment %':>10}{'colour %':>10}{'distinct %':>12}")
    for evaluation in evaluations:
        lines = [json.loads(line) for line in (evaluation / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
        garment = sum(GENERIC.get(_first(x["generated"], nouns)) == GENERIC.get(_first(x["references"][0], nouns)) for x in lines)
        colour = sum(_first(second(x["generated"]), colours) == _first(second(x["references"][0]), colours) for x in lines)
        distinct = len({x["generated"] for x in lines})
        print(f"{str(evaluation):<48}{100 * garment / len(lines):>10.1f}{100 * colour / len(lines):>10.1f}{100 * distinct / len(lines):>12.1f}")


@torch.no_grad()
def layer_features(model_dir: Path, shards: Path, subset: str, count: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    model = load_checkpoint(model_dir).eval()
    adapters = model.tasks[0]
    transform = image_transform(model.preprocess, train=False)
    views = list(itertools.islice(samples(Shards.open(shards), subset), count))
    x = towers.image_stem(model.backbone, torch.stack([transform(view["jpg"]) for view in views]))
    features = {}
    for layer, (block, adapter) in enumerate(zip(towers.image_blocks(model.backbone), model.tsa[adapters]["vision"], strict=True)):
        h = towers.self_attention(block, x)
        x = towers.feed_forward(block, h) + adapter(h)
        features[f"{layer} mean"], features[f"{layer} flat"] = x[:, 1:].mean(dim=1), x[:, 1:].flatten(1)
    return features, torch.tensor([view["json"]["category_id"] for view in views])


def probe(shards: Path, models: list[Path]) -> None:
    for model_dir in models:
        train, train_labels = layer_features(model_dir, shards, "fashiongen/train", 2000)
        val, val_labels = layer_features(model_dir, shards, "fashiongen/val", 1000)
        scores = []
        for name in train:
            mean, sd = train[name].mean(0), train[name].std(0) + 1e-6
            torch.manual_seed(0)
            linear = torch.nn.Linear(train[name].shape[1], int(train_labels.max()) + 1)
            optimiser = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-4)
            for _ in range(300):
                optimiser.zero_grad()
                F.cross_entropy(linear((train[name] - mean) / sd), train_labels).backward()
                optimiser.step()
            with torch.no_grad():
                scores.append(f"{name} {100 * (linear((val[name] - mean) / sd).argmax(1) == val_labels).float().mean():.0f}%")
        print(f"{model_dir}: category from image layer " + ", ".join(scores))


@torch.no_grad()
def units(shards: Path, models: list[Path]) -> None:
    """The share of each text-side adapter's ReLU units that fire on at least 1% of caption positions
    (teacher-forced, 64 validation views): a unit below that is dead, it passes nothing on."""
    for model_dir in models:
        model = load_checkpoint(model_dir).eval()
        task = find_task(model.tasks[0])
        transform = image_transform(model.preprocess, train=False)
        batch = task.batch(list(itertools.islice(samples(Shards.open(shards), "fashiongen/val"), 64)), transform, model.tokenizer())
        activations: dict[str, torch.Tensor] = {}
        for layer in range(model.paired):
            text_layer = model.unpaired["text"] + layer
            for name, adapter in ((f"XAA {layer}", model.xaa["text"][layer].adapter), (f"TSA {text_layer}", model.tsa[task.name]["text"][text_layer])):
                adapter.down.register_forward_hook(lambda module, inputs, output, name=name, store=activations: store.__setitem__(name, output.flatten(0, -2)))
        model.caption_states(batch["images"], batch["tokens"][:, :-1], task.name)
        live = {name: 100 * ((values > 0).float().mean(0) > 0.01).float().mean().item() for name, values in sorted(activations.items())}
        print(f"{model_dir}: live units % " + ", ".join(f"{name} {share:.0f}" for name, share in live.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    read = commands.add_parser("attributes", help="garment and colour named right, distinct captions")
    read.add_argument("evaluations", type=Path, nargs="+")
    held = commands.add_parser("probe", help="linear probes of the garment category per image layer")
    held.add_argument("--shards", type=Path, required=True)
    held.add_argument("models", type=Path, nargs="+")
    alive = commands.add_parser("units", help="live ReLU units in a captioner's text-side adapters")
    alive.add_argument("--shards", type=Path, required=True)
    alive.add_argument("models", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "attributes":
        attributes(args.evaluations)
    elif args.command == "probe":
        probe(args.shards, args.models)
    else:
        units(args.shards, args.models)


if __name__ == "__main__":
    main()
