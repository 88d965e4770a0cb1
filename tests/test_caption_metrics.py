"""Captioning metrics against pycocoevalcap called directly, with real Java (PTB tokenizer, METEOR).

METEOR's JVM takes about 10 s to load its paraphrase table, so the file starts it twice in all:
once inside caption_scores and once for the direct call; the other tests pass meteor=False. The
tests that need METEOR are marked slow.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections import Counter
from math import exp, log
from pathlib import Path

import pytest

from famevil.metrics import captioning
from famevil.metrics.captioning import caption_scores, fallback_tokenize, ptb_tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer and METEOR need Java")

REFERENCES = {
    "img1": ["A red, sleeveless dress with a V-neck.", "Red sleeveless V-neck dress!"],
    "img2": ["Blue denim jacket with silver buttons."],
    "img3": ["Men's black leather boots (ankle height).", "Black leather ankle boots for men."],
    "img4": ["White cotton T-shirt with a round neck."],
    "img5": ["Striped wool scarf in grey and navy; fringed ends.", "Grey and navy striped scarf."],
    "img6": ["Green silk blouse with long sleeves."],
}
CANDIDATES = {
    "img1": "a red sleeveless dress with a v-neck",
    "img2": "Blue denim jacket with silver buttons.",  # a perfect match
    "img3": "BLACK LEATHER BOOTS, ANKLE HEIGHT",
    "img4": "a white t-shirt in cotton",
    "img5": "a striped grey scarf",
    "img6": "",  # an empty caption
}


def java_children() -> list[int]:
    """Our process's children that are Java programs (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and "java" in stat.read_text().split(")")[0]:
                children.append(int(stat.parent.name))
    return children


@pytest.fixture(scope="module")
def java_run() -> captioning.CaptionScores:
    return caption_scores(REFERENCES, CANDIDATES)


@pytest.fixture(scope="module")
def direct_run() -> dict[str, float]:
    """The COCO caption evaluation's own steps on the same captions."""
    from pycocoevalcap.bleu.bleu import Bleu  # noqa: PLC0415 - heavy imports only where the fixture runs
    from pycocoevalcap.cider.cider import Cider  # noqa: PLC0415
    from pycocoevalcap.meteor.meteor import Meteor  # noqa: PLC0415
    from pycocoevalcap.rouge.rouge import Rouge  # noqa: PLC0415
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: PLC0415

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in CANDIDATES.items()})
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(gts, res)
    meteor = Meteor()
    scores = {
        "bleu4": 100 * bleu[3],
        "meteor": 100 * meteor.compute_score(gts, res)[0],
        "rouge_l": 100 * Rouge().compute_score(gts, res)[0],
        "cider": 100 * Cider().compute_score(gts, res)[0],
    }
    meteor.__del__()
    return scores


@pytest.mark.slow  # two METEOR JVMs: about 25 s on two cores
@needs_java
def test_scores_equal_a_direct_pycocoevalcap_call(java_run, direct_run):
    assert java_run.warnings == ()
    for name, expected in direct_run.items():
        assert getattr(java_run, name) == pytest.approx(expected, rel=1e-9), name
    assert 0 < java_run.bleu4 < 100 and 0 < java_run.meteor < 100 and java_run.cider > 0


@pytest.mark.slow  # METEOR's JVM (java_run)
@needs_java
def test_no_java_process_outlives_the_scoring(java_run):
    assert java_run.meteor is not None
    assert java_children() == []


@needs_java
def test_perfect_candidates():
    perfect = caption_scores(REFERENCES, {k: refs[0] for k, refs in REFERENCES.items()}, meteor=False)
    assert perfect.bleu4 == pytest.approx(100, abs=1e-3)
    assert perfect.rouge_l > 85 and perfect.cider > 300 and perfect.meteor is None


@needs_java
def test_garbage_candidates():
    garbage = caption_scores(REFERENCES, {k: "zebra quantum spreadsheet" for k in REFERENCES}, meteor=False)
    assert garbage.bleu4 < 1 and garbage.rouge_l < 1 and garbage.cider < 1


@pytest.mark.slow  # METEOR's JVM (java_run)
@needs_java
def test_without_java_meteor_is_left_out_and_the_rest_barely_moves(java_run, monkeypatch):
    monkeypatch.setattr(captioning, "java_available", lambda: False)
    scores = caption_scores(REFERENCES, CANDIDATES)
    assert scores.meteor is None
    assert len(scores.warnings) == 1 and "METEOR" in scores.warnings[0] and "tokeni" in scores.warnings[0]
    # The stand-in tokenises these captions exactly as PTB does, so the difference measures 0.
    for name in ("bleu4", "rouge_l", "cider"):
        assert getattr(scores, name) == pytest.approx(getattr(java_run, name), abs=1.0), name


@needs_java
def test_the_stand_in_tokenizer_matches_ptb_on_ordinary_captions():
    captions = [
        "A Red-Dress, with 'pockets'... (cotton)!",
        "don't stop; it's $5.00 / U.S.A.",
        'She said "hello" -- then left.',
        "Men's slim-fit jeans [blue] {new}",
        "100% cotton, 1,000 threads: 10:30 am",
        "H&M t-shirt w/ logo; size: XL?",
        "the dress's hem, the boys' shirts, black/white stripes & dots #1",
        "I'm sure you'll like it, we've seen they're nice; can't, won't, cannot",
        "e.g. etc. v-neck, 3/4 sleeves; knee-length - wait ... what?!",
        "50's style o'neill jacket,  `quoted`\t''double''",
    ]
    keyed = {str(i): [c] for i, c in enumerate(captions)}
    assert fallback_tokenize(keyed) == ptb_tokenize(keyed)


@needs_java
def test_line_breaks_inside_a_caption_do_not_shift_captions():
    # Java ends lines at \r and U+2028 too; pycocoevalcap only replaces \n.
    assert ptb_tokenize({"a": ["red\rdress", "x\u2028y"], "b": ["Blue."]}) == {"a": ["red dress", "x y"], "b": ["blue"]}


@needs_java
def test_the_terminal_stays_clean(capfd):
    caption_scores(REFERENCES, CANDIDATES, meteor=False)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("java", [True, False])
def test_empty_candidates_score_zero(java, monkeypatch):
    if java and shutil.which("java") is None:
        pytest.skip("needs Java")
    monkeypatch.setattr(captioning, "java_available", lambda: java)
    scores = caption_scores(REFERENCES, {k: "" for k in REFERENCES} | {"img2": "..."}, meteor=False)
    assert (scores.bleu4, scores.rouge_l, scores.cider) == pytest.approx((0, 0, 0), abs=1e-6)


@pytest.mark.parametrize(
    "references, candidates, message",
    [
        (REFERENCES, {"img1": "a red dress", "img99": "a hat"}, "no reference"),
        ({"img1": []}, {"img1": "a red dress"}, "no reference"),
        (REFERENCES, {}, "at least one"),
    ],
    ids=["unknown-key", "empty-references", "no-candidates"],
)
def test_mismatched_keys_raise(monkeypatch, references, candidates, message):
    monkeypatch.setattr(captioning, "java_available", lambda: False)
    with pytest.raises(ValueError, match=message):
        caption_scores(references, candidates)


def _corpus_bleu4(references: list[list[str]], candidates: list[list[str]]) -> float:
    """Corpus BLEU-4 over token lists as the authors' metric computes it (Hugging Face evaluate's
    nmt_bleu): clipped n-gram matches and lengths summed over the corpus, no smoothing."""
    matches, possible = [0] * 4, [0] * 4
    for reference, candidate in zip(references, candidates, strict=True):
        for n in range(1, 5):
            grams = Counter(tuple(candidate[i : i + n]) for i in range(len(candidate) - n + 1))
            reference_grams = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
            matches[n - 1] += sum((grams & reference_grams).values())
            possible[n - 1] += max(len(candidate) - n + 1, 0)
    precisions = [m / p if p else 0.0 for m, p in zip(matches, possible, strict=True)]
    if min(precisions) == 0:
        return 0.0
    ratio = sum(map(len, candidates)) / sum(map(len, references))
    return 100 * exp(sum(map(log, precisions)) / 4) * (1.0 if ratio > 1 else exp(1 - 1 / ratio))


def test_paper_bleu4_is_the_authors_corpus_bleu_with_case_and_punctuation_kept():
    references = ["red silk dress . a long - sleeved dress in red silk .", "navy wool coat with a notched collar , two pockets"]
    candidates = ["red silk dress . a long dress in silk .", "navy wool coat with two pockets"]
    expected = _corpus_bleu4([r.split() for r in references], [c.split() for c in candidates])
    assert captioning.paper_bleu4(references, candidates) == pytest.approx(expected, abs=1e-9) and 0 < expected < 100
    # 13a splits the full stop from the word either way; the case and the punctuation count.
    assert captioning.paper_bleu4(references, ["red silk dress. a long dress in silk.", candidates[1]]) == pytest.approx(expected, abs=1e-9)
    assert captioning.paper_bleu4(references, ["Red Silk Dress . a long dress in silk .", candidates[1]]) < expected
    assert captioning.paper_bleu4(references, ["red silk dress a long dress in silk", candidates[1]]) != pytest.approx(expected, abs=1e-3)


def test_paper_bleu4_reads_the_text_as_hugging_faces_decode_writes_it():
    """The authors decode with Hugging Face's CLIP tokenizer, whose clean-up joins the clitics open_clip's
    decode leaves spaced; 13a then keeps "men's" one word."""
    assert captioning.hf_decoded("men 's tee , it 's red . isn 't it ?") == "men's tee, it's red. isn 't it?"  # no rule for 't
    references = ["a men 's black wool coat with two pockets"]
    words = ["a", "men's", "black", "wool", "coat"]
    expected = _corpus_bleu4([["a", "men's", "black", "wool", "coat", "with", "two", "pockets"]], [words])
    assert captioning.paper_bleu4(references, ["a men 's black wool coat"]) == pytest.approx(expected, abs=1e-9) and expected > 0
