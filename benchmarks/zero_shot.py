"""Benchmark: zero-shot sub-category accuracy on FashionGen's validation split, against chance and
against supervised sub-category recognition.

    python benchmarks/zero_shot.py --shards runs/demo/shards \
        --model student=runs/demo/seed-0/student --model teacher-xmr=runs/demo/seed-0/teacher-xmr \
        --model base=runs/demo/base \
        --supervised teacher-scr=runs/demo/seed-0/eval/teacher-scr --supervised student=runs/demo/seed-0/eval/student

Each model labels every validation view with `model.zero_shot`, the labels being the shards' subcategory
names (vocab.json, lower case: "a-line dresses"; with --nouns, on the synthetic demo, the singular noun
its product copy uses for each: "a-line dress"), once with CLIP's single template and once with an ensemble of three;
top-1 and top-5 accuracy against the view's subcategory. Beside them: chance (uniform 1/K over the K
names, and always answering the training split's most frequent subcategory) and the supervised
accuracy of SCR models from their `famevil evaluate` metrics.json (image and product text, trained on
the labels). Prints a Markdown table; --out also writes it as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import famevil
from data_specs.shards import Shards, fashiongen_subset
from famevil.data.loading import samples
from famevil.data.synthetic.taxonomy import SUBCATEGORIES
from famevil.tasks.scr import TASK as SCR

TEMPLATE_SETS = {
    "1 template": ("a photo of a {}",),
    "3 templates": ("a photo of a {}", "{}", "a product photo of {}, fashion"),
}
TOPS = (1, 5)


def named_paths(values: list[str], flag: str) -> dict[str, Path]:
    pairs = [value.partition("=") for value in values]
    bad = [value for value, (_, separator, _) in zip(values, pairs, strict=True) if not separator]
    if bad:
        raise SystemExit(f"{flag} {bad[0]}: give NAME=PATH")
    return {name: Path(path) for name, _, path in pairs}


def batches(shards: Shards, subset: str, size: int, limit: int | None) -> Iterator[list[dict]]:
    views = itertools.islice(samples(shards, subset), limit)
    while batch := list(itertools.islice(views, size)):
        yield batch


def zero_shot_accuracy(
    model: famevil.FashionModel, shards: Shards, labels: dict[str, str], templates: tuple[str, ...], batch_size: int, limit: int | None
) -> dict:
    """labels: the label each subcategory name is offered as."""
    label_set = model.label_set(list(labels.values()), templates)
    hits, seen = Counter(), 0
    for batch in batches(shards, fashiongen_subset("val"), batch_size, limit):
        predictions = model.zero_shot([view["jpg"] for view in batch], label_set, top=max(TOPS), batch_size=batch_size)
        for view, ranked in zip(batch, predictions, strict=True):
            truth = labels[view["json"][SCR.vocabulary]]
            hits.update(k for k in TOPS if truth in [p.label for p in ranked[:k]])
        seen += len(batch)
    return {f"top{k}": 100 * hits[k] / seen for k in TOPS} | {"views": seen}


def chance(shards: Shards, names: list[str], limit: int | None) -> dict:
    """Uniform over the K names, and the training split's majority subcategory on the validation views."""
    train = Counter(view["json"][SCR.vocabulary] for view in samples(shards, fashiongen_subset("train")))
    majority = train.most_common(1)[0][0]
    val = [view["json"][SCR.vocabulary] for view in itertools.islice(samples(shards, fashiongen_subset("val")), limit)]
    return {"uniform": {f"top{k}": 100 * k / len(names) for k in TOPS}, "majority": {"top1": 100 * val.count(majority) / len(val), "class": majority}}


def supervised(evaluation: Path) -> float:
    metrics = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    if SCR.name not in metrics:
        raise SystemExit(f"{evaluation}: its metrics.json has no {SCR.title} accuracy (its tasks: {', '.join(metrics)})")
    return metrics[SCR.name][SCR.headline]


def table(results: dict, names: int) -> str:
    rows = ["| model | labels | top-1 % | top-5 % |", "|---|---|---:|---:|"]
    for model, by_templates in results["zero_shot"].items():
        for templates, figures in by_templates.items():
            rows.append(f"| {model} | zero-shot, {templates} | {figures['top1']:.1f} | {figures['top5']:.1f} |")
    uniform, majority = results["chance"]["uniform"], results["chance"]["majority"]
    rows.append(f"| chance | uniform over {names} names | {uniform['top1']:.1f} | {uniform['top5']:.1f} |")
    rows.append(f"| chance | training majority ({majority['class']}) | {majority['top1']:.1f} | |")
    for model, accuracy in results["supervised"].items():
        rows.append(f"| {model} | supervised SCR (image + text; evaluate) | {accuracy:.1f} | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, required=True, help="a shards artifact (famevil prepare)")
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of a model with cross-modal retrieval, or a plain base (repeatable)")
    parser.add_argument("--supervised", action="append", default=[], help="NAME=EVAL_DIR of an SCR model's famevil evaluate output (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation views")
    parser.add_argument("--nouns", action="store_true", help="label with the synthetic demo's singular nouns, not the vocabulary's names")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    arguments = parser.parse_args()
    shards = Shards.open(arguments.shards)
    names = shards.vocabularies[SCR.vocabulary].names
    nouns = {subcategory.name: subcategory.noun for subcategory in SUBCATEGORIES}
    labels = {name: nouns[name] if arguments.nouns else name.lower() for name in names}
    results = {"labels": labels, "chance": chance(shards, names, arguments.limit), "zero_shot": {}, "supervised": {}}
    for name, path in named_paths(arguments.model, "--model").items():
        model = famevil.load(path)
        results["zero_shot"][name] = {
            label: zero_shot_accuracy(model, shards, labels, templates, arguments.batch_size, arguments.limit) for label, templates in TEMPLATE_SETS.items()
        }
    results["supervised"] = {name: supervised(path) for name, path in named_paths(arguments.supervised, "--supervised").items()}
    print(table(results, len(names)))
    if arguments.out:
        arguments.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
