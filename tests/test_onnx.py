"""famevil export --format onnx, on the tiny student (famevil-tiny: CLIP's causal text tower and BPE, a
torch resize) and on a SigLIP-like model (a timm trunk, a bidirectional text tower, a Hugging Face
tokenizer, PIL's bicubic resize): onnxruntime computes famevil's embeddings at batch sizes other than
the export's, the tokenizer file gives famevil's ids, and docs/model.md's snippet, run without PyTorch,
reproduces famevil's pixels, ids and embeddings."""

from __future__ import annotations

import html
import json
import random
import subprocess
import sys
from pathlib import Path

import ftfy
import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from data_specs.shards import Shards
from famevil.api import read_image
from famevil.bases import resolve_base
from famevil.checkpoint import load_checkpoint, save_checkpoint
from famevil.data.examples import text_tokens
from famevil.data.loading import records
from famevil.data.transforms import image_transform
from famevil.multitask import ModelConfig, MultiTaskModel
from famevil.onnx_export import IMAGE_ENCODER, SETTINGS_FILE, TEXT_ENCODER, TOKENIZER_FILE, write_encoders
from famevil.tasks.product_text import product_text
from stages.export import export
from tests.test_backbones import siglip_like_tokenizer, write_model
from tests.test_readme import ROOT, snippets

PARITY = 0.9999  # cosine of onnxruntime's and famevil's embeddings of the same pixels and tokens
BATCH_SIZES = (1, 3, 5)  # the export traces a batch of two
# Product copy, punctuation, HTML entities, ftfy's character fixes and other scripts.
VARIED_TEXTS = [
    "navy wool cardigan",
    "Red Silk Dress. A long-sleeved dress in red silk, 100% silk.",
    "Navy Wool CARDIGAN!! (size: XL; EU 42) -- 3/4 sleeves...",
    "don't won't I'm you're they've we'll he'd IT'S",
    "it\u2019s \u201cquoted\u201d \u2014 a dash\u2026",
    "\ufb01ne \ufb02uffy fabric",
    "\uff38\uff2c\u3000\u30b5\u30a4\u30ba \uff11\uff10\uff10\uff05 \uff8a\uff9f\uff70\uff76\uff70",
    "\u7ea2\u8272\u8fde\u8863\u88d9\uff0c\u957f\u8896",
    "\u041f\u043b\u0430\u0442\u044c\u0435 \u043a\u0440\u0430\u0441\u043d\u043e\u0435",
    "\u039f\u0394\u039f\u03a3 \u039a\u0391\u039b\u0397, \u03a3\u0391\u03a3",
    "Stra\u00dfe Gr\u00f6\u00dfe caf\u00e9 na\u00efve e\u0301",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "emoji \U0001f457\U0001f460\u2728",
    "AT&amp;T &lt;3 &amp;amp; &#39;quoted&#39;",
    "  spaced\t\nout\x1c\x85text  ",
    "a\x00b\x1fc\ufeffd\x96e",
    "",
    "<start_of_text> hi <end_of_text>",
    "word " * 100,
]

RANDOM_BLOCKS = [(0x20, 0x7F), (0x80, 0xA0), (0xA0, 0x250), (0x370, 0x400), (0x400, 0x500), (0x590, 0x700), (0x900, 0x980), (0xE00, 0xE80)]
RANDOM_BLOCKS += [(0x1100, 0x1200), (0x2000, 0x2070), (0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFF0), (0x1F300, 0x1F700)]


@pytest.fixture(scope="module")
def product_texts(tiny_shards) -> list[str]:
    return [product_text(record) for record in records(Shards.open(tiny_shards), "fashiongen/train")]


@pytest.fixture(scope="module")
def siglip_model(product_texts, tmp_path_factory) -> Path:
    """A checkpoint on a SigLIP-like base, with random TGIR and FIC adapters: no XMR, so the export
    takes its first task's."""
    root = tmp_path_factory.mktemp("onnx-siglip")
    (root / "base").mkdir()
    base = write_model(root / "base", "siglip", siglip_like_tokenizer(product_texts + VARIED_TEXTS), seed=0)
    model = resolve_base(f"local-dir:{base}", "famevil-tiny").model(ModelConfig(backbone="x", tasks=("tgir", "fic")))
    torch.manual_seed(0)
    for parameter in model.tsa.parameters():
        parameter.data.normal_(0, 0.05)
    (root / "model").mkdir()
    save_checkpoint(model, root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def exports(tiny_student, siglip_model, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (checkpoint, its ONNX export)."""
    root = tmp_path_factory.mktemp("onnx")
    return {name: (model, export(model, root / name, form="onnx").out) for name, model in (("student", tiny_student), ("siglip", siglip_model))}


def _settings(folder: Path) -> dict:
    return json.loads((folder / SETTINGS_FILE).read_text())


def _model(checkpoint: Path) -> MultiTaskModel:
    return load_checkpoint(checkpoint).eval()


def test_the_export_holds_the_encoders_settings_tokenizer_and_card(exports):
    _, folder = exports["student"]
    assert sorted(path.name for path in folder.iterdir()) == sorted(["README.md", "manifest.json", IMAGE_ENCODER, TEXT_ENCODER, SETTINGS_FILE, TOKENIZER_FILE])
    manifest = require_artifact(folder, "export")
    assert manifest.details["format"] == "onnx" and manifest.details["task"] == "xmr"
    assert "encoders with its xmr adapters as ONNX graphs" in (folder / "README.md").read_text()
    assert _settings(exports["siglip"][1])["task"] == "tgir"  # no XMR: the model's first task


@pytest.mark.parametrize("name", ["student", "siglip"])
def test_onnxruntime_computes_famevils_embeddings_at_other_batch_sizes(exports, name):
    checkpoint, folder = exports[name]
    network, settings = _model(checkpoint), _settings(folder)
    tokenizer, task, size = network.tokenizer(), settings["task"], network.preprocess.size
    images, texts = onnxruntime.InferenceSession(folder / IMAGE_ENCODER), onnxruntime.InferenceSession(folder / TEXT_ENCODER)
    # A causal tower takes a batch cut after its longest text, or the whole context; a bidirectional one only the context.
    assert texts.get_inputs()[0].shape == ["batch", "length" if tokenizer.trims else tokenizer.context_length]
    generator = torch.Generator().manual_seed(0)
    for batch in BATCH_SIZES:
        pixels = torch.randn(batch, 3, size, size, generator=generator)
        cut, full = text_tokens(VARIED_TEXTS[:batch], tokenizer), tokenizer(VARIED_TEXTS[:batch])
        with torch.no_grad():
            expected = [(images, pixels, network.encode_image(pixels, task)), (texts, cut, network.encode_text(cut, task))]
            expected += [(texts, full, network.encode_text(full, task))] if tokenizer.trims else []
        for session, inputs, famevils in expected:
            (computed,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
            cosine = F.cosine_similarity(torch.from_numpy(computed), famevils).min().item()
            assert cosine >= PARITY, (name, batch, session.get_inputs()[0].name, tuple(inputs.shape), cosine)
    assert text_tokens(VARIED_TEXTS[:5], tokenizer).shape[1] < tokenizer.context_length or not tokenizer.trims  # the cut ran a shorter length


@pytest.mark.parametrize("name", ["student", "siglip"])
def test_the_tokenizer_file_gives_famevils_ids(exports, product_texts, name):
    checkpoint, folder = exports[name]
    texts = VARIED_TEXTS + product_texts
    file = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    unescaped = [html.unescape(html.unescape(text)) for text in texts]  # the caller's part, as open_clip does it
    ids = [row.ids for row in file.encode_batch(unescaped)]
    expected = _model(checkpoint).tokenizer()(texts).tolist()
    assert [text for text, row, want in zip(texts, ids, expected, strict=True) if row != want] == []


def test_on_random_text_the_clip_tokenizer_file_differs_only_where_ftfy_repairs_mojibake(exports):
    """Strings of characters drawn from Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Thai, Hangul,
    CJK, punctuation, full-width and emoji blocks and C1 controls, one block per character."""
    checkpoint, folder = exports["student"]
    rng = random.Random(0)
    texts = ["".join(chr(rng.randrange(*rng.choice(RANDOM_BLOCKS))) if rng.random() < 0.85 else " " for _ in range(rng.randrange(1, 30))) for _ in range(2000)]
    file = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    ids = [row.ids for row in file.encode_batch([html.unescape(html.unescape(text)) for text in texts])]
    differing = [text for text, row, want in zip(texts, ids, _model(checkpoint).tokenizer()(texts).tolist(), strict=True) if row != want]
    assert len(differing) < len(texts) // 50 and all(ftfy.fix_encoding(text) != text for text in differing), differing


def test_the_demos_convolutional_stem_exports_in_eval_mode_and_leaves_the_model_so(tmp_path):
    """famevil-small's stem has BatchNorm: the graph uses its running statistics, and the export leaves
    the network in eval mode (torch.onnx.export restores the mode it found, children included)."""
    torch.manual_seed(0)
    network = MultiTaskModel(ModelConfig(backbone="famevil-small", tasks=("xmr",))).eval()
    for norm in (module for module in network.modules() if isinstance(module, torch.nn.BatchNorm2d)):
        norm.running_mean.normal_(0, 0.5), norm.running_var.uniform_(0.5, 2)
    write_encoders(network, "xmr", tmp_path)
    assert not any(module.training for module in network.modules())
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    (computed,) = onnxruntime.InferenceSession(tmp_path / IMAGE_ENCODER).run(None, {"pixels": pixels.numpy()})
    with torch.no_grad():
        assert F.cosine_similarity(torch.from_numpy(computed), network.encode_image(pixels, "xmr")).min() >= PARITY


def test_the_export_is_refused_in_one_line(tiny_student, cli, monkeypatch, tmp_path):
    result = cli("export", "--model", tiny_student, "--format", "onnx", "--task", "colour", "--out", tmp_path / "a")
    assert result.exit_code != 0 and "unknown task 'colour'" in result.output
    with pytest.raises(FamevilError, match=r"--task tgir: only --format onnx picks a task's adapters"):
        export(tiny_student, tmp_path / "b", task="tgir")
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(FamevilError, match=r"^--format onnx needs tokenizers: pip install 'famevil\[onnx\]'$"):
        export(tiny_student, tmp_path / "c", form="onnx")


def test_the_cli_exports_a_chosen_tasks_encoders(tiny_student, cli, tmp_path):
    result = cli("export", "--model", tiny_student, "--format", "onnx", "--task", "tgir", "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.output
    assert _settings(tmp_path / "onnx")["task"] == "tgir"
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    (computed,) = onnxruntime.InferenceSession(tmp_path / "onnx" / IMAGE_ENCODER).run(None, {"pixels": pixels.numpy()})
    with torch.no_grad():
        assert F.cosine_similarity(torch.from_numpy(computed), _model(tiny_student).encode_image(pixels, "tgir")).min() >= PARITY


def _documented_snippet() -> str:
    (snippet,) = [found for found in snippets(ROOT / "docs" / "model.md") if found.not_run == "needs an exported model"]
    return snippet.code


@pytest.mark.parametrize("name", ["student", "siglip"])
def test_the_documented_snippet_runs_the_encoders_without_pytorch(exports, tiny_raw, name, tmp_path):
    """docs/model.md's snippet as written, in a subprocess where `import torch` fails, against an export
    where it looks for one: its pixels within a level of famevil's (PIL's resize against torch's; none
    where famevil resizes with PIL too), famevil's token ids, and famevil's embeddings."""
    checkpoint, folder = exports[name]
    (tmp_path / "runs" / "demo" / "raw").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "onnx").symlink_to(folder)
    (tmp_path / "runs" / "demo" / "raw" / "fashioniq").symlink_to(tiny_raw / "fashioniq")
    program = "\n".join(
        [
            "import sys",
            "sys.modules['torch'] = None  # any import of PyTorch fails",
            _documented_snippet(),
            "np.savez('out.npz', paths=[str(path) for path in images], queries=queries, pixels=np.stack([pixels(path) for path in images]),"
            " tokens=tokens(queries), images=image_vectors, texts=text_vectors)",
        ]
    )
    run = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    written = np.load(tmp_path / "out.npz")
    network, settings = _model(checkpoint), _settings(folder)
    transform, task = image_transform(network.preprocess, train=False), settings["task"]
    images = torch.stack([transform(read_image(tmp_path / path)) for path in written["paths"]])
    levels = (torch.from_numpy(written["pixels"]) - images).abs() * torch.tensor(network.preprocess.std)[:, None, None] * 255
    assert levels.max() <= (1 if network.preprocess.resampler == "torch" else 0) + 1e-3, levels.max()
    tokens = text_tokens(written["queries"].tolist(), network.tokenizer())
    assert np.array_equal(written["tokens"], tokens.numpy())
    with torch.no_grad():
        famevils = {"images": network.encode_image(images, task), "texts": network.encode_text(tokens, task)}
    for kind, expected in famevils.items():
        assert F.cosine_similarity(torch.from_numpy(written[kind]), expected).min() >= PARITY, kind
