"""The demo's budgets keep the paper's two relations: each teacher trains on about as many samples as
the student's size-proportional sampling gives its task, and the teachers together about what the
student trains on (the paper: 30k updates per teacher against 90k x 0.3 per task)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from famevil.data.synthetic.products import PRESETS, fashiongen_catalogue, fashioniq_catalogue
from famevil.training.config import load_config
from famevil.training.sampling import TaskSampler

ROOT = Path(__file__).resolve().parents[1]


def _demo_options() -> dict[str, str]:
    """Each task's teacher options and the student's, as scripts/_demo_options.sh sets them."""
    listing = 'source scripts/_demo_options.sh; for t in $tasks; do echo "$t ${task_options[$t]}"; done; echo "student --max-steps $student_steps"'
    lines = subprocess.run(["bash", "-c", listing], cwd=ROOT, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    return dict(line.split(" ", 1) for line in lines.splitlines())


def _samples(options: str) -> int:
    """Updates x batch size, the preset's (demo-cpu unless --preset) where the options leave them."""
    named = re.search(r"--preset (\S+)", options)
    preset = load_config(named.group(1) if named else "demo-cpu", {})
    steps = re.search(r"--max-steps (\d+)", options)
    batch = re.search(r"--set batch_size=(\d+)", options)
    return (int(steps.group(1)) if steps else preset.max_steps) * (int(batch.group(1)) if batch else preset.batch_size)


def _demo_training_sizes() -> dict[str, int]:
    """What size-proportional sampling counts on the demo data: FashionGen's train products for XMR,
    SCR and FIC, the FashionIQ train triplets whose two images are present for TGIR."""
    products = len(fashiongen_catalogue(PRESETS["demo"], seed=0)["train"])
    triplets = 0
    for (_group, split), part in fashioniq_catalogue(PRESETS["demo"], seed=0).items():
        present = {image.asin for image in part.images if image.present}
        triplets += split == "train" and sum(t.candidate in present and t.target in present for t in part.triplets)
    return {"xmr": products, "tgir": triplets, "scr": products, "fic": products}


def test_each_teacher_trains_as_long_as_the_student_does_on_its_task():
    options = _demo_options()
    student = _samples(options.pop("student"))
    shares = TaskSampler(_demo_training_sizes()).probabilities
    assert options.keys() == shares.keys()
    for task, teacher_options in options.items():
        assert _samples(teacher_options) == pytest.approx(shares[task] * student, rel=0.01), task
    assert sum(_samples(o) for o in options.values()) == pytest.approx(student, rel=0.01)
