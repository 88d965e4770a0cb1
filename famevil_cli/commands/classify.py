"""famevil classify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import famevil
from famevil.limits import TOP
from famevil_cli.common import JsonOption, ModelOption, defaults_of, out_console, run, table

defaults = defaults_of(famevil.FashionModel.classify)


def classify(
    image: Annotated[Path, typer.Argument(help="An image file.", show_default=False)],
    model: ModelOption,
    text: Annotated[str, typer.Option("--text", help='The product\'s text, "title. description".')],
    top: Annotated[int, typer.Option(help=f"How many subcategories to list. {TOP.help}", min=1, max=TOP.most)] = defaults["top"],
    as_json: JsonOption = False,
) -> None:
    """The most likely subcategories of a product from its image and its text.

    The model must be trained for sub-category recognition (an SCR teacher or the student); the
    names are the checkpoint's own. A table, or --json.

    Example (seconds on a laptop CPU, after famevil distill; the image is one famevil synth made):

        famevil classify --model runs/example/student \\
            runs/example/raw/fashioniq/images/B002F7A5G2.png \\
            --text "Navy Cardigan. Cardigan in navy wool."
    """
    loaded = run(famevil.load, source=model)
    (predictions,) = run(loaded.classify, images=[image], texts=[text], top=top)
    if as_json:
        out_console.print_json(data=[{"subcategory": p.label, "probability": p.probability} for p in predictions])
        return
    out_console.print(table(str(image), ["subcategory", "probability"], [[p.label, p.probability] for p in predictions]))
