"""famevil report --html: the report as one self-contained page (inline CSS, SVG plots and JPEG
thumbnails as data URIs), which opens anywhere without network or files beside it."""

from __future__ import annotations

import base64
import html

from data_specs.manifest import current_command, famevil_version
from data_specs.training_runs import LOSSES, METRICS_LOG
from famevil.report.ablations import AblationTable
from famevil.report.sections import RESULTS_SHOWN, CaptionExample, Confusion, Curves, RetrievalExample, Sections
from famevil.report.svg import Series, line_chart
from famevil.report.table import Report, format_row
from famevil.tasks import TASKS
from famevil.tasks.base import CAPTIONS, CLASSIFICATIONS, RETRIEVAL

# One colour per task, the same in every chart (Okabe-Ito: told apart with colour-blindness too).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:76em;padding:1em 2em;color:#222;line-height:1.4}
h1{margin-bottom:0} h2{border-bottom:1px solid #ddd;margin-top:2em} h3{margin:1em 0 .3em}
.meta,.note,.source{color:#666;font-size:.9em} .missing{color:#a33}
table{border-collapse:collapse} td,th{padding:.25em .6em;text-align:left;vertical-align:top}
#comparison td,#parameters td,#ablations td{text-align:right} #comparison td:first-child,#parameters td:first-child,#ablations td:first-child,#ablations td:last-child{text-align:left}
#comparison tbody tr:nth-child(odd),#captions tbody tr:nth-child(odd){background:#f5f6f8} #comparison th{border-bottom:2px solid #ccc}
.roles,.runs{display:flex;flex-wrap:wrap;gap:0 1em} .run{border:1px solid #e3e3e3;border-radius:6px;padding:.5em}
.run h4{margin:0 0 .3em;font-size:.95em} svg.chart{vertical-align:top} .run .note{max-width:340px}
.example{display:flex;gap:1em;align-items:flex-start;margin:.8em 0} .query{width:22em;font-size:.9em}
.example figure{margin:0;text-align:center;font-size:.8em} .example img{border:3px solid #ccc;border-radius:3px;display:block}
.example figure.correct img{border-color:#009e73} .example figure.correct figcaption{color:#009e73;font-weight:bold}
#captions img{display:block} #captions td{font-size:.9em;max-width:30em}
.confusion td{width:1.8em;height:1.8em;padding:0;text-align:center;vertical-align:middle;font-size:.75em;border:1px solid #fff}
.confusion th{font-size:.75em;font-weight:normal;white-space:nowrap} .confusion th.predicted{writing-mode:vertical-rl;transform:rotate(180deg)}
"""


def page(table: Report, sections: Sections, ablations: AblationTable | None = None) -> str:
    body = [
        "<h1>famevil report</h1>",
        f'<details class="meta"><summary>famevil {html.escape(famevil_version())}: the command</summary><code>{html.escape(current_command())}</code></details>',
        "<h2>Teachers, student and baseline</h2>",
        _comparison(table),
        "<h2>Parameters</h2>",
        _parameters(table),
        *(["<h2>Ablations</h2>", _ablations(ablations)] if ablations else []),
        "<h2>Training curves</h2>",
        _curves(sections.curves),
        f'<p class="source">The examples below come from {html.escape(sections.examples_from)}.</p>',
        "<h2>Retrieval examples</h2>",
        _retrieval(sections),
        "<h2>Captions</h2>",
        _captions(sections),
        "<h2>Confusion matrices</h2>",
        _confusions(sections),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>famevil report</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _comparison(table: Report) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in ["metric", *table.columns])
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in format_row(row)) + "</tr>" for row in table.rows)
    gains = "".join(f"<li>{html.escape(line)}</li>" for line in table.gain_lines())
    return (
        f'<table id="comparison"><caption class="note">{html.escape(table.units())}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        f"<ul>{gains}</ul>"
    )


def _parameters(table: Report) -> str:
    teachers = next(iter(table.parameters.values()))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{count:,}</td><td>{100 * count / teachers:.1f} %</td></tr>" for name, count in table.parameters.items()
    )
    return f'<table id="parameters"><thead><tr><th>model</th><th>parameters</th><th>of the teachers\'</th></tr></thead><tbody>{rows}</tbody></table>'


def _ablations(ablations: AblationTable) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in ablations.header())
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in ablations.text_rows())
    table = f'<table id="ablations"><caption class="note">{html.escape(ablations.units())}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return table + _budget_curves(ablations)


def _budget_curves(ablations: AblationTable) -> str:
    """Per task, its headline metric against the budget, with and without distillation, and the
    teachers' level: where the student overtakes its teachers, and whether distillation helps."""
    series = ablations.by_budget()
    if not series:
        return ""
    colors = {"distilled": "#1f77b4", "no distillation": "#d62728"}
    budgets = sorted({budget for points in series.values() for budget, _ in points})
    charts = []
    for column, (task, teachers) in enumerate(zip(TASKS.values(), ablations.teachers, strict=True)):
        lines = [
            Series(label, [(budget, row.figures[column].mean) for budget, row in points if row.figures[column]], colors[label])
            for label, points in series.items()
        ]
        if teachers:
            lines.append(Series("teachers", [(budgets[0], teachers.mean), (budgets[-1], teachers.mean)], "#555", dashed=True))
        lines = [line for line in lines if line.points]
        if lines:
            chart = line_chart(lines, "budget, x the teachers' samples", f"{task.name.upper()} {task.headline}")
            charts.append(f'<div class="run"><h4>{html.escape(task.name.upper())}</h4>{chart}</div>')
    return (
        '<p class="note">By budget: each task\'s headline metric (mean over seeds) against the budget, in multiples of the '
        f'teachers\' samples together.</p><div class="runs" id="budget-curves">{"".join(charts)}</div>'
    )


def _curves(curves: list[Curves]) -> str:
    """One card per run, the runs of a role side by side (its seeds): loss per task, and the validation score."""
    by_role: dict[str, list[Curves]] = {}
    for run in curves:
        by_role.setdefault(run.role, []).append(run)
    validated = any(run.validation for run in curves)
    roles = "".join(
        f'<section class="role"><h3>{html.escape(role)}</h3><div class="runs">{"".join(_run_card(run, validated) for run in runs)}</div></section>'
        for role, runs in by_role.items()
    )
    unvalidated = f"No run validated while training (eval_every 0, as in the demo): {METRICS_LOG} has no validation score to plot. "
    return (
        f'<p class="note">{"" if validated else unvalidated}Each point is the mean loss over a stretch of updates (a multi-task run '
        f'trains one task per update); dashed: the distillation loss against the task\'s teacher.</p><div class="roles">{roles}</div>'
    )


def _run_card(run: Curves, others_validated: bool) -> str:
    title = f"seed {run.seed}" if run.seed is not None else "seed unknown"
    charts = []
    if run.losses:
        series = [_loss_series(name, points) for name, points in run.losses.items()]
        charts.append(line_chart(series, "update", "training loss"))
    if run.validation:
        charts.append(line_chart([Series("validation score", [(float(s), v) for s, v in run.validation], "#333333")], "update", "score"))
    note = run.note or ("no validation while training" if others_validated and not run.validation else "")
    note = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f'<div class="run"><h4>{html.escape(title)}</h4><p class="note">{html.escape(run.checkpoint)}</p>{"".join(charts)}{note}</div>'


def _loss_series(name: str, points: list[tuple[float, float]]) -> Series:
    """loss_TASK solid and kd_TASK (distillation) dashed, in the task's colour."""
    prefix = next(prefix for prefix in LOSSES if name.startswith(prefix))
    task = name[len(prefix) :]
    tasks = list(TASKS)
    colour = PALETTE[tasks.index(task) % len(PALETTE)] if task in tasks else PALETTE[-1]
    distillation = prefix != LOSSES[0]
    return Series(f"{task} KD" if distillation else task, points, colour, dashed=distillation)


def _missing(sections: Sections, stem: str) -> str:
    return f'<p class="missing">{html.escape(sections.missing[stem])}</p>' if stem in sections.missing else ""


def _image(jpeg: bytes, alt: str) -> str:
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" alt="{html.escape(alt)}">'


def _retrieval(sections: Sections) -> str:
    intro = (
        f'<p class="note">Text to image: a product\'s text against every view in the gallery; the top {RESULTS_SHOWN} views, '
        "those of the query's own product (the right answers) framed in green.</p>"
    )
    return intro + "".join(_example(example) for example in sections.retrieval) + _missing(sections, RETRIEVAL)


def _example(example: RetrievalExample) -> str:
    figures = "".join(
        f'<figure class="{"correct" if found.correct else "wrong"}">{_image(found.jpeg, found.key)}'
        f"<figcaption>{'✓ ' if found.correct else ''}#{rank}</figcaption></figure>"
        for rank, found in enumerate(example.found, start=1)
    )
    return (
        f'<div class="example"><div class="query">{html.escape(example.query)}<br><small class="note">{html.escape(example.key)}</small></div>{figures}</div>'
    )


def _captions(sections: Sections) -> str:
    rows = "".join(_caption_row(example) for example in sections.captions)
    table = f'<table id="captions"><thead><tr><th>image</th><th>generated</th><th>reference</th></tr></thead><tbody>{rows}</tbody></table>' if rows else ""
    return table + _missing(sections, CAPTIONS)


def _caption_row(example: CaptionExample) -> str:
    references = "<br>".join(html.escape(reference) for reference in example.references)
    return f"<tr><td>{_image(example.jpeg, example.key)}</td><td>{html.escape(example.generated)}</td><td>{references}</td></tr>"


def _confusions(sections: Sections) -> str:
    return "".join(_matrix(matrix) for matrix in sections.confusions) + _missing(sections, CLASSIFICATIONS)


def _matrix(matrix: Confusion) -> str:
    """A heat map: each cell shaded by its share of the row (its true class), the diagonal green."""
    shown = len(matrix.classes)
    scope = f"the {shown} most frequent of {matrix.all_classes} classes" if shown < matrix.all_classes else f"all {shown} classes"
    head = "".join(f'<th class="predicted">{html.escape(name)}</th>' for name in [*matrix.classes, "other"])
    rows = []
    for row, (true, counts) in enumerate(zip(matrix.classes, matrix.counts, strict=True)):
        total = sum(counts) or 1
        cells = "".join(
            f'<td style="background:rgba({"0,158,115" if column == row else "213,94,0"},{count / total:.2f})" title="{count}">{count or ""}</td>'
            for column, count in enumerate(counts)
        )
        rows.append(f"<tr><th>{html.escape(true)}</th>{cells}</tr>")
    pairs = "".join(f"<li>{html.escape(true)} → {html.escape(guess)}: {count}</li>" for true, guess, count in matrix.confused)
    return (
        f"<h3>{html.escape(matrix.task)}</h3>"
        f'<p class="note">{matrix.samples} samples, accuracy {matrix.accuracy:.2f} %. Rows: the true class ({scope}); '
        'columns: the predicted class, "other" for a class not shown. Shade: the share of the row.</p>'
        f'<table class="confusion"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<p class="note">The most frequent errors (true → predicted):</p><ul class="errors">{pairs}</ul>'
    )
