"""Mean ± sd of every task's report rows over evaluations named VARIANT-seedN in one folder.

python benchmarks/summarise_runs.py runs/demo/distillation-inputs/eval
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

from data_specs.evaluations import flatten, read_metrics
from famevil.tasks import TASKS


def main() -> None:
    folder = Path(sys.argv[1])
    variants: dict[str, list[dict[str, float]]] = {}
    for evaluation in sorted(folder.iterdir()):
        match = re.fullmatch(r"(.+)-seed\d+", evaluation.name)
        if match and (evaluation / "manifest.json").is_file():
            variants.setdefault(match.group(1), []).append(flatten(read_metrics(evaluation)))
    rows = [(f"{task.name}.{key}", label) for task in TASKS.values() for key, label in task.report_rows]
    print("| metric | " + " | ".join(f"{name} (n={len(runs)})" for name, runs in variants.items()) + " |")
    print("|---|" + "---:|" * len(variants))
    for key, label in rows:
        cells = []
        for runs in variants.values():
            values = [run[key] for run in runs if run.get(key) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}" if values else "")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
