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
from famevil.text.labels import read_labels_file
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
    assert model.tasks == (CrossModalRetrieval.name,) and model.capabilities() == {"encode", "zero_shot"} and str(model.source) == spec
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


LABELS = ["dress", "shirt", "coat", "cardigan"]
TEMPLATES = ["a photo of a {}", "a product photo of a {}, fashion", "{}"]


def test_zero_shot_scores_as_open_clips_own_prompt_ensemble(open_clip_folder, pictures):
    """Against open_clip's build_zero_shot_classifier on the same base: the same label vectors, and
    probabilities that are the softmax of the base's logit scale times the cosines."""
    spec = f"local-dir:{open_clip_folder}"
    model = famevil.load(spec)
    clip, _, _ = open_clip.create_model_and_transforms(spec)
    clip.eval()
    theirs = open_clip.build_zero_shot_classifier(clip, open_clip.get_tokenizer(spec), LABELS, TEMPLATES).T
    labels = model.label_set(LABELS, TEMPLATES)
    assert labels.labels == tuple(LABELS) and F.cosine_similarity(labels.vectors, theirs).min().item() >= EMBEDS_AS_THE_BASE
    pixels = torch.stack([model.transform(Image.open(picture).convert("RGB")) for picture in pictures])
    with torch.no_grad():
        expected = (clip.logit_scale.exp() * clip.encode_image(pixels, normalize=True) @ theirs.T).softmax(dim=-1)
    predictions = model.zero_shot(pictures, LABELS, templates=TEMPLATES, top=len(LABELS))
    for row, ranked in zip(expected, predictions, strict=True):
        assert [p.label for p in ranked] == [LABELS[i] for i in row.argsort(descending=True)]
        assert torch.allclose(torch.tensor([p.probability for p in ranked]), row.sort(descending=True).values, atol=1e-4)


def test_a_label_set_encoded_once_answers_batch_after_batch_as_the_labels_do(tiny_student, pictures):
    model = famevil.load(tiny_student)
    direct = model.zero_shot(pictures, LABELS, templates=TEMPLATES, top=2)
    labels = model.label_set([f"  {label} " for label in LABELS], TEMPLATES)  # stripped
    reused = [prediction for batch in (pictures[:1], pictures[1:]) for prediction in model.zero_shot(batch, labels, top=2)]
    one_at_a_time = model.zero_shot(pictures, labels, top=2, batch_size=1)
    for ranked in (reused, one_at_a_time):
        for got, want in zip(ranked, direct, strict=True):
            assert [p.label for p in got] == [p.label for p in want]
            assert got[0].probability == pytest.approx(want[0].probability, abs=1e-5)
    assert len(direct) == len(pictures) and all(len(ranked) == 2 and ranked[0].probability >= ranked[1].probability for ranked in direct)


@pytest.mark.parametrize(
    ("labels", "templates", "message"),
    [
        (["dress", " ", "coat"], TEMPLATES, r"^label 2: an empty label; give every label a name or remove it$"),
        (["dress", "coat", " Dress"], TEMPLATES, r"^label 3: 'Dress' repeats label 1; give each label once$"),
        (["dress"], TEMPLATES, r"give two or more"),
        ("dress,coat", TEMPLATES, r"give a list of labels, not one string"),
        (LABELS, ["a photo of a dress"], r"^template 1 'a photo of a dress': has 0 \{\} where it needs one"),
        (LABELS, ["a {}", "a {} or a {}"], r"^template 2 'a \{\} or a \{\}': has 2 \{\} where it needs one"),
        (LABELS, [], r"no templates given"),
    ],
)
def test_bad_labels_and_templates_are_one_line_each(open_clip_folder, labels, templates, message):
    model = famevil.load(f"local-dir:{open_clip_folder}")
    with pytest.raises(FamevilError, match=message):
        model.zero_shot([torch.zeros(3, 8, 8)], labels, templates=templates)


def test_a_labels_file_names_its_file_and_line(tmp_path):
    good = tmp_path / "labels.txt"
    good.write_text("# our categories\ndress\n\n  shirt  \n# seasonal\ncoat\n", encoding="utf-8")
    assert read_labels_file(good) == ("dress", "shirt", "coat")
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("dress\n# comment\nshirt\nDRESS\n", encoding="utf-8")
    with pytest.raises(FamevilError, match=rf"^{repeated} line 4: 'DRESS' repeats {repeated} line 1; give each label once$"):
        read_labels_file(repeated)
    with pytest.raises(FamevilError, match=r"no such labels file"):
        read_labels_file(tmp_path / "missing.txt")


def test_zero_shot_needs_cross_modal_retrieval(scr_artifacts, pictures):
    model = famevil.load(scr_artifacts["teacher"])
    with pytest.raises(FamevilError, match=r"zero_shot\(\) needs a model trained for cross-modal retrieval"):
        model.zero_shot(pictures, LABELS)


def test_the_classify_command_gives_zero_shot_labels_per_image(cli, open_clip_folder, pictures, tmp_path):
    spec = f"local-dir:{open_clip_folder}"
    arguments = ["classify", "--model", spec, *pictures[:2], "--template", TEMPLATES[0], "--template", TEMPLATES[1], "--top", 3]
    result = cli(*arguments, "--labels", ",".join(LABELS), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    expected = famevil.load(spec).zero_shot(pictures[:2], LABELS, templates=TEMPLATES[:2], top=3)
    assert [row["image"] for row in rows] == [str(p) for p in pictures[:2]]
    assert [[p["label"] for p in row["predictions"]] for row in rows] == [[p.label for p in ranked] for ranked in expected]
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# ours\n" + "\n".join(LABELS) + "\n", encoding="utf-8")
    from_file = cli(*arguments, "--labels-file", labels_file)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout.count("probability") == 2 and expected[1][0].label in from_file.stdout  # a table per image


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--labels", "dress,,coat"], "--labels item 2: an empty label"),
        (["--labels", "dress,coat", "--text", "Red Dress."], "do not mix: give one or the other"),
        (["--labels", "dress,coat", "--template", "a photo"], "template 1 'a photo': has 0 {}"),
        ([], "give --text (one per image) for the model's subcategories, or --labels / --labels-file"),
    ],
)
def test_the_classify_command_refuses_bad_labels_in_one_line(cli, open_clip_folder, pictures, options, message):
    result = cli("classify", "--model", f"local-dir:{open_clip_folder}", pictures[0], *options)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
