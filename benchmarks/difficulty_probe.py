"""Benchmark: is the prepared data learnable without saturating? A tiny CLIP, trained from scratch on
the CPU for a fixed wall-clock budget, scored against chance on XMR, SCR and zero-shot TGIR.

    python benchmarks/difficulty_probe.py --shards DIR [--seconds 120] [--caption-seconds 120] [--image-size 64] [--batch-size 64] [--seed 0]

Trains a small open_clip CLIP (no pretrained weights) with the symmetric InfoNCE loss on FashionGen
train (image, description) pairs until --seconds of training have passed, then prints, each next to
its chance level: full-gallery cross-modal retrieval R@1/5/10 on FashionGen val, a linear probe for
sub-categories on frozen image embeddings and one on the copy's words alone (accuracy, macro-F1), and zero-shot composed retrieval
(reference image + modification text) R@10/50 per FashionIQ val group. Then a small captioner, also
from scratch (a 3-layer CNN whose 8x8 feature map a 2-layer transformer decoder cross-attends to,
over the training text's tokens), trained on "title. description" for --caption-seconds: its greedy
captions' BLEU-4 and CIDEr against the random-caption chance, its grounding gap (teacher-forced loss
with other products' images against their own, percent) and its share of distinct captions. Every
number should sit clearly above chance and clearly below 100: a data set a toy model saturates can
not rank real ones.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import webdataset as wds
from torchvision.transforms import v2

from data_specs.shards import FASHIONIQ_GROUPS, Shards, read_vocab
from famevil.metrics.captioning import caption_scores
from famevil.metrics.chance import fic_chance, scr_chance, tgir_chance, xmr_chance
from famevil.metrics.classification import accuracy, macro_f1
from famevil.metrics.retrieval import ranks_from_scores, recall

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)  # OpenAI CLIP statistics
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def load(root: Path, subset: str, image_keys: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Every sample of a subset in memory: uint8 image tensors (N, 3, H, W) per key, and the json records."""
    urls = [str(p) for p in Shards.open(root).paths(subset)]
    images: dict[str, list[torch.Tensor]] = {key: [] for key in image_keys}
    records: list[dict[str, Any]] = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("torchrgb8"):
        for key in image_keys:
            images[key].append(sample[key])
        records.append(sample["json"])
    return {key: torch.stack(v) for key, v in images.items()}, records


def build_model(image_size: int) -> open_clip.model.CLIP:
    vision = open_clip.model.CLIPVisionCfg(image_size=image_size, layers=4, width=128, patch_size=8, head_width=32)
    text = open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=128, heads=4, layers=4)
    return open_clip.model.CLIP(embed_dim=128, vision_cfg=vision, text_cfg=text)


def to_input(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


@torch.no_grad()
def embed(encode: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Unit-norm embeddings, in batches so evaluation memory stays flat."""
    return torch.cat([F.normalize(encode(inputs[i : i + batch]), dim=-1) for i in range(0, len(inputs), batch)])


def train(model: open_clip.model.CLIP, images: torch.Tensor, tokens: torch.Tensor, args: argparse.Namespace) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    # Light augmentation: crops keep the garment recognisable; flips would add nothing to synthetic views.
    augment = v2.RandomResizedCrop(args.image_size, scale=(0.8, 1.0), antialias=True)
    rng = np.random.default_rng(args.seed)
    labels = torch.arange(args.batch_size)
    losses: list[float] = []
    model.train()
    began = time.perf_counter()
    while time.perf_counter() - began < args.seconds:
        index = torch.from_numpy(rng.choice(len(images), size=args.batch_size, replace=False))
        batch = to_input(torch.stack([augment(images[i]) for i in index]))
        image_features, text_features, logit_scale = model(batch, tokens[index])
        logits = logit_scale * image_features @ text_features.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP's clamp: a temperature below 1/100 destabilises training
            model.logit_scale.clamp_(0, np.log(100))
        losses.append(loss.item())
    elapsed = time.perf_counter() - began
    print(
        f"trained {len(losses)} steps in {elapsed:.0f} s: {len(losses) * args.batch_size / elapsed:.1f} samples/s, "
        f"epochs {len(losses) * args.batch_size / len(images):.1f}, loss {np.mean(losses[:10]):.3f} (first 10 steps) -> "
        f"{np.mean(losses[-10:]):.3f} (last 10; chance ln {args.batch_size} = {np.log(args.batch_size):.3f}), "
        f"logit scale {model.logit_scale.exp().item():.1f}"
    )
    model.eval()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, classes: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Multinomial logistic regression, full batch, on standardised features (train statistics).

    A briefly trained CLIP's embeddings are very anisotropic (one direction dominates), and on the raw
    unit vectors Adam stays near the majority class for thousands of steps; standardising is an affine
    map a linear probe could learn anyway, so it changes the optimiser's speed, not what is measurable.
    """
    torch.manual_seed(seed)
    mean, std = train_x.mean(dim=0), train_x.std(dim=0) + 1e-6
    probe = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(1000):  # near convergence: the result moves by about a point between 1000 and 3000 steps
        loss = F.cross_entropy(probe((train_x - mean) / std), train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return lambda x: probe((x - mean) / std)


def bag_of_words(records: list[dict[str, Any]], vocabulary: dict[str, int]) -> torch.Tensor:
    """Which training-vocabulary words each product's title and description use (0/1 features)."""
    features = torch.zeros(len(records), len(vocabulary))
    for i, record in enumerate(records):
        for word in re.findall(r"[a-z0-9-]+", f"{record['title']} {record['description']}".lower()):
            if word in vocabulary:
                features[i, vocabulary[word]] = 1
    return features


class Captioner(torch.nn.Module):
    """A CNN encoder and a causal transformer decoder that cross-attends to its 8x8 feature map."""

    def __init__(self, vocabulary: int, width: int = 128, length: int = 77):
        super().__init__()
        layers: list[torch.nn.Module] = []
        for channels_in, channels_out in ((3, 32), (32, 64), (64, width)):
            layers += [torch.nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1), torch.nn.BatchNorm2d(channels_out), torch.nn.GELU()]
        self.encoder = torch.nn.Sequential(*layers)
        self.embed = torch.nn.Embedding(vocabulary, width)
        self.position = torch.nn.Parameter(0.02 * torch.randn(length, width))
        layer = torch.nn.TransformerDecoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = torch.nn.TransformerDecoder(layer, 2)
        self.head = torch.nn.Linear(width, vocabulary)

    def memory(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images).flatten(2).transpose(1, 2)

    def forward(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[1]
        causal = torch.nn.Transformer.generate_square_subsequent_mask(length)
        return self.head(self.decoder(self.embed(inputs) + self.position[:length], memory, tgt_mask=causal, tgt_is_causal=True))


def caption_probe(
    train_images: torch.Tensor, train_records: list[dict[str, Any]], val_images: torch.Tensor, val_records: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    tokenize = open_clip.get_tokenizer("ViT-B-32")
    texts = [f"{r['title']}. {r['description']}" for r in train_records]
    val_texts = [f"{r['title']}. {r['description']}" for r in val_records]
    train_tokens, val_tokens = tokenize(texts), tokenize(val_texts)
    ids = torch.unique(torch.cat([train_tokens.flatten(), torch.tensor([tokenize.sot_token_id, tokenize.eot_token_id])]))  # padding (0) among them
    column = torch.full((int(ids.max()) + 1,), 0, dtype=torch.long)
    column[ids] = torch.arange(len(ids))
    compact = lambda tokens: column[tokens.clamp(max=len(column) - 1)]  # noqa: E731 - a validation token outside the training text reads as padding
    model = Captioner(len(ids))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    augment = v2.RandomResizedCrop(args.image_size, scale=(0.8, 1.0), antialias=True)
    rng = np.random.default_rng(args.seed)

    def losses(images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per caption, the summed next-token loss over real tokens."""
        targets = compact(tokens[:, 1:])
        logits = model(model.memory(images), compact(tokens[:, :-1]))
        return (F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") * (tokens[:, 1:] != 0)).sum(dim=1)

    steps, began = 0, time.perf_counter()
    model.train()
    while time.perf_counter() - began < args.caption_seconds:
        index = torch.from_numpy(rng.choice(len(train_images), size=args.batch_size, replace=False))
        tokens = train_tokens[index][:, : int((train_tokens[index] != 0).sum(dim=1).max())]
        loss = losses(to_input(torch.stack([augment(train_images[i]) for i in index])), tokens).sum() / (tokens[:, 1:] != 0).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    model.eval()
    resize = v2.Resize(args.image_size, antialias=True)
    generated, matching, shuffled, counted_tokens = [], 0.0, 0.0, 0
    products = torch.tensor([r["product_id"] for r in val_records])
    with torch.no_grad():
        for start in range(0, len(val_images), 128):
            images = to_input(resize(val_images[start : start + 128]))
            memory = model.memory(images)
            tokens = torch.full((len(images), 1), int(column[tokenize.sot_token_id]))
            for _ in range(76):
                tokens = torch.cat([tokens, model(memory, tokens)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
            end = int(column[tokenize.eot_token_id])
            for row_tokens in tokens[:, 1:].tolist():
                kept = row_tokens[: row_tokens.index(end)] if end in row_tokens else row_tokens
                generated.append(tokenize.decode(ids[kept].tolist()).strip())
            batch_tokens = val_tokens[start : start + 128]
            others = torch.roll(torch.arange(len(images)), 1)
            counted = products[start : start + 128] != products[start : start + 128][others]
            matching += losses(images, batch_tokens)[counted].sum().item()
            shuffled += losses(images[others], batch_tokens)[counted].sum().item()
            counted_tokens += int((batch_tokens[counted][:, 1:] != 0).sum())
    if args.save_captions:
        args.save_captions.mkdir(parents=True, exist_ok=True)  # read by benchmarks/caption_diagnostics.py attributes
        with open(args.save_captions / "captions.jsonl", "w", encoding="utf-8") as lines:
            lines.writelines(json.dumps({"generated": g, "references": [t]}) + "\n" for g, t in zip(generated, val_texts, strict=True))
    scores = caption_scores({str(i): [t] for i, t in enumerate(val_texts)}, {str(i): g for i, g in enumerate(generated)}, meteor=False)
    chance = fic_chance(texts, val_texts, args.seed)
    print(f"\ncaptioner: {steps} steps in {args.caption_seconds:.0f} s over {len(ids)} tokens; e.g. {generated[0]!r}")
    print(f"{'task':<28}{'metric':<12}{'model':>8}{'chance':>10}{'ratio':>10}")
    row("FIC greedy", "BLEU-4 (coco-caption)", scores.bleu4, chance["coco_bleu4"])
    row("FIC greedy", "CIDEr", scores.cider, chance["cider"])
    gap = 100 * (shuffled - matching) / matching
    print(f"{'FIC grounding gap':<28}{'percent':<12}{gap:>8.2f}{'':>10}{'':>10}")
    print(f"{'FIC distinct captions':<28}{'percent':<12}{100 * len(set(generated)) / len(generated):>8.2f}")


def row(task: str, metric: str, value: float, chance: float) -> None:
    print(f"{task:<28}{metric:<12}{value:>8.2f}{chance:>10.2f}{value / chance:>9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--caption-seconds", type=float, default=120)
    parser.add_argument("--save-captions", type=Path, help="write the captioner's captions.jsonl into this folder")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(2)
    started = time.perf_counter()

    train_images, train_records = load(args.shards, "fashiongen/train", ("jpg",))
    val_images, val_records = load(args.shards, "fashiongen/val", ("jpg",))
    triplet_images, triplets = load(args.shards, "fashioniq/val", ("reference.jpg",))
    gallery_images, gallery = load(args.shards, "fashioniq/gallery-val", ("jpg",))
    print(
        f"loaded {len(train_records)} train, {len(val_records)} val, {len(triplets)} triplets, "
        f"{len(gallery)} gallery images in {time.perf_counter() - started:.0f} s"
    )

    tokenize = open_clip.get_tokenizer("ViT-B-32")  # the bundled BPE vocabulary: nothing downloads
    model = build_model(args.image_size)
    # Evaluation sees the whole garment at the training resolution, no crop.
    resize = v2.Resize(args.image_size, antialias=True)
    train(model, train_images["jpg"], tokenize([r["description"] for r in train_records]), args)

    print(f"\n{'task':<28}{'metric':<12}{'model':>8}{'chance':>10}{'ratio':>10}")
    # XMR, full gallery: every view of the query's product is a positive, in both directions.
    images = embed(model.encode_image, to_input(resize(val_images["jpg"])))
    texts = embed(model.encode_text, tokenize([r["description"] for r in val_records]))
    products = torch.tensor([r["product_id"] for r in val_records])
    positive = products[:, None] == products[None, :]
    chance = xmr_chance(products.tolist())
    for name, similarity in (("XMR full I2T", images @ texts.T), ("XMR full T2I", texts @ images.T)):
        for k, value in recall(ranks_from_scores(similarity, positive)).items():
            row(name, f"R@{k}", value, chance[f"full_r{k}"])

    # SCR: a linear probe over the full vocabulary, so validation-only sub-categories count as misses.
    classes = len(read_vocab(args.shards)["subcategory"].names)
    train_y = [r["subcategory_id"] for r in train_records]
    val_y = [r["subcategory_id"] for r in val_records]
    train_x = embed(model.encode_image, to_input(resize(train_images["jpg"])))
    probe = linear_probe(train_x, torch.tensor(train_y), classes, args.seed)
    with torch.no_grad():
        predicted = probe(images).argmax(dim=1).tolist()
    chance = scr_chance(train_y, val_y)
    row("SCR linear probe", "accuracy", 100 * accuracy(val_y, predicted), chance["accuracy"])
    row("SCR linear probe", "macro-F1", 100 * macro_f1(val_y, predicted), chance["macro_f1"])
    # SCR from the copy alone: how much the words give away (FAME-ViL's SCR reads image and text).
    words = {w: i for i, w in enumerate(sorted({w for r in train_records for w in re.findall(r"[a-z0-9-]+", f"{r['title']} {r['description']}".lower())}))}
    text_probe = linear_probe(bag_of_words(train_records, words), torch.tensor(train_y), classes, args.seed)
    with torch.no_grad():
        predicted = text_probe(bag_of_words(val_records, words)).argmax(dim=1).tolist()
    row("SCR text-only probe", "accuracy", 100 * accuracy(val_y, predicted), chance["accuracy"])
    row("SCR text-only probe", "macro-F1", 100 * macro_f1(val_y, predicted), chance["macro_f1"])

    # TGIR, zero-shot: compose by adding the reference image and modification text embeddings.
    references = embed(model.encode_image, to_input(resize(triplet_images["reference.jpg"])))
    modifications = embed(model.encode_text, tokenize([", ".join(t["captions"]) for t in triplets]))
    queries = F.normalize(references + modifications, dim=-1)
    candidates = embed(model.encode_image, to_input(resize(gallery_images["jpg"])))
    sizes = {g: sum(item["group"] == g for item in gallery) for g in FASHIONIQ_GROUPS}
    chance = tgir_chance(sizes)
    scores: dict[int, list[float]] = {10: [], 50: []}
    for group in FASHIONIQ_GROUPS:
        members = [i for i, item in enumerate(gallery) if item["group"] == group]
        asins = [gallery[i]["asin"] for i in members]
        asked = [i for i, t in enumerate(triplets) if t["group"] == group]
        # A target missing from the gallery stays a miss: -1 matches no gallery column.
        targets = torch.tensor([asins.index(triplets[i]["target"]) if triplets[i]["target"] in asins else -1 for i in asked])
        positive = torch.arange(len(members))[None, :] == targets[:, None]
        similarity = queries[asked] @ candidates[members].T
        for k, value in recall(ranks_from_scores(similarity, positive), tuple(scores)).items():
            scores[k].append(value)
            row(f"TGIR zero-shot {group}", f"R@{k}", scores[k][-1], chance[f"{group}_r{k}"])
    for k in scores:
        row("TGIR zero-shot average", f"R@{k}", float(np.mean(scores[k])), chance[f"avg_r{k}"])
    caption_probe(train_images["jpg"], train_records, val_images["jpg"], val_records, args)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
