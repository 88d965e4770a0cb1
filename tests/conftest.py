"""Fixtures: small data sets in the public release layouts, made by the tests themselves.

Two sources on purpose: `famevil synth` output, and hand-written files built here field by field,
so that the readers are checked against the published layout and not only against our generator.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Tests never download: a Hub lookup fails at once instead of retrying for half a minute. And they
# have a Hugging Face cache of their own, empty but for the random weights tests place in it, never
# the developer's. Set before open_clip imports huggingface_hub, which reads both once; subprocesses
# inherit them.
os.environ["HF_HUB_OFFLINE"] = "1"
# This file runs twice, as pytest's conftest and as tests.conftest (tests import TINY from it): one cache.
if "FAMEVIL_TESTS_HF_HOME" not in os.environ:
    os.environ["FAMEVIL_TESTS_HF_HOME"] = tempfile.mkdtemp(prefix="famevil-tests-hf-")
os.environ["HF_HOME"] = os.environ["FAMEVIL_TESTS_HF_HOME"]

import h5py
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from typer.testing import CliRunner

from famevil.tasks import task_names
from famevil_cli.app import app
from stages.distill import distill
from stages.dump import dump
from stages.prepare import prepare
from stages.synth import synth
from stages.teach import teach

atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
TASK_NAMES = task_names()  # the built-in tasks (a test may register more for a while)
# Training options for 2-layer models on the tiny preset: seconds per run.
TINY = {"model": "famevil-tiny", "batch_size": 8, "batches_per_epoch": 5, "warmup_steps": 2, "lr_backbone": 1e-3, "lr_adapters": 3e-3, "eval_every": 0}


def launch(arguments: list[str], port: int, processes: int = 2) -> subprocess.CompletedProcess:
    """`accelerate launch -m famevil_cli ARGUMENTS` on `processes` processes, one thread each: CPU processes over
    gloo here (Accelerate's --multi_gpu starts several, its --cpu one alone unless through mpirun); each
    test its own `port`, so that tests running at once never meet."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"]
    options = ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    command = [*launcher, *options, "-m", "famevil_cli", *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})


class RunsCode:
    """Unpickling this creates `sentinel`: proof that reading a crafted file ran code."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def write_release_h5(path: Path, rows: list[dict], image_size: int = 16, drop: tuple[str, ...] = ()) -> None:
    """A FashionGen h5 as published: (N, 1) fixed-width byte strings, (N, 1) product ids, (N, H, W, 3) images.

    Each row gives text fields as raw bytes (so a test can put latin-1, entities, <br> and padding in).
    """
    fields = {
        "input_name": [r.get("name", b"Black Shirt") for r in rows],
        "input_description": [r.get("description", b"A shirt.") for r in rows],
        "input_category": [r.get("category", b"SHIRTS") for r in rows],
        "input_subcategory": [r.get("subcategory", b"SHIRTS") for r in rows],
        "input_pose": [r.get("pose", b"id_gridfs_1") for r in rows],
        "input_gender": [r.get("gender", b"MEN") for r in rows],
        "input_composition": [r.get("composition", b"100% cotton") for r in rows],
        "input_season": [r.get("season", b"SS2017") for r in rows],
    }
    with h5py.File(path, "w") as h5:
        for name, values in fields.items():
            if name not in drop:
                h5.create_dataset(name, data=np.array(values, dtype=bytes).reshape(-1, 1))
        if "input_productID" not in drop:
            h5.create_dataset("input_productID", data=np.array([r.get("product_id", 1) for r in rows]).reshape(-1, 1))
        if "input_image" not in drop:
            images = np.stack([np.full((image_size, image_size, 3), r.get("shade", 100), np.uint8) for r in rows])
            h5.create_dataset("input_image", data=images)


def write_fashioniq(root: Path, triplets: dict[tuple[str, str], list[dict]], images: dict[str, str], splits: dict[tuple[str, str], list[str]]) -> None:
    """A FashionIQ release folder; images maps asin -> file suffix (".jpg" or ".png")."""
    for folder in ("captions", "image_splits", "images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for (group, split), entries in triplets.items():
        (root / "captions" / f"cap.{group}.{split}.json").write_text(json.dumps(entries))
    for (group, split), asins in splits.items():
        (root / "image_splits" / f"split.{group}.{split}.json").write_text(json.dumps(asins))
    for index, (asin, suffix) in enumerate(images.items()):
        Image.new("RGB", (20, 24), (index * 40 % 256, 80, 120)).save(root / "images" / f"{asin}{suffix}")


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "raw"
    synth(out, preset="tiny", seed=0, workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_shards(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "shards"
    prepare(out, fashiongen=tiny_raw / "fashiongen", fashioniq=tiny_raw / "fashioniq", shard_size=16, workers=2)
    return out


@pytest.fixture
def cli():
    """Run `famevil ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_dumps(tiny_shards, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each built-in task: a teacher trained for three updates, and its dumped outputs."""
    root = tmp_path_factory.mktemp("teachers")
    made = {}
    for task in TASK_NAMES:
        teacher, outputs = root / f"teacher-{task}", root / f"outputs-{task}"
        teach(task, tiny_shards, teacher, overrides=TINY | {"max_steps": 3, "checkpoint_every": 3})
        dump(teacher, tiny_shards, outputs, top_k=5, batch_size=16)
        made[task] = (teacher, outputs)
    return made


@pytest.fixture(scope="session")
def scr_artifacts(tiny_shards, tmp_path_factory) -> dict[str, Path]:
    """An SCR teacher after one update and its dumped outputs, beside their shards: what the damaged-input
    tests copy and then damage (never in place)."""
    root = tmp_path_factory.mktemp("scr-artifacts")
    teacher = root / "teacher-scr"
    teach("scr", tiny_shards, teacher, overrides=TINY | {"max_steps": 1, "checkpoint_every": 1})
    dump(teacher, tiny_shards, root / "outputs-scr")
    return {"shards": tiny_shards, "teacher": teacher, "teacher-outputs": root / "outputs-scr"}


@pytest.fixture(scope="session")
def tiny_student(tiny_shards, tmp_path_factory) -> Path:
    """A four-task model after two multi-task updates without teachers: what the use-a-model tests load."""
    out = tmp_path_factory.mktemp("student") / "student"
    distill(tiny_shards, out, kd_weight=0, overrides=TINY | {"max_steps": 2})
    return out


@pytest.fixture
def screenshots(request) -> Path:
    """Where a browser test leaves its screenshot: .pytest_cache/d/screenshots, which outlives the run's
    temporary folders (pytest keeps only failed tests' ones) and which git ignores."""
    return request.config.cache.mkdir("screenshots")


@pytest.fixture
def browser(tmp_path):
    """A headless chromium under selenium, closed after the test; the test is skipped where Debian's
    chromium and its driver are missing."""
    chromium, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_binary):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_binary))
    yield driver
    driver.quit()
