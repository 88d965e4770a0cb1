"""famevil classify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import famevil
from data_specs.errors import FamevilError
from famevil.limits import BATCH, TOP
from famevil.text.labels import DEFAULT_TEMPLATES, checked_labels, read_labels_file
from famevil_cli.common import JsonOption, defaults_of, out_console, run, table

defaults = defaults_of(famevil.FashionModel.classify)
LABELS_SEPARATOR = ","


def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.", show_default=False)],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="A famevil checkpoint directory; for zero-shot labels also a plain base as --base names it (NAME:TAG, local-dir:DIR, hf-hub:ORG/NAME).",
        ),
    ],
    text: Annotated[
        list[str] | None, typer.Option("--text", help='Sub-category recognition: the product\'s text, "title. description"; once per image, in order.')
    ] = None,
    labels: Annotated[str | None, typer.Option("--labels", help='Zero-shot: your own labels, comma-separated, such as "dress,shirt,coat".')] = None,
    labels_file: Annotated[
        Path | None, typer.Option("--labels-file", help="Zero-shot: a file of labels, one a line (blank lines and # comments skipped).")
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option("--template", help=f"Zero-shot: a prompt with {{}} for the label; repeat it to average several (default: {DEFAULT_TEMPLATES[0]!r})."),
    ] = None,
    top: Annotated[int, typer.Option(help=f"How many subcategories or labels to list. {TOP.help}", min=1, max=TOP.most)] = defaults["top"],
    batch_size: Annotated[int, typer.Option(help=f"Images read and run at a time. {BATCH.help}", min=1, max=BATCH.most)] = defaults["batch_size"],
    as_json: JsonOption = False,
) -> None:
    """The most likely subcategories of products, or zero-shot labels of your own, for images.

    With --text (one per image): sub-category recognition, for a model trained for it (an SCR teacher
    or the student), into the checkpoint's own names. With --labels or --labels-file: zero-shot labels,
    untrained for, for any model with cross-modal retrieval (the student, an XMR teacher, a plain
    base), each label put into every --template and the prompts' embeddings averaged. A table per
    image, or --json.

    Example (seconds on a laptop CPU, after famevil distill; the image is one famevil synth made):

        famevil classify --model runs/example/student \\
            runs/example/raw/fashioniq/images/B002F7A5G2.png \\
            --text "Navy Cardigan. Cardigan in navy wool."
        famevil classify --model runs/example/student \\
            runs/example/raw/fashioniq/images/B002F7A5G2.png \\
            --labels "dress,shirt,coat" --template "a photo of a {}"
    """
    chosen = run(zero_shot_labels, text=text, labels=labels, labels_file=labels_file, template=template)
    loaded = run(famevil.load, source=model)
    if chosen is None:
        predictions = run(loaded.classify, images=images, texts=text, top=top, batch_size=batch_size)
    else:
        predictions = run(loaded.zero_shot, images=images, labels=chosen, templates=tuple(template or DEFAULT_TEMPLATES), top=top, batch_size=batch_size)
    if as_json:
        rows = [{"image": str(image), "predictions": [p._asdict() for p in ranked]} for image, ranked in zip(images, predictions, strict=True)]
        out_console.print_json(data=rows)
        return
    heading = "subcategory" if chosen is None else "label"
    for image, ranked in zip(images, predictions, strict=True):
        out_console.print(table(str(image), [heading, "probability"], [[p.label, p.probability] for p in ranked]))


def zero_shot_labels(text: list[str] | None, labels: str | None, labels_file: Path | None, template: list[str] | None) -> tuple[str, ...] | None:
    """The zero-shot labels the options give, or None for sub-category recognition with --text; one
    line when they mix the two, give both label options, or neither."""
    if labels is not None and labels_file is not None:
        raise FamevilError("--labels and --labels-file: give your labels one way, not both")
    if text and (labels is not None or labels_file is not None):
        raise FamevilError("--text (sub-category recognition) and --labels/--labels-file (zero-shot labels) do not mix: give one or the other")
    if text and template:
        raise FamevilError("--template fills zero-shot labels; it needs --labels or --labels-file, not --text")
    if labels_file is not None:
        return read_labels_file(labels_file)
    if labels is not None:
        items = labels.split(LABELS_SEPARATOR)
        return checked_labels(items, [f"--labels item {number}" for number in range(1, len(items) + 1)])
    if not text:
        raise FamevilError("give --text (one per image) for the model's subcategories, or --labels / --labels-file for zero-shot labels")
    return None
