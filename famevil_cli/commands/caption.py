"""famevil caption."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import famevil
from famevil.limits import BEAMS
from famevil_cli.common import JsonOption, ModelOption, defaults_of, out_console, run, table

defaults = defaults_of(famevil.FashionModel.caption)


def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.", show_default=False)],
    model: ModelOption,
    beams: Annotated[int, typer.Option(help=f"1 is greedy decoding, more is beam search. {BEAMS.help}", min=1, max=BEAMS.most)] = defaults["beams"],
    max_new_tokens: Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context).", min=1)] = defaults["max_new_tokens"],
    as_json: JsonOption = False,
) -> None:
    """Caption images with a model trained for captioning (a FIC teacher or the student).

    Greedy decoding, or beam search with --beams; one caption per image, as a table or --json.

    Example (seconds on a laptop CPU, after famevil distill; the image is one famevil synth made):

        famevil caption --model runs/example/student \\
            runs/example/raw/fashioniq/images/B002F7A5G2.png
    """
    loaded = run(famevil.load, source=model)
    captions = run(loaded.caption, images=images, beams=beams, max_new_tokens=max_new_tokens)
    if as_json:
        out_console.print_json(data=[{"image": str(image), "caption": text} for image, text in zip(images, captions, strict=True)])
        return
    out_console.print(table(str(model), ["image", "caption"], [[str(image), text] for image, text in zip(images, captions, strict=True)]))
