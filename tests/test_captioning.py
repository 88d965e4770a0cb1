"""Captioning: a head restricted to the training text's tokens, and the figures that catch a captioner
ignoring the image (grounding gap, distinct captions)."""

from __future__ import annotations

import json

import pytest
import torch

import famevil
from data_specs.errors import FamevilWarning
from data_specs.shards import Shards
from famevil.checkpoint import load_checkpoint
from famevil.data.loading import samples
from famevil.data.transforms import image_transform, scratch_preprocess
from famevil.model.backbone import backbone_config
from famevil.model.decoding import block_repeated_ngrams, caption_lengths, generate
from famevil.model.tokenizer import text_tokenizer
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.tasks import find_task
from famevil.tasks.base import EvalSettings
from famevil.tasks.fic import CAPTION_TOKENS, caption_targets
from famevil.text.captions import as_copy, degenerate
from famevil.training.loop import TaskChecks
from stages.teach import teach
from tests.conftest import TINY

TOKENIZE = text_tokenizer(backbone_config("famevil-tiny"))
TEXTS = ["a red dress with long sleeves", "black wool coat", "shorts"]
CAPTIONING = find_task("captioning")


def _model(kept: list[int] | None = None, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    vocabularies = {CAPTION_TOKENS: [str(token) for token in kept]} if kept else {}
    return MultiTaskModel(ModelConfig(backbone="famevil-tiny", tasks=("fic",), vocabularies=vocabularies)).eval()


def _kept_tokens() -> list[int]:
    """The tokens of TEXTS with the special ones, less the last real token of the third text."""
    tokens = TOKENIZE(TEXTS)
    kept = set(tokens.unique().tolist()) | {TOKENIZE.pad, TOKENIZE.start, TOKENIZE.end}
    return sorted(kept - {int(caption_targets(tokens, TOKENIZE)[2][-2])})


def _with_weights_of(restricted: MultiTaskModel, full: MultiTaskModel) -> None:
    """The restricted model becomes the full one with its head cut to the kept rows."""
    state = full.state_dict()
    rows = restricted.head("fic").tokens
    state["heads.fic.weight"], state["heads.fic.bias"] = state["heads.fic.weight"][rows], state["heads.fic.bias"][rows]
    restricted.load_state_dict(state)


@torch.no_grad()
def test_a_restricted_head_is_the_full_head_renormalised_on_its_tokens():
    torch.manual_seed(3)
    images, tokens = torch.randn(3, 3, 32, 32), TOKENIZE(TEXTS)
    full = _model()
    for parameter in full.parameters():
        parameter.add_(0.05 * torch.randn(parameter.shape))
    kept = _kept_tokens()
    restricted = _model(kept)
    _with_weights_of(restricted, full)
    batch = {"images": images, "tokens": tokens}
    full_logits, restricted_logits = full("fic", batch), restricted("fic", batch)
    assert restricted_logits.log_probs.shape[1] == len(kept) < 100
    expected = full_logits.log_probs[:, kept].log_softmax(dim=-1)
    assert torch.allclose(restricted_logits.log_probs, expected, atol=1e-4)
    # The one target outside the kept tokens neither trains nor counts.
    targets = caption_targets(tokens, TOKENIZE)[2]
    counted = torch.tensor([int(t) in kept for t in targets])
    assert counted.sum() == len(targets) - 1
    expected_loss = -expected[counted].gather(1, torch.tensor([kept.index(int(t)) for t in targets[counted]])[:, None]).mean()
    assert torch.allclose(task_loss(restricted, "fic", batch)[0], expected_loss, atol=1e-4)
    # Decoding writes token ids of the tokenizer, only kept ones.
    for caption in generate(restricted, restricted.head("fic"), images, "fic", max_new_tokens=6, beams=2):
        assert set(caption) <= set(kept)


@torch.no_grad()
def test_distillation_from_a_full_teacher_keeps_the_mass_the_student_can_write():
    torch.manual_seed(4)
    images, tokens = torch.randn(3, 3, 32, 32), TOKENIZE(TEXTS)
    batch = {"images": images, "tokens": tokens, "keys": ["a", "b", "c"]}
    teacher = _model(seed=1)
    for parameter in teacher.parameters():
        parameter.add_(0.05 * torch.randn(parameter.shape))
    kept = _kept_tokens()
    # A teacher trained on this text puts its top tokens there, with one it saw that the student cannot write.
    teacher.head("fic").bias[kept] += 10.0
    teacher.head("fic").bias[int(caption_targets(tokens, TOKENIZE)[2][-2])] += 10.0
    signals = CAPTIONING.signals(teacher, teacher.head("fic"), batch, top_k=8)
    assert (~torch.isin(signals["ids"], torch.tensor(kept)) & (signals["logprobs"] != 0)).any()
    student = _model(kept)
    loss = CAPTIONING.distillation(student("fic", batch), signals, batch, temperature=1.0)
    assert torch.isfinite(loss) and loss > 0
    # A student that is the teacher cut to the kept tokens matches it exactly where it can.
    _with_weights_of(student, teacher)
    assert CAPTIONING.distillation(student("fic", batch), signals, batch, temperature=1.0) < loss


@pytest.mark.slow  # a 2-layer captioner trained for 2 updates
def test_teach_with_the_training_vocabulary_writes_and_reloads_the_restricted_head(tiny_shards, tmp_path):
    out = tmp_path / "teacher"
    teach("captioning", tiny_shards, out, overrides=TINY | {"max_steps": 2, "checkpoint_every": 2, "head_vocabulary": "training"})
    kept = json.loads((out / "config.json").read_text())["famevil"]["vocabularies"][CAPTION_TOKENS]
    assert 20 < len(kept) < 1000 and {str(TOKENIZE.pad), str(TOKENIZE.end)} <= set(kept)
    model = load_checkpoint(out)
    assert model.head("fic").weight.shape[0] == len(kept)
    assert model.head("fic").tokens.tolist() == [int(token) for token in kept]


def _evaluate_captions(model: MultiTaskModel, samples: list[dict]):
    settings = EvalSettings("val", image_transform(scratch_preprocess(32), train=False), TOKENIZE, max_new_tokens=5, meteor=False)
    evaluation = CAPTIONING.evaluator(model, model.head("fic"), settings)
    evaluation.add("fashiongen/val", samples)
    return evaluation.finish()


def _views(tiny_shards) -> list[dict]:
    return list(samples(Shards.open(tiny_shards), "fashiongen/val"))[:24]


def test_a_captioner_that_ignores_the_image_has_no_grounding_gap_and_is_warned(tiny_shards):
    """At initialisation the cross-attention adapters are zero: the image cannot change the caption."""
    result = _evaluate_captions(_model(), _views(tiny_shards))
    assert result.metrics["grounding_gap"] == pytest.approx(0.0, abs=1e-4)
    assert result.metrics["distinct_captions"] == pytest.approx(100 / 24)  # one caption for every image
    assert any("grounding gap" in warning for warning in result.warnings)


def test_a_captioner_that_reads_the_image_has_a_grounding_gap(tiny_shards):
    model = _model()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.xaa["text"].parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    result = _evaluate_captions(model, _views(tiny_shards))
    assert abs(result.metrics["grounding_gap"]) > 0.01


def test_training_checks_log_the_gap_and_warn_once_when_it_stays_near_zero(tiny_shards, capsys):
    batch = CAPTIONING.batch(_views(tiny_shards)[:12], image_transform(scratch_preprocess(32), train=False), TOKENIZE)
    checks = TaskChecks("teach fic", warn_from=100)
    model = _model()  # zero cross-attention adapters: the image cannot matter
    logged = [checks.run(model, "fic", batch, step) for step in (25, 50, 75, 100, 125)]
    assert all(entry == {"grounding_gap_fic": 0.0} for entry in logged)
    warned = capsys.readouterr().err
    assert warned.count("grounding gap 0.00%") == 1 and "step 100" in warned  # not before warn_from, then once


def test_the_padding_id_is_a_real_token_that_trains_and_survives_decoding():
    """Token id 0 pads, but it is also CLIP's "!" (here inside "!?!!"): padding is told by length."""
    tokens = TOKENIZE(["wool coat !?!!", "coat"])
    end = TOKENIZE.end
    assert TOKENIZE.pad in tokens[0, 1 : int(tokens[0].argmax())].tolist()
    _, real, targets = caption_targets(tokens, TOKENIZE)
    assert real.sum(dim=1).tolist() == tokens.argmax(dim=1).tolist()  # every next token up to and including the end
    assert (targets == TOKENIZE.pad).sum() == 1 and (targets == end).sum() == 2
    generated = torch.tensor([[5, TOKENIZE.pad, 7, end, TOKENIZE.pad, TOKENIZE.pad], [TOKENIZE.pad] * 6])
    assert caption_lengths(generated, end).tolist() == [3, 6]  # the "!" before the end stays; a row without an end is whole


def test_the_headline_bleu4_scores_against_the_text_as_the_model_reads_it(tiny_shards):
    """The authors' BLEU-4 references are the tokenised input decoded (lower case, cut to the text
    context): captions equal to them score 100, though the raw text has capitals; coco-caption's BLEU-4
    against the raw text stays beside it."""
    views = _views(tiny_shards)
    model = _model()
    evaluation = CAPTIONING.evaluator(
        model, model.head("fic"), EvalSettings("val", image_transform(scratch_preprocess(32), train=False), TOKENIZE, max_new_tokens=2, meteor=False)
    )
    evaluation.add("fashiongen/val", views)
    raw = [f"{view['json']['title']}. {view['json']['description']}" for view in views]
    assert evaluation.read_references == [TOKENIZE.decode(ids[1 : ids.index(TOKENIZE.end)]).strip() for ids in TOKENIZE(raw).tolist()]
    assert any(text != text.lower() for text in raw)
    evaluation.generated = list(evaluation.read_references)
    metrics = evaluation.finish().metrics
    assert metrics["bleu4"] == pytest.approx(100.0) and "coco_bleu4" in metrics


def _repeats_an_ngram(ids: list[int], n: int) -> bool:
    ngrams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(ngrams)) < len(ngrams)


def test_blocking_bans_exactly_the_tokens_that_would_repeat_an_ngram():
    columns = torch.arange(10)
    log_probs = torch.zeros(2, 10)
    block_repeated_ngrams(log_probs, torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 1]]), columns, n=3)
    assert torch.isinf(log_probs[0]).nonzero().flatten().tolist() == [7]  # "5 6" was followed by 7
    assert not torch.isinf(log_probs[1]).any()  # "4 1" is new
    log_probs = torch.zeros(1, 10)
    block_repeated_ngrams(log_probs, torch.tensor([[5, 6, 5, 8]]), columns, n=2)
    assert not torch.isinf(log_probs).any()  # 8 was never followed by anything
    block_repeated_ngrams(log_probs, torch.tensor([[5, 6, 5]]), columns, n=2)
    assert torch.isinf(log_probs[0]).nonzero().flatten().tolist() == [6]


@pytest.mark.parametrize("beams", [1, 3])
def test_decoding_for_use_never_repeats_an_ngram_and_evaluation_decodes_as_before(tiny_student, tiny_shards, beams):
    """A captioner after two updates loops on one token: evaluation keeps its captions as they are (the
    paper's protocol, nothing blocked); decoding with no_repeat_ngram=3 never writes three tokens twice."""
    views = _views(tiny_shards)[:4]
    model = load_checkpoint(tiny_student).eval()
    head = model.head(CAPTIONING.name)
    settings = EvalSettings("val", image_transform(model.preprocess, train=False), model.tokenizer(), max_new_tokens=12, beams=beams, meteor=False)
    evaluation = CAPTIONING.evaluator(model, head, settings)
    evaluation.add("fashiongen/val", views)
    images = CAPTIONING.batch(views, settings.transform, settings.tokenize)["images"]
    plain = generate(model, head, images, CAPTIONING.name, max_new_tokens=12, beams=beams)
    assert evaluation.generated == [settings.tokenize.decode(ids).strip() for ids in plain]
    assert all(_repeats_an_ngram(ids, 3) for ids in plain)
    blocked = generate(model, head, images, CAPTIONING.name, max_new_tokens=12, beams=beams, no_repeat_ngram=3)
    assert not any(_repeats_an_ngram(ids, 3) for ids in blocked) and all(len(ids) == 12 for ids in blocked)


def test_decoded_bpe_reads_as_copy():
    text = "Short-sleeved shirt. Button closure at front, 100% cotton; women's (slim) fit: black/white 3.5 cm!"
    tokens = TOKENIZE([text])[0]
    decoded = TOKENIZE.decode(tokens[1 : int(TOKENIZE.ends(tokens[None])[0])].tolist())
    assert "short - sleeved" in decoded and "1 0 0 %" in decoded  # what CLIP's BPE gives back
    assert as_copy(decoded) == "Short-sleeved shirt. Button closure at front, 100% cotton; women's (slim) fit: black/white 3.5 cm!"
    assert as_copy("Navy cardigan. Made in Italy.") == "Navy cardigan. Made in Italy."  # text already joined stays as it is
    assert as_copy('a "logo" print .   made in italy') == 'A "logo" print. Made in italy'


@pytest.mark.parametrize(
    ("caption", "expected"),
    [(". . . .", True), ("", True), ("a a a a", True), ("Navy navy navy navy wool.", True), ("Red dress. Red.", False), ("Short-sleeved shirt.", False)],
)
def test_a_caption_that_is_not_text_is_degenerate(caption, expected):
    assert degenerate(caption) is expected


def test_a_model_whose_captions_are_not_text_is_warned_about_in_one_line(tiny_student, tiny_raw, cli):
    pictures = sorted((tiny_raw / "fashioniq" / "images").iterdir())[:2]
    model = famevil.load(tiny_student)
    with pytest.warns(FamevilWarning, match=rf"^{tiny_student}: 2 of 2 captions are not text .* the model needs more training for captioning$"):
        captions = model.caption(pictures, max_new_tokens=8)
    assert captions == [as_copy(caption) for caption in captions]
    result = cli("caption", "--model", tiny_student, *pictures, "--max-new-tokens", 8, "--no-repeat-ngram", 0)
    assert result.exit_code == 0 and result.stderr.count("warning:") == 1 and "needs more training" in result.stderr
