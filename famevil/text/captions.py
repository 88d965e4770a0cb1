"""Captions as copy a shop can print: CLIP's BPE decodes to a stream of tokens ("short - sleeved shirt .
button closure at front , 1 0 0 % cotton"); `as_copy` joins it back into text ("Short-sleeved shirt.
Button closure at front, 100% cotton") and puts it in sentence case. Text a Hugging Face tokenizer
decoded is already joined and passes through unchanged but for its case.

`degenerate` tells a caption that is not text at all (". . . .", "a a a a a"), what a model trained for
a few steps writes.
"""

from __future__ import annotations

import re
from collections import Counter

# (pattern, replacement), in order: each undoes one way the BPE decoding spaces tokens apart.
_JOINS = (
    (re.compile(r"(?<=\d) (?=\d)"), ""),  # CLIP's BPE writes each digit as a token: "1 0 0" is 100
    (re.compile(r"(?<=\d) ([.,]) (?=\d)"), r"\1"),  # 3 . 5 cm, 1 , 200
    (re.compile(r"(?<=\w) ([-/]) (?=\w)"), r"\1"),  # short-sleeved, black/white
    (re.compile(r" '(s|t|re|ve|m|ll|d)\b"), r"'\1"),  # women's, it's
    (re.compile(r" ([.,;:!?%)\]])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[]) "), r"\1"),  # nor after an opening bracket
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),  # "logo"
)
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([^\W\d_])")
_WORD = re.compile(r"[^\W\d_]{2,}")  # two letters or more
REPEATED_SHARE = 0.5  # a caption whose commonest token is more than this share of its tokens repeats itself
REPEATED_MIN_TOKENS = 4  # ... when it has this many tokens (two "a"s of three tokens are a short caption, not a loop)


def as_copy(decoded: str) -> str:
    """A decoded caption joined into text and put in sentence case."""
    text = " ".join(decoded.split())
    for pattern, replacement in _JOINS:
        text = pattern.sub(replacement, text)
    return _SENTENCE_START.sub(lambda match: match[1] + match[2].upper(), text)


def degenerate(caption: str) -> bool:
    """Not text: no word of two letters or more, or one token making more than half of its tokens."""
    if not _WORD.search(caption):
        return True
    tokens = re.findall(r"\w+|[^\w\s]", caption.lower())
    return len(tokens) >= REPEATED_MIN_TOKENS and Counter(tokens).most_common(1)[0][1] > REPEATED_SHARE * len(tokens)


def degenerate_warning(captions: list[str], model: str) -> str | None:
    """One line when most of a model's captions are degenerate: it has not learnt to caption yet."""
    bad = [caption for caption in captions if degenerate(caption)]
    if not bad or len(bad) * 2 < len(captions):
        return None
    return (
        f"{model}: {len(bad)} of {len(captions)} captions are not text (such as {bad[0]!r}: no word of two letters, "
        "or one token over half of it); the model needs more training for captioning"
    )
