"""famevil caption."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import famevil
from famevil.limits import BATCH, BEAMS
from famevil_cli.common import JsonOption, ModelOption, defaults_of, out_console, run, table

defaults = defaults_of(famevil.FashionModel.caption)


def caption(
    images: Annotated[list[Path], typer.Argument(help="Image files to caption.", show_default=False)],
    model: ModelOption,
    beams: Annotated[int, typer.Option(help=f"1 is greedy decoding, more is beam search. {BEAMS.help}", min=1, max=BEAMS.most)] = defaults["beams"],
    max_new_tokens: Annotated[int | None, typer.Option(help="Caption length limit in tokens (default: the text context).", min=1)] = defaults["max_new_tokens"],
    no_repeat_ngram: Annotated[
        int, typer.Option(help="Never write the same N tokens twice in a caption; 0 decodes as evaluate does, blocking nothing.", min=0)
    ] = defaults["no_repeat_ngram"],
    batch_size: Annotated[int, typer.Option(help=f"Images read and run at a time. {BATCH.help}", min=1, max=BATCH.most)] = defaults["batch_size"],
    as_json: JsonOption = False,
) -> None:
    """Caption images with a model trained for captioning (a FIC teacher or the student).

    Greedy decoding, or beam search with --beams; no phrase of --no-repeat-ngram tokens written twice;
    the text joined into copy in sentence case ("Short-sleeved shirt. Button closure at front."). One
    caption per image, as a table or --json; a one-line warning when most are not text (a model that
    needs more training).

    Example (seconds on a laptop CPU, after famevil distill; the image is one famevil synth made):

        famevil caption --model runs/example/student \\
            runs/example/raw/fashioniq/images/B002F7A5G2.png
    """
    loaded = run(famevil.load, source=model)
    captions = run(loaded.caption, images=images, beams=beams, max_new_tokens=max_new_tokens, no_repeat_ngram=no_repeat_ngram, batch_size=batch_size)
    if as_json:
        out_console.print_json(data=[{"image": str(image), "caption": text} for image, text in zip(images, captions, strict=True)])
        return
    out_console.print(table(str(model), ["image", "caption"], [[str(image), text] for image, text in zip(images, captions, strict=True)]))
