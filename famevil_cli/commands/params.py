"""famevil params."""

from __future__ import annotations

from typing import Annotated

import typer

from famevil.limits import BOTTLENECK, CLASSES
from famevil.params import count_parameters
from famevil_cli.common import call, defaults_of, out_console, table

defaults = defaults_of(count_parameters)
BottleneckOption = Annotated[
    int, typer.Option("--bottleneck", help=f"Task-specific adapter bottleneck (paper: 64; ablations 128, 512). {BOTTLENECK.help}", min=1, max=BOTTLENECK.most)
]


def params(
    backbone: Annotated[
        str,
        typer.Option(
            "--model",
            help="An open_clip architecture (ViT-B-16, the paper's; ViT-B-16-SigLIP; famevil-tiny) or a base: hf-hub:ORG/NAME, local-dir:DIR, NAME:TAG, a checkpoint.",
        ),
    ] = "ViT-B-16",
    tsa_bottleneck: BottleneckOption = defaults["tsa_bottleneck"],
    xaa_bottleneck: Annotated[
        int | None, typer.Option(help=f"Cross-attention adapter bottleneck (default: --bottleneck). {BOTTLENECK.help}", min=1, max=BOTTLENECK.most)
    ] = defaults["xaa_bottleneck"],
    num_classes: Annotated[int, typer.Option("--classes", help=f"SCR classes. {CLASSES.help}", min=1, max=CLASSES.most)] = defaults["num_classes"],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of integer counts.")] = False,
) -> None:
    """Count the parameters of the multi-task model and of the four single-task models it replaces (Table 4).

    The backbone, the shared cross-attention adapters, each task's adapters and head, the whole
    multi-task model, the separate models counted as the paper counts them (fine-tuned CLIP plus its
    head for XMR, TGIR and SCR; CLIP with text-side cross-attention and the language-model head for
    FIC), and the saving. No weights are needed: the architecture decides.

    Example (a second on a laptop CPU):

        famevil params --model ViT-B-16 --bottleneck 64 --json
    """
    counts = call(count_parameters, locals())
    if as_json:
        out_console.print_json(data=counts)
        return
    rows = [["backbone (open_clip)", counts["backbone"]], ["cross-attention adapters (shared)", counts["xaa"]]]
    rows += [[f"task-specific adapters: {task}", count] for task, count in counts["tsa"].items()]
    rows += [[f"head: {task}", count] for task, count in counts["heads"].items()]
    rows += [["multi-task model", counts["multitask_total"]], ["four single-task models", counts["separate_total"]]]
    out_console.print(table(f"{backbone}, bottleneck {tsa_bottleneck}", ["part", "parameters"], [[name, f"{n:,}"] for name, n in rows]))
    out_console.print(f"saving: {counts['saving_percent']:.2f} %")
