"""famevil report."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from famevil.report.table import format_row
from famevil_cli.common import err_console, out_console, run, table
from stages import report as report_stage


def report(
    teacher: Annotated[list[Path], typer.Option("--teacher", help="A teacher's evaluation directory (famevil evaluate); one per task and seed.")],
    student: Annotated[list[Path], typer.Option("--student", help="The distilled student's evaluation directory; one per seed.")],
    baseline: Annotated[
        list[Path] | None, typer.Option("--baseline", help="The multi-task baseline's evaluation (distill --kd-weight 0); one per seed.")
    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for a README) instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table, the relative gains and the page's sections as JSON instead.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write the report as one self-contained HTML page: plots and pictures.")] = None,
    ablation: Annotated[
        list[Path] | None,
        typer.Option("--ablation", help="A distilled model's evaluation, trained with other switches (scripts/ablations.sh); one per variant and seed."),
    ] = None,
) -> None:
    made = run(report_stage.report, teachers=teacher, students=student, baselines=baseline, ablations=ablation, html=html_file, with_sections=as_json)
    result, ablations, sections = made.table, made.ablations, made.sections
    if made.page is not None:
        err_console.print(f"report page: {made.page}", highlight=False, soft_wrap=True)
    if as_json:
        out_console.print_json(data=result.to_json() | {"sections": sections.to_json()} | ({"ablations": asdict(ablations)} if ablations else {}))
        return
    rows = [format_row(row) for row in result.rows]
    if markdown:
        _print_markdown(["metric", *result.columns], rows, right_aligned=range(1, len(result.columns) + 1))
        out_console.print("\n" + "\n".join(f"- {line}" for line in result.gain_lines()), highlight=False, soft_wrap=True)
        if ablations:
            out_console.print()
            _print_markdown(ablations.header(), ablations.text_rows(), right_aligned=range(1, len(ablations.header()) - 1))
        return
    out_console.print(table(f"teachers, student and baseline ({result.units()})", ["metric", *result.columns], rows))
    for line in result.gain_lines():
        out_console.print(line, highlight=False)
    if ablations:
        out_console.print(table(f"ablations ({ablations.units()})", ablations.header(), ablations.text_rows()))


def _print_markdown(columns: list[str], rows: list[list[str]], right_aligned: range) -> None:
    """A Markdown table, the columns in `right_aligned` (numbers) aligned right."""
    rule = "".join("---:|" if index in right_aligned else "---|" for index in range(len(columns)))
    out_console.print(f"| {' | '.join(columns)} |\n|{rule}", highlight=False, soft_wrap=True)
    for row in rows:
        out_console.print("| " + " | ".join(row) + " |", highlight=False, soft_wrap=True)
