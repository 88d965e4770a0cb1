"""A plain base through famevil.load, and zero-shot labels: a shop's own label set, scored by the
cross-modal retrieval adapters against the images."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import famevil
from data_specs.errors import FamevilError
from famevil.tasks.xmr import CrossModalRetrieval
from stages.pretrain import pretrain
from tests.conftest import TINY
from tests.test_equivalence import FOLDER_CONFIG, random_weights

EMBEDS_AS_THE_BASE = 0.9999  # cosine of a plain base's famevil embeddings and open_clip's, same input


@pytest.fixture(scope="module")
def open_clip_folder(tmp_path_factory) -> Path:
    """A random-weight open_clip folder, as `famevil export --format open_clip` writes one (no download)."""
    folder = tmp_path_factory.mktemp("open-clip-base")
    (folder / "open_clip_config.json").write_text(json.dumps(FOLDER_CONFIG))
    torch.save(random_weights(FOLDER_CONFIG["model_cfg"], 5), folder / "open_clip_pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def pictures(tiny_raw) -> list[Path]:
    return sorted((tiny_raw / "fashioniq" / "images").iterdir())[:4]


def test_a_plain_base_loads_with_retrieval_alone_and_embeds_as_open_clip_does(open_clip_folder, pictures):
    spec = f"local-dir:{open_clip_folder}"
    model = famevil.load(spec)
    assert model.tasks == (CrossModalRetrieval.name,) and model.capabilities() == {"encode"} and str(model.source) == spec
    clip, _, _ = open_clip.create_model_and_transforms(spec)
    clip.eval()
    texts = ["navy wool cardigan", "Red Silk Dress. A long-sleeved dress in red silk."]
    pixels = torch.stack([model.transform(Image.open(picture).convert("RGB")) for picture in pictures])
    with torch.no_grad():
        theirs_images, theirs_texts = clip.encode_image(pixels, normalize=True), clip.encode_text(open_clip.get_tokenizer(spec)(texts), normalize=True)
    image_cosine = F.cosine_similarity(model.encode_images(pictures), theirs_images).min().item()
    text_cosine = F.cosine_similarity(model.encode_texts(texts), theirs_texts).min().item()
    assert image_cosine >= EMBEDS_AS_THE_BASE and text_cosine >= EMBEDS_AS_THE_BASE, (image_cosine, text_cosine)
    retrieval_scale = model.network.head(CrossModalRetrieval.name)()
    assert torch.allclose(retrieval_scale, clip.logit_scale.exp())  # the base's own temperature scores zero-shot labels


def test_a_pretrained_famevil_base_loads_as_a_retrieval_model(tiny_shards, tmp_path, pictures):
    base = pretrain(tiny_shards, tmp_path / "base", overrides=TINY | {"max_steps": 1}).out
    model = famevil.load(base)
    assert model.tasks == (CrossModalRetrieval.name,) and model.encode_images(pictures).shape == (len(pictures), model.network.embed_dim)


def test_a_base_that_is_not_there_is_one_line(tmp_path):
    for source, message in [
        (f"local-dir:{tmp_path}", r"not an open_clip folder"),
        ("ViT-B-16:no-such-tag", r"open_clip has no such pretrained tag"),
    ]:
        with pytest.raises(FamevilError, match=message) as refusal:
            famevil.load(source)
        assert "\n" not in str(refusal.value)
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(FamevilError, match=r"weights.safetensors: a bare weights file does not say its architecture"):
        famevil.load(weights)
