"""famevil report: the pipeline's result in one table, and as a page with the training curves and examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_specs.staging import check_file_destination, write_file
from famevil.report.ablations import AblationTable, ablation_table
from famevil.report.page import page
from famevil.report.sections import Sections, sections
from famevil.report.table import Report, build_report


@dataclass(frozen=True)
class ReportResult:
    table: Report
    ablations: AblationTable | None  # with ablation evaluations
    sections: Sections | None  # with a page, or when asked for
    page: Path | None


def report(
    teachers: list[Path],
    students: list[Path],
    baselines: list[Path] | None = None,
    ablations: list[Path] | None = None,
    html: Path | None = None,
    with_sections: bool = False,
) -> ReportResult:
    """Put evaluations side by side: the teachers' (each on its own task) in one column, the distilled
    student's and the no-distillation baseline's, the student's gain over its teachers, and parameters.
    Give one evaluation per seed to each role: every figure is then a mean +- standard deviation.

    The student's mean relative gain (the paper's summary figure) is, per seed, the mean over tasks of
    the mean relative change of the task's report metrics against the teacher of the same seed (the
    teachers' mean where that seed has none); then the mean +- sd over seeds. Likewise over the baseline.

    --html FILE also writes the report as one self-contained page (no network, no files beside it):
    the table, every run's training curves (loss per task, validation score), and from the first
    student's evaluation text-to-image retrieval examples, captions beside their images and the
    classification confusion matrix. --json prints the same sections as data.

    Example (seconds, after famevil evaluate; scripts/demo.sh ends with this report over its seeds,
    each role given once per seed):

        famevil report --teacher runs/example/eval/teacher-xmr \\
            --teacher runs/example/eval/teacher-tgir \\
            --teacher runs/example/eval/teacher-scr \\
            --teacher runs/example/eval/teacher-fic \\
            --student runs/example/eval/student --html runs/example/report.html
    """
    inputs = [*teachers, *students, *(baselines or []), *(ablations or [])]
    if html is not None:
        check_file_destination(html, "--html", inputs)
    table = build_report(teachers, students, baselines or None)
    ablation_rows = ablation_table(teachers, [*students, *(baselines or []), *ablations]) if ablations else None
    found = sections(table) if with_sections or html is not None else None
    if html is not None:
        write_file(html, page(table, found, ablation_rows), "--html")
    return ReportResult(table, ablation_rows, found, html)
