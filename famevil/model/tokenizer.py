"""The base's tokenizer, and what the tasks need to know of it: its start, end and padding ids, where
each text ends, and whether a batch may drop the padding after its longest text.

Two kinds, as open_clip.get_tokenizer makes them: open_clip's bundled CLIP BPE (nothing downloaded),
or the Hugging Face tokenizer a text tower names in `hf_tokenizer_name` (SigLIP's), read from the
base's own folder or the Hub with the `transformers` library (the `hf` extra).
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from data_specs.errors import FamevilError

TOKENIZER_DIR = "tokenizer"  # a checkpoint's copy of a Hugging Face tokenizer's files, so that it is self-contained


class TextTokenizer:
    """Texts to token ids at the text tower's context length, as open_clip's tokenizer makes them, and back.

    start: the id a caption begins with (CLIP's start of text; a tokenizer without one begins with its
    padding id, as T5's decoder does). end: the id after the last word. pad: the id that fills the rest.
    Plain attributes and open_clip's own tokenizer object, so that it pickles into data-loading workers.
    """

    def __init__(self, wrapped, context_length: int, start: int, end: int, pad: int, trims: bool, prepends_start: bool = False):
        self.wrapped = wrapped  # open_clip's SimpleTokenizer or HFTokenizer
        self.context_length = context_length
        self.start, self.end, self.pad = start, end, pad
        # A causal tower pooled at the end token computes the same for its real positions without the
        # padding after the batch's longest text; a bidirectional one (or one pooled at the last position) does not.
        self.trims = trims
        self.prepends_start = prepends_start
        self.adds_start = bool(self(["a"])[0, 0] == start)  # a word, not "": an empty text may begin with its end id

    @property
    def hugging_face(self) -> bool:
        return isinstance(self.wrapped, open_clip.tokenizer.HFTokenizer)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        tokens = self.wrapped(texts)
        if self.prepends_start:
            tokens = torch.cat([torch.full_like(tokens[:, :1], self.start), tokens[:, :-1]], dim=1)
        return tokens

    def decode(self, ids: list[int]) -> str:
        if self.hugging_face:
            return self.wrapped.tokenizer.decode(ids, skip_special_tokens=True)
        return self.wrapped.decode(ids)

    def ends(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch,) the position of each row's end token: its first from the second position on (the
        first may be a start or padding id equal to it); the last position where a row has none."""
        is_end = tokens == self.end
        is_end[:, 0] = False
        return torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), tokens.shape[1] - 1)

    def for_captions(self) -> TextTokenizer:
        """This tokenizer with every text beginning with the start id, which a caption is decoded from:
        itself where it adds one (CLIP's), else one that puts it before the text (and drops the last position)."""
        if self.adds_start:
            return self
        return TextTokenizer(self.wrapped, self.context_length, self.start, self.end, self.pad, self.trims, prepends_start=True)

    def save(self, directory: Path) -> None:
        """A Hugging Face tokenizer's files into `directory` (nothing for CLIP's bundled BPE)."""
        if self.hugging_face:
            self.wrapped.save_pretrained(str(directory))


def text_tokenizer(architecture: dict, files: str | Path | None = None) -> TextTokenizer:
    """The tokenizer of an open_clip architecture: open_clip's CLIP BPE at the tower's context length,
    or, where the text tower names a Hugging Face tokenizer, that one, from `files` (the base's folder,
    a checkpoint's copy) or else the Hub name the config gives."""
    text = architecture["text_cfg"]
    context_length = text.get("context_length", 77)
    kwargs = text.get("tokenizer_kwargs") or {}
    trims = not text.get("no_causal_mask", False) and text.get("pool_type", "argmax") in ("argmax", "eos")
    if not text.get("hf_tokenizer_name"):
        clip = open_clip.tokenizer.SimpleTokenizer(context_length=context_length, **kwargs)
        return TextTokenizer(clip, context_length, clip.sot_token_id, clip.eot_token_id, 0, trims)
    source = str(files or text["hf_tokenizer_name"])
    try:
        wrapped = open_clip.tokenizer.HFTokenizer(source, context_length=context_length, tokenizer_mode=text.get("tokenizer_mode"), **kwargs)
    except ImportError:
        raise FamevilError(f"the text tower's tokenizer ({source}) is a Hugging Face one, which needs transformers: pip install 'famevil[hf]'") from None
    except (OSError, ValueError) as error:  # transformers reports a missing or unreachable tokenizer either way
        raise FamevilError(
            f"could not load the text tower's tokenizer from {source} ({str(error).splitlines()[0]}); it needs its files or the internet"
        ) from None
    hub = wrapped.tokenizer
    end = hub.eos_token_id if hub.eos_token_id is not None else hub.sep_token_id
    if end is None:
        raise FamevilError(f"the tokenizer at {source} has no end-of-text token (eos or sep); famevil needs one to find where a text ends")
    pad = hub.pad_token_id if hub.pad_token_id is not None else end
    start = next((token for token in (hub.bos_token_id, hub.cls_token_id) if token is not None and token != end), pad)
    return TextTokenizer(wrapped, context_length, start, end, pad, trims)
