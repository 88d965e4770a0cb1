"""Captioning metrics, in percent like FAME-ViL's FIC table.

paper_bleu4 is BLEU-4 as the authors' code scores it (their only caption metric in any config): corpus
BLEU with sacrebleu's 13a tokenisation, case and punctuation kept. caption_scores gives the COCO caption
evaluation's BLEU-4, METEOR, ROUGE-L and CIDEr, from pycocoevalcap on PTB-tokenised captions. The PTB
tokenizer and METEOR are Java programs; without Java the captions are tokenised by a Python stand-in and
METEOR is left out, with a warning saying so.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from data_specs.errors import FamevilError

if TYPE_CHECKING:
    from pycocoevalcap.meteor.meteor import Meteor

T = TypeVar("T")

NO_JAVA_WARNING = (
    "METEOR not computed: it needs Java, which is not on PATH. The PTB tokenizer needs Java too, so "
    "captions were tokenised by a Python stand-in and BLEU-4/ROUGE-L/CIDEr may differ slightly from "
    "the official scores; install a Java runtime for the official numbers."
)


@dataclass(frozen=True)
class CaptionScores:
    """Corpus-level scores x100 (CIDEr too, as the paper prints it); meteor is None when it was not computed."""

    bleu4: float
    meteor: float | None
    rouge_l: float
    cider: float
    warnings: tuple[str, ...] = ()


# Hugging Face's decode (transformers 4.20, the authors' version) ends with clean_up_tokenization: these
# spaces, which open_clip's decode leaves, go. 13a splits "." "," "?" "!" off again but not the
# apostrophe, so "men 's" (two words) and "men's" (one) count differently.
_HF_CLEAN_UP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def hf_decoded(text: str) -> str:
    """open_clip's decoded text as Hugging Face's CLIP tokenizer decodes the same tokens."""
    for spaced, joined in _HF_CLEAN_UP:
        text = text.replace(spaced, joined)
    return text


def paper_bleu4(references: Sequence[str], candidates: Sequence[str]) -> float:
    """BLEU-4 x100 as the authors score FIC (their metrics.py loads Hugging Face evaluate's bleu): one
    reference per caption, corpus-level counts and brevity penalty, no smoothing, and the 13a tokenisation
    (punctuation split off and counted, case kept). The authors' references are the ground-truth text as
    the model reads it: tokenised to the text context and decoded (CaptionEvaluation does that); both
    sides, decoded by open_clip, get Hugging Face's clean-up of the spaces first, as their decode did."""
    import sacrebleu  # noqa: PLC0415 - imported where scores are made

    if len(references) != len(candidates) or not candidates:
        raise ValueError(f"paper_bleu4 needs one reference per candidate; got {len(references)} and {len(candidates)}")
    hypotheses, truths = [hf_decoded(c) for c in candidates], [hf_decoded(r) for r in references]
    return sacrebleu.corpus_bleu(hypotheses, [truths], tokenize="13a", smooth_method="none", lowercase=False, force=True).score


def java_available() -> bool:
    """Whether the Java programs (PTB tokenizer, METEOR) can run; the one place tests switch Java off."""
    return shutil.which("java") is not None


def caption_scores(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str], *, meteor: bool = True) -> CaptionScores:
    """Score one generated caption per image key against that image's reference captions.

    As in the COCO evaluation, only the candidates' keys are scored (extra reference keys are ignored)
    and an empty candidate, or one that is all punctuation, is kept empty and scores 0 for its image
    (pycocoevalcap 1.2 handles empty hypotheses). CIDEr weighs n-grams by how few images' references
    share them, so it needs several images: with one it is always 0. meteor=False skips METEOR, whose
    JVM takes about 10 s to load its paraphrase table.
    """
    from pycocoevalcap.bleu.bleu import Bleu  # noqa: PLC0415 - heavy imports only where scores are made
    from pycocoevalcap.cider.cider import Cider  # noqa: PLC0415
    from pycocoevalcap.rouge.rouge import Rouge  # noqa: PLC0415

    if not candidates:
        raise ValueError("caption_scores needs at least one candidate caption")
    missing = [key for key in candidates if not references.get(key)]
    if missing:
        raise ValueError(f"{len(missing)} candidate key(s) have no reference captions, e.g. {missing[0]!r}")

    java = java_available()
    tokenize = ptb_tokenize if java else fallback_tokenize
    gts = tokenize({key: list(references[key]) for key in candidates})
    res = tokenize({key: [caption] for key, caption in candidates.items()})
    if not any(ref for refs in gts.values() for ref in refs):
        raise ValueError("every reference caption is empty after tokenisation; nothing to score against")

    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its internals
        bleu, _ = Bleu(4).compute_score(gts, res)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    meteor_score = _meteor(gts, res) if java and meteor else None
    return CaptionScores(
        bleu4=100 * float(bleu[3]),
        meteor=None if meteor_score is None else 100 * meteor_score,
        rouge_l=100 * float(rouge),
        cider=100 * float(cider),
        warnings=() if java else (NO_JAVA_WARNING,),
    )


def ptb_tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer (Stanford CoreNLP, lower-cased, punctuation tokens dropped)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: PLC0415

    # The tokenizer writes one caption a line, and Java also ends lines at \r, U+2028 and the like:
    # such a caption would shift every later caption onto the wrong image. Collapsing whitespace
    # changes no token.
    lines = {key: [{"caption": " ".join(caption.split())} for caption in refs] for key, refs in captions.items()}
    tokenized, log = _with_stderr_captured(lambda: PTBTokenizer().tokenize(lines))
    if {key: len(refs) for key, refs in tokenized.items()} != {key: len(refs) for key, refs in captions.items()}:
        detail = log.strip().splitlines()[-1] if log.strip() else "it printed nothing"
        raise FamevilError(f"the PTB tokenizer (java) failed: {detail}. Check that `java -version` runs.")
    return tokenized


_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_ABBREVIATIONS = {"etc", "mr", "mrs", "ms", "dr", "st", "vs", "inc", "co", "jr"}
_CONTRACTION = re.compile(r"(?<=\w)(n't|'s|'m|'re|'ve|'ll|'d)$")
_TRAILING = re.compile(r"^(.*?)([.,;:!?'%/]*)$")
_TAIL_PIECES = re.compile(r"\.\.\.|[?!]+|.")


def fallback_tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A Python stand-in for ptb_tokenize: the same tokens on ordinary captions, not on every corner of PTB."""
    return {key: [_ptb_like(caption) for caption in refs] for key, refs in captions.items()}


def _ptb_like(caption: str) -> str:
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS  # noqa: PLC0415 - the tokens PTB drops

    text = caption.lower()
    for bracket, name in _BRACKETS.items():
        text = text.replace(bracket, f" {name} ")
    text = re.sub(r'["`]', " ", text)  # PTB makes double quotes and backticks `` or '', then drops them
    text = re.sub(r"\bcannot\b", "can not", text)
    words = [word for token in text.split() for word in _split_token(token)]
    return " ".join(word for word in words if word and word not in PUNCTUATIONS)


def _split_token(token: str) -> list[str]:
    """PTB's splits of one whitespace-separated token: leading $ # and quotes, trailing punctuation, clitics."""
    words = []
    while token[:1] in ("$", "#", "'"):
        words.append(token[0])
        token = token[1:]
    core, tail = _TRAILING.match(token).groups()
    if tail.startswith(".") and ("." in core or core in _ABBREVIATIONS):  # u.s.a. e.g. etc. keep their dot
        core, tail = core + ".", tail[1:]
    clitic = _CONTRACTION.search(core)
    if clitic:
        words += [core[: clitic.start()], clitic.group()]
    else:
        words.append(core)
    return words + _TAIL_PIECES.findall(tail)


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor  # noqa: PLC0415

    scorer = Meteor()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (ValueError, OSError) as error:  # an empty line where a score belongs, or a closed pipe: the JVM died
        raise FamevilError(f"METEOR (java) stopped: {_stop_meteor(scorer) or error}") from error
    _stop_meteor(scorer)
    return float(score)


def _stop_meteor(scorer: Meteor) -> str:
    """End METEOR's JVM now, not whenever the scorer is collected, and return what it wrote to stderr.

    This is the scorer's own __del__, which then finds nothing left to do. compute_score leaves its
    lock held when it raises, and __del__ would then block forever, so the lock is freed first.
    """
    if scorer.lock.locked():
        scorer.lock.release()
    with scorer.lock:
        process = scorer.meteor_p
        process.stdin.close()
        process.kill()
        process.wait()
        log = process.stderr.read().decode(errors="replace")
        process.stdout.close()
        process.stderr.close()
    return log.strip()


def _with_stderr_captured(run: Callable[[], T]) -> tuple[T, str]:
    """Run with file descriptor 2 sent to a temporary file, returning what was written there.

    The Java tokenizer inherits our stderr and reports its speed on it, which redirect_stderr cannot
    catch. This swaps the descriptor for the whole process, so other threads' stderr lands here too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = run()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        return result, log.read().decode(errors="replace")
