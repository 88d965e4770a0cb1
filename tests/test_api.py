"""famevil.load and the calls it offers, their CLI commands, and the README's snippet run as written."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import famevil
from data_specs.errors import FamevilError
from famevil.checkpoint import load_checkpoint
from tests.test_images import sideways_jpeg

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def pictures(tiny_raw) -> list[Path]:
    return sorted((tiny_raw / "fashioniq" / "images").iterdir())[:3]


def test_every_call_answers_in_the_users_terms(tiny_student, pictures):
    model = famevil.load(tiny_student)
    captions = model.caption(pictures, max_new_tokens=6)
    assert len(captions) == 3 and all(isinstance(caption, str) for caption in captions)
    (predictions,) = model.classify(pictures[:1], ["Navy Cardigan. Cardigan in navy wool."], top=3)
    names = load_checkpoint(tiny_student).config.vocabularies["subcategory"]
    assert [p.label for p in predictions] and all(p.label in names for p in predictions) and len(predictions) == min(3, len(names))
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    images, texts = model.encode_images(pictures), model.encode_texts(["navy wool cardigan", "red dress"])
    assert images.shape == (3, model.network.embed_dim) and texts.shape == (2, model.network.embed_dim)
    assert torch.allclose(images.norm(dim=-1), torch.ones(3), atol=1e-5)
    query = model.compose(pictures[:2], ["is red", "has short sleeves"])
    gallery = model.encode_images(pictures, task="tgir")
    assert query.shape == (2, model.network.embed_dim) and gallery.shape == images.shape


def test_paths_pil_images_and_tensors_give_the_same_answers(tiny_student, pictures):
    model = famevil.load(tiny_student)
    pil = Image.open(pictures[0]).convert("RGB")
    tensor = torch.from_numpy(np.array(pil)).permute(2, 0, 1)  # uint8 (3, H, W)
    by_path, by_pil, by_tensor = (model.encode_images([x]) for x in (pictures[0], pil, tensor))
    assert torch.allclose(by_path, by_pil) and torch.allclose(by_path, by_tensor, atol=1e-6)
    assert torch.allclose(model.encode_images(pictures[0]), by_path)  # one image given alone
    assert model.caption([pictures[0]], max_new_tokens=6) == model.caption([pil], max_new_tokens=6)


def test_a_batch_answers_as_its_items_do(tiny_student, pictures):
    model = famevil.load(tiny_student)
    together = model.encode_images(pictures)
    alone = torch.cat([model.encode_images([picture]) for picture in pictures])
    assert torch.allclose(together, alone, atol=1e-5)
    assert model.caption(pictures, max_new_tokens=6) == [model.caption([p], max_new_tokens=6)[0] for p in pictures]


def test_a_call_the_model_was_not_trained_for_is_one_line(tiny_dumps, pictures, tmp_path):
    retrieval_only = famevil.load(tiny_dumps["xmr"][0])
    with pytest.raises(FamevilError, match=r"caption\(\) needs a model trained for fashion image captioning; this one has: xmr"):
        retrieval_only.caption(pictures)
    with pytest.raises(FamevilError, match=r"task='tgir': this model has no tgir adapters"):
        retrieval_only.encode_images(pictures, task="tgir")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    with pytest.raises(FamevilError, match=re.escape(f"{not_an_image}: not an image format PIL can decode")):
        retrieval_only.encode_images([not_an_image])
    with pytest.raises(FamevilError, match="no such image file"):
        retrieval_only.encode_images([tmp_path / "missing.jpg"])


def test_a_sideways_photo_is_read_upright(tiny_student, tmp_path):
    """What caption, classify and search --image read: a phone's portrait photo, as its EXIF orientation shows it."""
    data, upright = sideways_jpeg()
    (tmp_path / "portrait.jpg").write_bytes(data)
    model = famevil.load(tiny_student)
    assert torch.allclose(model.encode_images([tmp_path / "portrait.jpg"]), model.encode_images([upright]))


def test_caption_and_classify_commands(cli, tiny_student, tiny_dumps, pictures):
    result = cli("caption", "--model", tiny_student, *pictures[:2], "--max-new-tokens", 5, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["image"] for row in rows] == [str(p) for p in pictures[:2]] and all(isinstance(row["caption"], str) for row in rows)
    texts = ["Navy Cardigan. Cardigan in navy wool.", "Red Dress. A dress in red silk."]
    result = cli("classify", "--model", tiny_student, *pictures[:2], "--text", texts[0], "--text", texts[1], "--top", 2, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    expected = famevil.load(tiny_student).classify(pictures[:2], texts, top=2)
    assert [row["image"] for row in rows] == [str(p) for p in pictures[:2]]
    assert [[p["label"] for p in row["predictions"]] for row in rows] == [[p.label for p in ranked] for ranked in expected]
    result = cli("caption", "--model", tiny_dumps["scr"][0], pictures[0])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().startswith("error:") and "needs a model trained for fashion image captioning" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_readme_snippet_runs_as_written(tiny_student, tiny_raw, tmp_path, monkeypatch, capsys):
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL) if "famevil.load" in s)
    shutil.copytree(tiny_student, tmp_path / "runs/demo/seed-0/student")
    shutil.copytree(tiny_raw / "fashioniq" / "images", tmp_path / "runs/demo/raw/fashioniq/images")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, str(README), "exec"), {})  # noqa: S102 - the README is this repository's own text
    assert capsys.readouterr().out.strip()


def test_every_list_call_answers_the_same_one_image_at_a_time_as_in_one_batch(tiny_student, pictures):
    model = famevil.load(tiny_student)
    texts = ["Navy Cardigan. Cardigan in navy wool.", "Red Dress. A dress in red silk.", "is red, has short sleeves"]
    for one, many in [({"batch_size": 1}, {"batch_size": 64}), ({"batch_size": 2}, {})]:
        for call in (model.encode_images, lambda images, **size: model.encode_images(images, task="tgir", **size)):
            assert torch.allclose(call(pictures, **one), call(pictures, **many), atol=1e-5)
        assert torch.allclose(model.encode_texts(texts, **one), model.encode_texts(texts, **many), atol=1e-5)
        assert torch.allclose(model.compose(pictures, texts, **one), model.compose(pictures, texts, **many), atol=1e-5)
        assert model.caption(pictures, max_new_tokens=6, **one) == model.caption(pictures, max_new_tokens=6, **many)
        for got, want in zip(model.classify(pictures, texts, top=3, **one), model.classify(pictures, texts, top=3, **many), strict=True):
            assert [p.label for p in got] == [p.label for p in want]
            assert np.allclose([p.probability for p in got], [p.probability for p in want], atol=1e-5)
    assert model.encode_images([], batch_size=2).shape == (0, model.network.embed_dim)
    with pytest.raises(FamevilError, match=r"^batch_size=0: must be 1 or more$"):
        model.encode_texts(texts, batch_size=0)


class ReadLog(Sequence):
    """Images that note which of them have been handed out, to see when a call reads them."""

    def __init__(self, images: list[Path]):
        self.images, self.handed_out = images, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        chosen = self.images[index]
        self.handed_out += len(chosen) if isinstance(index, slice) else 1
        return chosen


def test_a_long_list_is_read_and_encoded_one_batch_at_a_time(tiny_student, tiny_raw):
    """100k images would not fit in memory at once: each batch is read only once the one before is encoded."""
    model = famevil.load(tiny_student)
    images = ReadLog(sorted((tiny_raw / "fashioniq" / "images").iterdir())[:5])
    read_when_encoding = []
    hook = model.network.backbone.visual.conv1.register_forward_hook(lambda *_: read_when_encoding.append(images.handed_out))
    try:
        model.encode_images(images, batch_size=2)
    finally:
        hook.remove()
    assert read_when_encoding == [2, 4, 5]
