"""Training batches from shards: task tensors, and the same batches again for the same seed and epoch."""

from __future__ import annotations

import io
import json
import pickle
import tarfile

import torch
from PIL import Image

from data_specs.integrity import ListedFile
from data_specs.shards import Shards
from famevil.data.loading import shard_samples, training_batches
from famevil.data.transforms import image_transform, scratch_preprocess
from famevil.model.backbone import backbone_config
from famevil.model.tokenizer import text_tokenizer
from famevil.tasks import find_task, task_names
from famevil.training.streams import TaskStream
from tests.conftest import RunsCode

TRANSFORM = image_transform(scratch_preprocess(32), train=True)
TOKENIZE = text_tokenizer(backbone_config("famevil-tiny"))


def _batches(shards, task, seed=0, epoch=0, count=3):
    torch.manual_seed(0)  # the random crops and flips; the order of samples is the pipeline's own
    return list(
        training_batches(
            Shards.open(shards), find_task(task).train_subset(), find_task(task).batch, 4, TRANSFORM, TOKENIZE, seed=seed, epoch=epoch, batches_per_epoch=count
        )
    )


def test_every_task_gets_the_tensors_its_objective_reads(tiny_shards):
    expected = {
        "xmr": {"keys", "images", "tokens", "products"},
        "fic": {"keys", "images", "tokens", "products"},
        "scr": {"keys", "images", "tokens", "labels"},
        "tgir": {"keys", "images", "tokens", "targets"},
    }
    for task in task_names():
        batches = _batches(tiny_shards, task)
        assert len(batches) == 3
        batch = batches[0]
        assert set(batch) == expected[task] and len(batch["keys"]) == 4
        assert batch["images"].shape == (4, 3, 32, 32) and batch["tokens"].shape[0] == 4 and batch["tokens"].shape[1] <= 77
        assert int(batch["tokens"][:, -1].max()) == int(batch["tokens"].max())  # cut right after the longest text


def test_the_same_seed_and_epoch_give_the_same_batches(tiny_shards):
    keys = lambda batches: [batch["keys"] for batch in batches]  # noqa: E731
    first = _batches(tiny_shards, "xmr", seed=1, epoch=2)
    assert keys(first) == keys(_batches(tiny_shards, "xmr", seed=1, epoch=2))
    assert keys(first) != keys(_batches(tiny_shards, "xmr", seed=1, epoch=3))
    assert keys(first) != keys(_batches(tiny_shards, "xmr", seed=2, epoch=2))


def test_each_process_draws_its_own_batches(tiny_shards, monkeypatch):
    draws = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        draws.append([batch["keys"] for batch in _batches(tiny_shards, "scr", count=4)])
    assert draws[0] != draws[1]


def test_a_stream_restored_from_its_saved_place_continues_with_the_same_batches(tiny_shards):
    def stream() -> TaskStream:  # two loader workers, three batches each per epoch: eight batches cross an epoch
        return TaskStream(
            lambda epoch: training_batches(
                Shards.open(tiny_shards), find_task("scr").train_subset(), find_task("scr").batch, 4, TRANSFORM, TOKENIZE, 0, epoch, 3
            ),
            workers=2,
        )

    uninterrupted = [next(s) for s in [stream()] for _ in range(8)]
    first = stream()
    for _ in range(5):
        next(first)
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    torch.manual_seed(123)  # the global generator's state does not matter to the data
    for expected in uninterrupted[5:]:
        batch = next(resumed)
        assert batch["keys"] == expected["keys"]
        assert torch.equal(batch["images"], expected["images"])  # the same crops and flips too
    assert resumed.state_dict() == {"epoch": 1, "consumed": 2}


def test_no_shard_member_is_unpickled(tmp_path):
    """webdataset's default decoders unpickle .pyd, .pickle and .pth members; famevil's read images and JSON only."""
    sentinel = tmp_path / "code-ran"
    image = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(image, format="JPEG")
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in (
            ("p1.jpg", image.getvalue()),
            ("p1.json", json.dumps({"title": "Red Top"}).encode()),
            *((f"p1.{extension}", pickle.dumps(RunsCode(sentinel))) for extension in ("pyd", "pickle", "pth")),
        ):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    (sample,) = list(shard_samples([ListedFile(shard, None, "")]))  # a loose tar, listed by no manifest
    assert not sentinel.exists()
    assert sample["json"] == {"title": "Red Top"} and sample["jpg"].size == (8, 8)
    assert all(isinstance(sample[extension], bytes) for extension in ("pyd", "pickle", "pth"))
