"""famevil export --format onnx: a model's image and text encoders, each with one task's adapters, as
ONNX graphs that onnxruntime runs without PyTorch, and beside them what a caller needs to prepare
inputs as famevil does: the preprocessing and the tokenizer's settings (SETTINGS_FILE), and the
tokenizer itself as a Hugging Face `tokenizers` file (TOKENIZER_FILE).

The encoders are FameVil.encode_image and encode_text, L2-normalised, with a dynamic batch; the text
encoder also takes any length up to the context where famevil itself cuts a batch's padding
(TextTokenizer.trims: a causal tower pooled at its end token), and the full context elsewhere (a
bidirectional tower reads its padding).

The tokenizer file reproduces open_clip's tokenizer, its text cleaning included, but for what a
`tokenizers` normaliser cannot do: HTML entities (the caller unescapes them, SETTINGS_FILE says how
often), and ftfy's repairs of mis-decoded text (mojibake) and of terminal escapes (docs/model.md,
ONNX encoders, lists the differences).
"""

from __future__ import annotations

import json
import warnings
from functools import reduce
from pathlib import Path
from typing import Any

import open_clip
import torch
from ftfy import fixes
from torch import nn

from data_specs.errors import FamevilError
from famevil.data.transforms import Preprocess, evaluation_side
from famevil.model.tokenizer import TextTokenizer
from famevil.multitask import MultiTaskModel
from famevil.optional import optional_module
from famevil.tasks import find_task
from famevil.tasks.base import CONTRASTIVE

IMAGE_ENCODER, TEXT_ENCODER = "image_encoder.onnx", "text_encoder.onnx"
SETTINGS_FILE, TOKENIZER_FILE = "encoders.json", "tokenizer.json"
PACKAGES = ("onnx", "tokenizers")  # torch.onnx writes its graphs with onnx; the tokenizer file is built with tokenizers
OPSET = 17  # LayerNormalization as one operator (onnxruntime 1.14 and later)
HTML_UNESCAPES = 2  # open_clip's basic_clean unescapes twice, after ftfy
# ftfy's fixes that change one character at a time, in the order fix_text applies them: each becomes a
# Replace in the tokenizer file. Its mojibake repair reads whole sequences and has no such form.
CHARACTER_FIXES = (fixes.fix_c1_controls, fixes.fix_latin_ligatures, fixes.fix_character_width, fixes.uncurl_quotes, fixes.remove_control_chars)
CASED = r"[\p{Lu}\p{Ll}\p{Lt}]"  # the letters with case, which Python's lower() reads to tell a final sigma


def require_packages() -> None:
    """One line naming the extra, before any work, where a package the export needs is missing."""
    for package in PACKAGES:
        optional_module(package, "--format onnx", package, "pip install 'famevil[onnx]'")


def encoder_task(network: MultiTaskModel, task: str | None) -> str:
    """The task whose adapters the encoders carry: the one asked for, else cross-modal retrieval where
    the model has it, else its first."""
    if task is None:
        # A contrastive task's adapters (cross-modal retrieval's): what text-to-image search compares.
        return next((name for name in network.tasks if find_task(name).mode == CONTRASTIVE), network.tasks[0])
    name = find_task(task).name
    if name not in network.tasks:
        raise FamevilError(f"--task {task}: this model has no {name} adapters (its tasks: {', '.join(network.tasks)})")
    return name


class TowerEncoder(nn.Module):
    """One of the network's encoders (encode_image or encode_text) with one task's adapters, as a module
    that torch.onnx traces; the network stays a submodule, so that its weights become the graph's."""

    def __init__(self, network: MultiTaskModel, task: str, encode: str):
        super().__init__()
        self.network, self.task, self.encode = network, task, encode
        # torch.onnx.export traces in eval mode, then puts the module back in the mode it found, children
        # included: a wrapper left in training mode would leave the network's BatchNorm and dropout training.
        self.eval()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.network, self.encode)(inputs, self.task)


def write_encoders(network: MultiTaskModel, task: str, directory: Path) -> None:
    """IMAGE_ENCODER, TEXT_ENCODER, SETTINGS_FILE and TOKENIZER_FILE into `directory`."""
    tokenizer, size = network.tokenizer(), network.preprocess.size
    # Traced at a batch of two, so that no size of one is taken for a constant; the tests run other sizes.
    _write_graph(TowerEncoder(network, task, "encode_image"), torch.zeros(2, 3, size, size), directory / IMAGE_ENCODER, "pixels", {0: "batch"})
    text_axes = {0: "batch", 1: "length"} if tokenizer.trims else {0: "batch"}
    _write_graph(TowerEncoder(network, task, "encode_text"), tokenizer(["navy wool cardigan", "a"]), directory / TEXT_ENCODER, "tokens", text_axes)
    settings = encoder_settings(network, task)
    (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    tokenizer_file(tokenizer).save(str(directory / TOKENIZER_FILE))


def _write_graph(encoder: TowerEncoder, example: torch.Tensor, path: Path, input_name: str, axes: dict[int, str]) -> None:
    """One encoder as an ONNX graph with the given dynamic axes. The TorchScript exporter (dynamo=False,
    deprecated since torch 2.9 but kept): it traces famevil's block-by-block towers in about a second,
    where torch.export's exporter took five to ten times as long on the tiny towers, and an early try
    of it wrote a text graph onnxruntime refused ("Duplicate definition of name (embedding)")."""
    with torch.no_grad(), warnings.catch_warnings():
        # Its deprecation notice, and tracer warnings about shapes read as numbers: dynamic_axes keeps them symbolic.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (example,),
            str(path),
            dynamo=False,
            input_names=[input_name],
            output_names=["embeddings"],
            dynamic_axes={input_name: axes, "embeddings": {0: "batch"}},
            opset_version=OPSET,
        )


def encoder_settings(network: MultiTaskModel, task: str) -> dict[str, Any]:
    """SETTINGS_FILE: the encoders' inputs and outputs, the preprocessing and the tokenizer's settings."""
    tokenizer, size = network.tokenizer(), network.preprocess.size
    return {
        "task": task,
        "embedding_dim": network.embed_dim,
        "normalized": True,  # L2: a dot product is the cosine
        "image_encoder": {"file": IMAGE_ENCODER, "input": "pixels", "shape": ["batch", 3, size, size], "dtype": "float32", "output": "embeddings"},
        "text_encoder": {
            "file": TEXT_ENCODER,
            "input": "tokens",
            "shape": ["batch", "length" if tokenizer.trims else tokenizer.context_length],
            "dtype": "int64",
            "output": "embeddings",
        },
        "preprocess": image_settings(network.preprocess),
        "tokenizer": tokenizer_settings(tokenizer),
    }


def image_settings(preprocess: Preprocess) -> dict[str, Any]:
    """What famevil's evaluation transform (image_transform, train=False) does, in order: an RGB image
    resized with `interpolation` to `resize` pixels a side ("squash") or on its shortest side
    ("shortest"), centre-cropped to `size` (offsets rounded as torchvision rounds them), scaled to
    [0, 1], normalised with `mean` and `std` per channel, channels first. `resampler` says where
    famevil's resize runs: "pil", as a PIL reimplementation does, or "torch" (an antialiased tensor
    resize, which PIL's differs from by a level in under 1% of pixels)."""
    return {
        "size": preprocess.size,
        "resize": evaluation_side(preprocess.size),
        "fit": preprocess.evaluation_fit,
        "interpolation": preprocess.interpolation,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "resampler": preprocess.resampler,
    }


def tokenizer_settings(tokenizer: TextTokenizer) -> dict[str, Any]:
    """The tokenizer file's name and what the encoders expect of its ids. `trims`: whether a batch may
    drop the columns after its longest text's end id (the first from the second position on)."""
    return {
        "file": TOKENIZER_FILE,
        "kind": "hugging_face" if tokenizer.hugging_face else "open_clip_bpe",
        "context_length": tokenizer.context_length,
        "start_id": tokenizer.start,
        "end_id": tokenizer.end,
        "pad_id": tokenizer.pad,
        "trims": tokenizer.trims,
        "html_unescapes": HTML_UNESCAPES,  # html.unescape the text this many times before the tokenizer file, as open_clip does
    }


def tokenizer_file(tokenizer: TextTokenizer) -> Any:
    """The model's tokenizer as a `tokenizers.Tokenizer` that gives open_clip's ids at the context
    length: open_clip's text cleaning (CHARACTER_FIXES, NFC, whitespace collapsed, lower case where
    it lowers) before the tokenizer's own normalisation, then its truncation and padding."""
    from tokenizers import Tokenizer, normalizers  # noqa: PLC0415 - the onnx extra's, checked by require_packages

    lowercase = _lowercases(tokenizer)
    hub = tokenizer.wrapped.tokenizer if tokenizer.hugging_face else None  # transformers' tokenizer, around a tokenizers one
    built = Tokenizer.from_str(hub.backend_tokenizer.to_str()) if hub else _clip_bpe(tokenizer.wrapped)  # a copy: the model's own stays as it is
    own = [built.normalizer] if built.normalizer is not None else []
    built.normalizer = normalizers.Sequence([*_open_clip_cleaning(lowercase), *own])
    truncate, pad = (hub.truncation_side, hub.padding_side) if hub else ("right", "right")
    built.enable_truncation(tokenizer.context_length, direction=truncate)
    built.enable_padding(direction=pad, length=tokenizer.context_length, pad_id=tokenizer.pad, pad_token=built.id_to_token(tokenizer.pad))
    return built


def _lowercases(tokenizer: TextTokenizer) -> bool:
    """Whether open_clip's cleaning lowers the text; one line where the tokenizer does what a tokenizer file cannot."""
    wrapped = tokenizer.wrapped
    cleaning = {open_clip.tokenizer.get_clean_fn("lower"): True, open_clip.tokenizer.get_clean_fn("whitespace"): False}
    unsupported = (
        (wrapped.clean_fn not in cleaning, f"{wrapped.clean_fn.__name__} cleaning"),
        (getattr(wrapped, "reduction_fn", None) is not None, "a reduction mask"),
        (bool(getattr(wrapped, "tokenizer_mode", "")) or getattr(wrapped, "strip_sep_token", False), "a tokenizer mode or a stripped separator"),
        (tokenizer.hugging_face and not wrapped.tokenizer.is_fast, "no fast (Rust) form"),
    )
    for applies, what in unsupported:
        if applies:
            raise FamevilError(f"--format onnx: the text tower's tokenizer has {what}, which a tokenizers file cannot hold; use --format famevil")
    return cleaning[wrapped.clean_fn]


def _open_clip_cleaning(lowercase: bool) -> list[Any]:
    """open_clip's basic_clean and whitespace_clean (and lower()) as `tokenizers` normalisers: ftfy's
    character fixes, its NFC, whitespace runs (Python's idea of whitespace, str.split's) to one space,
    the ends stripped; then lower case, with Python's final sigma (ς at a word's end), which
    `tokenizers`' character-wise Lowercase lacks."""
    from tokenizers import Regex, normalizers  # noqa: PLC0415 - the onnx extra's, checked by require_packages

    whitespace = "".join(f"\\x{{{code:X}}}" for code in range(0x110000) if chr(code).isspace())
    steps = [normalizers.Replace(character, fixed) for character, fixed in _character_fixes().items()]
    steps += [normalizers.NFC(), normalizers.Replace(Regex(f"[{whitespace}]+"), " "), normalizers.Strip()]
    if lowercase:
        steps += [normalizers.Replace(Regex(f"(?<={CASED})Σ(?!{CASED})"), "ς"), normalizers.Lowercase()]
    return steps


def _character_fixes() -> dict[str, str]:
    """Each character ftfy's character-wise fixes change, and what into, found by running them on every
    character of the Basic Multilingual Plane, where their tables lie (a quarter of a second)."""
    fixed = {character: reduce(lambda text, fix: fix(text), CHARACTER_FIXES, character) for character in map(chr, range(0x10000))}
    return {character: result for character, result in fixed.items() if result != character}


def _clip_bpe(clip: open_clip.tokenizer.SimpleTokenizer) -> Any:
    """open_clip's CLIP BPE as a `tokenizers` BPE: the vocabulary and merges SimpleTokenizer reads from
    open_clip's bundled bpe_simple_vocab_16e6.txt.gz, its pre-tokenisation regex (case-insensitive, as
    it compiles it) then CLIP's byte-to-character alphabet (GPT-2's, which ByteLevel uses), the "</w>"
    end-of-word suffix, and the start and end tokens around each text."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors  # noqa: PLC0415 - the onnx extra's

    merges = sorted(clip.bpe_ranks, key=clip.bpe_ranks.get)
    built = Tokenizer(models.BPE(vocab=clip.encoder, merges=merges, end_of_word_suffix="</w>"))
    words = pre_tokenizers.Split(Regex(f"(?i){clip.pat.pattern}"), behavior="removed", invert=True)  # keep the matches, drop the rest
    built.pre_tokenizer = pre_tokenizers.Sequence([words, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    special = [clip.decoder[token] for token in clip.all_special_ids]
    built.add_special_tokens([AddedToken(token, special=True, normalized=True) for token in special])  # matched after cleaning, as open_clip's regex does
    start, end = clip.decoder[clip.sot_token_id], clip.decoder[clip.eot_token_id]
    built.post_processor = processors.TemplateProcessing(single=f"{start} $A {end}", special_tokens=[(start, clip.sot_token_id), (end, clip.eot_token_id)])
    return built
