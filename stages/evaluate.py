"""famevil evaluate: the paper's evaluation protocols for the four tasks, on any famevil checkpoint or a plain backbone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data_specs.errors import FamevilError
from data_specs.manifest import MANIFEST_FILE, InputRef, Manifest, read_manifest, require_artifact, write_manifest
from data_specs.shards import fashiongen_subset, gallery_subset, read_sizes, read_vocab, triplet_subset
from data_specs.staging import check_destination, staging
from famevil.data.examples import classification_text, text_tokens
from famevil.data.loading import batched, image_transform, samples
from famevil.metrics.captioning import caption_scores
from famevil.metrics.classification import accuracy, macro_f1
from famevil.metrics.retrieval import RANDOM100_NEGATIVES, RECALL_KS, candidate_ranks, gallery_ranks, random100_candidates, recall
from famevil.model.backbone import tokenizer
from famevil.model.checkpoint import base_reference, load_base, load_checkpoint, require_checkpoint
from famevil.model.decoding import generate
from famevil.model.fame_vil import FameVil, FameVilConfig
from famevil.model.tasks import TASK_NAMES, find_task
from stages.progress import progress_bar

METRICS_FILE, CAPTIONS_FILE, RETRIEVAL_FILE = "metrics.json", "captions.jsonl", "retrieval.jsonl"
METRICS_SCHEMA_VERSION = 1
TGIR_KS = (10, 50)
# The paper's FAME-ViL (multi-task) row, percent, CIDEr x100: the reference `--compare` prints.
PAPER = {
    "xmr.random100.i2t_r1": 65.94, "xmr.random100.i2t_r5": 91.92, "xmr.random100.i2t_r10": 97.22,
    "xmr.random100.t2i_r1": 62.86, "xmr.random100.t2i_r5": 87.38, "xmr.random100.t2i_r10": 93.52,
    "tgir.avg_r10": 46.84, "tgir.avg_r50": 69.75, "scr.accuracy": 94.67, "scr.macro_f1": 88.21,
    "fic.bleu4": 30.73, "fic.meteor": 25.04, "fic.rouge_l": 55.83, "fic.cider": 150.4,
}


@dataclass(frozen=True)
class EvaluateResult:
    out: Path
    manifest: Manifest
    metrics: dict[str, Any]
    warnings: tuple[str, ...]


def evaluate(
    out: Path,
    shards: Path,
    model: Path | None = None,
    base: str | None = None,
    arch: str = "ViT-B-16",
    tasks: list[str] | None = None,
    split: str = "val",
    beams: int = 1,
    max_new_tokens: int = 40,
    batch_size: int = 64,
    random100_runs: int = 5,
    seed: int = 0,
    overwrite: bool = False,
) -> EvaluateResult:
    """Evaluate a model on the paper's protocols and write metrics.json with the predictions behind it.

    XMR: full gallery (every view against every text; all views of a product are positives) and
    "random 100" (1,000 queries, each against its positive and 100 negatives of its subcategory,
    averaged over 5 seeded runs), I2T and T2I R@1/5/10. TGIR: R@10 and R@50 per FashionIQ group
    against the group's gallery. SCR: accuracy and macro-F1 (a subcategory seen only at test time
    counts against the model). FIC: BLEU-4, METEOR, ROUGE-L and CIDEr through pycocoevalcap; greedy
    decoding, or beam search with --beams. All in percent, CIDEr x100, like the paper. --split val
    (the default: FashionGen's validation file serves as its test split) or train.

    Give --model (a famevil checkpoint directory) or --base: an open_clip NAME:TAG, a local open_clip
    checkpoint (with --arch), or a config name such as famevil-tiny for random weights (zero-shot
    CLIP baseline for XMR and TGIR, a random baseline for all four).

    Example (a minute on a laptop CPU, on the tiny synthetic shards):

        famevil evaluate --base famevil-tiny --shards runs/shards --out runs/eval-random
    """
    if (model is None) == (base is None):
        raise FamevilError("give exactly one of --model DIR (a famevil checkpoint) and --base WEIGHTS")
    held = read_manifest(out).kind if (out / MANIFEST_FILE).is_file() else None
    if held not in (None, "metrics"):
        raise FamevilError(f"--out {out}: holds a {held!r} artifact; refusing to replace it with metrics, choose another --out")
    check_destination(out, overwrite)
    shards_manifest = require_artifact(shards, "shards")
    vocab = read_vocab(shards)
    torch.manual_seed(seed)
    network, model_ref = _load_model(model, base, arch, vocab["subcategory"].num_train)
    wanted = [find_task(name).name for name in tasks] if tasks else [t for t in TASK_NAMES if t in network.tsa]
    for task in wanted:
        if task not in network.tsa:  # the registry gives every task of a model its head
            raise FamevilError(f"the model has no {task!r} adapters or head (its tasks: {', '.join(network.tsa)}); evaluate other --tasks")
    _check_subsets(shards, wanted, split)
    inputs = [model_ref, InputRef("shards", "shards", shards_manifest.content_id, str(shards))]
    with staging(out, {"inputs": [ref.id for ref in inputs], "tasks": wanted, "split": split}, resume=False) as stage:
        measured = measure(network, shards, wanted, split, beams, max_new_tokens, batch_size, random100_runs, seed)
        if measured.captions:
            with open(stage.partial / CAPTIONS_FILE, "w", encoding="utf-8") as captions:
                captions.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in measured.captions)
        with open(stage.partial / RETRIEVAL_FILE, "w", encoding="utf-8") as retrieval:
            retrieval.writelines(json.dumps(line) + "\n" for line in measured.retrieval)
        payload = {"schema_version": METRICS_SCHEMA_VERSION, "metrics": measured.metrics, "warnings": measured.warnings}
        (stage.partial / METRICS_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        manifest = write_manifest(stage.partial, "metrics", inputs=inputs, details={"tasks": wanted, "split": split, "beams": beams, "seed": seed})
        stage.publish()
    return EvaluateResult(out, manifest, measured.metrics, tuple(measured.warnings))


@dataclass
class Measurement:
    metrics: dict[str, Any]
    warnings: list[str]
    captions: list[dict]  # FIC: key, generated, references
    retrieval: list[dict]  # XMR and TGIR: each query's top 10


def measure(
    network: FameVil, shards: Path, tasks: list[str], split: str = "val", beams: int = 1, max_new_tokens: int = 40,
    batch_size: int = 64, random100_runs: int = 5, seed: int = 0, show_progress: bool = True, meteor: bool = True,
) -> Measurement:
    """The metrics of a model in memory (evaluate's work without the files; training validates with it,
    without METEOR, whose Java start-up costs seconds each time)."""
    _check_subsets(shards, tasks, split)
    was_training = network.training
    network.eval()
    measured = Measurement({}, [], [], [])
    with torch.no_grad():
        fashiongen_tasks = [t for t in tasks if t != "tgir"]
        if fashiongen_tasks:
            outputs = _fashiongen_pass(network, shards, split, fashiongen_tasks, batch_size, beams, max_new_tokens, show_progress)
            if "xmr" in outputs:
                measured.metrics["xmr"] = _xmr_metrics(outputs, random100_runs, seed, measured.retrieval, measured.warnings)
            if "scr" in outputs:
                truth, predicted = outputs["labels"], outputs["scr"]
                measured.metrics["scr"] = {"accuracy": 100 * accuracy(truth, predicted), "macro_f1": 100 * macro_f1(truth, predicted)}
            if "fic" in outputs:
                references = {key: [description] for key, description in zip(outputs["keys"], outputs["descriptions"])}
                scores = caption_scores(references, dict(zip(outputs["keys"], outputs["fic"])), meteor=meteor)
                measured.metrics["fic"] = {"bleu4": scores.bleu4, "meteor": scores.meteor, "rouge_l": scores.rouge_l, "cider": scores.cider}
                measured.warnings += scores.warnings
                measured.captions += [
                    {"key": key, "generated": generated, "references": [reference]}
                    for key, generated, reference in zip(outputs["keys"], outputs["fic"], outputs["descriptions"])
                ]
        if "tgir" in tasks:
            measured.metrics["tgir"] = _tgir_metrics(network, shards, split, batch_size, measured.retrieval, show_progress)
    network.train(was_training)
    return measured


def _load_model(model: Path | None, base: str | None, arch: str, num_classes: int) -> tuple[FameVil, InputRef]:
    if model is not None:
        manifest = require_checkpoint(model)
        return load_checkpoint(model), InputRef("model", manifest.kind, manifest.content_id, str(model))
    path = Path(base)
    if path.is_dir():
        raise FamevilError(f"--base {base}: a famevil checkpoint directory is evaluated with --model {base}")
    if path.is_file() or ":" in base:
        name, ref = (arch if path.is_file() else base.split(":", 1)[0]), base_reference(base, arch)
    else:
        name, ref = base, base_reference(None, base)
        ref = InputRef(ref.role, ref.kind, f"{ref.id}:seed{torch.initial_seed()}", ref.path)
    network = FameVil(FameVilConfig(name, tasks=TASK_NAMES, num_classes=num_classes))
    if path.is_file() or ":" in base:
        load_base(network, base)
    return network, ref


def _check_subsets(shards: Path, tasks: list[str], split: str) -> None:
    present = read_sizes(shards)["subsets"]
    needed = {fashiongen_subset(split): "FashionGen", triplet_subset(split): "FashionIQ", gallery_subset(split): "FashionIQ"}
    if "tgir" in tasks and split == "test":
        raise FamevilError("--split test: FashionIQ's test captions have no targets, so TGIR cannot be scored there; use --split val")
    for task in tasks:
        for subset in ([triplet_subset(split), gallery_subset(split)] if task == "tgir" else [fashiongen_subset(split)]):
            if subset not in present:
                raise FamevilError(
                    f"{shards}: has no {subset!r} subset, which {task} needs (present: {', '.join(sorted(present)) or 'none'}); "
                    f"prepare {needed[subset]} into these shards with famevil prepare"
                )


def _image_size(network: FameVil) -> int:
    size = network.backbone.visual.image_size
    return size[0] if isinstance(size, tuple) else size


def _fashiongen_pass(
    network: FameVil, shards: Path, split: str, tasks: list[str], batch_size: int, beams: int, max_new_tokens: int, show_progress: bool
) -> dict[str, list]:
    """One pass over a FashionGen split's shards: embeddings, class predictions and captions, batch by batch."""
    transform = image_transform(_image_size(network), train=False)
    tokenize = tokenizer(network.config.backbone)
    outputs: dict[str, list] = {"keys": [], "products": [], "subcategories": [], "labels": [], "descriptions": []}
    outputs |= {task: [] for task in tasks}
    if "xmr" in tasks:
        outputs["xmr_texts"] = []
    total = read_sizes(shards)["subsets"][fashiongen_subset(split)]["samples"]
    with progress_bar(f"{', '.join(tasks)} on {fashiongen_subset(split)}", total, enabled=show_progress) as advance:
        for batch in batched(samples(shards, fashiongen_subset(split)), batch_size):
            images = torch.stack([transform(s["jpg"]) for s in batch])
            records = [s["json"] for s in batch]
            outputs["keys"] += [s["__key__"] for s in batch]
            outputs["products"] += [r["product_id"] for r in records]
            outputs["subcategories"] += [r["subcategory"] for r in records]
            outputs["labels"] += [r["subcategory_id"] for r in records]
            outputs["descriptions"] += [r["description"] for r in records]
            if "xmr" in tasks:
                outputs["xmr"].append(network.encode_image(images, "xmr"))
                outputs["xmr_texts"].append(network.encode_text(text_tokens([r["description"] for r in records], tokenize), "xmr"))
            if "scr" in tasks:
                text = text_tokens([classification_text(r) for r in records], tokenize)
                outputs["scr"] += network.head("scr")(network.composed(images, text, "scr")).argmax(dim=-1).tolist()
            if "fic" in tasks:
                ids = generate(network, images, max_new_tokens=max_new_tokens, beams=beams)
                outputs["fic"] += [tokenize.decode(caption).strip() for caption in ids]
            advance(len(batch))
    return outputs


def _xmr_metrics(outputs: dict[str, list], runs: int, seed: int, retrieval_lines: list[dict], warnings: list[str]) -> dict[str, dict[str, float]]:
    images, texts = torch.cat(outputs["xmr"]), torch.cat(outputs["xmr_texts"])
    products = torch.tensor(outputs["products"])
    keys = outputs["keys"]
    full: dict[str, float] = {}
    for direction, queries, gallery in (("i2t", images, texts), ("t2i", texts, images)):
        ranks, top = gallery_ranks(queries, gallery, products, products)
        full |= {f"{direction}_r{k}": value for k, value in recall(ranks).items()}
        retrieval_lines += [{"task": f"xmr-{direction}", "query": keys[i], "top10": [keys[j] for j in row]} for i, row in enumerate(top.tolist())]
    random100 = {f"{d}_r{k}": 0.0 for d in ("i2t", "t2i") for k in RECALL_KS}
    for run in range(runs):
        chosen, candidates = random100_candidates(outputs["subcategories"], outputs["products"], seed=seed * 1000 + run)
        if run == 0 and candidates.shape[1] - 1 < RANDOM100_NEGATIVES:
            warnings.append(f"random-100: the split is too small for 100 negatives per query; used {candidates.shape[1] - 1}")
        candidates = torch.from_numpy(candidates)
        for direction, queries, gallery in (("i2t", images, texts), ("t2i", texts, images)):
            for k, value in recall(candidate_ranks(queries[torch.from_numpy(chosen)], gallery[candidates])).items():
                random100[f"{direction}_r{k}"] += value / runs
    for protocol in (full, random100):
        protocol["mean"] = float(np.mean(list(protocol.values())))
    return {"full": full, "random100": random100}


def _tgir_metrics(network: FameVil, shards: Path, split: str, batch_size: int, retrieval_lines: list[dict], show_progress: bool) -> dict[str, float]:
    transform = image_transform(_image_size(network), train=False)
    tokenize = tokenizer(network.config.backbone)
    gallery: dict[str, tuple[list[str], list[torch.Tensor]]] = {}
    queries: dict[str, tuple[list[str], list[str], list[torch.Tensor]]] = {}
    sizes = read_sizes(shards)["subsets"]
    total = sizes[gallery_subset(split)]["samples"] + sizes[triplet_subset(split)]["samples"]
    with progress_bar(f"tgir on {triplet_subset(split)}", total, enabled=show_progress) as advance:
        for batch in batched(samples(shards, gallery_subset(split)), batch_size):
            embeddings = network.encode_image(torch.stack([transform(s["jpg"]) for s in batch]), "tgir")
            for sample, embedding in zip(batch, embeddings):
                asins, vectors = gallery.setdefault(sample["json"]["group"], ([], []))
                asins.append(sample["json"]["asin"])
                vectors.append(embedding)
            advance(len(batch))
        for batch in batched(samples(shards, triplet_subset(split)), batch_size):
            images = torch.stack([transform(s["reference.jpg"]) for s in batch])
            text = text_tokens([", ".join(s["json"]["captions"]) for s in batch], tokenize)
            composed = F.normalize(network.composed(images, text, "tgir"), dim=-1)
            for sample, query in zip(batch, composed):
                keys, targets, vectors = queries.setdefault(sample["json"]["group"], ([], [], []))
                keys.append(sample["__key__"])
                targets.append(sample["json"]["target"])
                vectors.append(query)
            advance(len(batch))
    metrics: dict[str, float] = {}
    for group, (keys, targets, vectors) in sorted(queries.items()):
        asins, candidates = gallery.get(group, ([], []))
        if not asins:
            raise FamevilError(f"{shards}: the {group} triplets have no gallery images in {gallery_subset(split)!r}")
        index = {asin: i for i, asin in enumerate(asins)}
        # A target missing from the gallery can never be retrieved: group -1 matches nothing.
        target_groups = torch.tensor([index.get(t, -1) for t in targets])
        ranks, top = gallery_ranks(torch.stack(vectors), torch.stack(candidates), target_groups, torch.arange(len(asins)), top=max(TGIR_KS))
        metrics |= {f"{group}_r{k}": value for k, value in recall(ranks, TGIR_KS).items()}
        retrieval_lines += [{"task": "tgir", "query": key, "top10": [asins[j] for j in row[:10]]} for key, row in zip(keys, top.tolist())]
    for k in TGIR_KS:
        metrics[f"avg_r{k}"] = float(np.mean([metrics[f"{group}_r{k}"] for group in queries]))
    metrics["mean"] = (metrics["avg_r10"] + metrics["avg_r50"]) / 2
    return metrics


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"xmr": {"full": {"i2t_r1": x}}} -> {"xmr.full.i2t_r1": x}"""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        flat |= flatten(value, name + ".") if isinstance(value, dict) else {name: value}
    return flat


def read_metrics(directory: Path) -> dict[str, Any]:
    """The metrics of an evaluation artifact, for --compare."""
    require_artifact(directory, "metrics")
    payload = json.loads((directory / METRICS_FILE).read_text(encoding="utf-8"))
    if payload.get("schema_version") != METRICS_SCHEMA_VERSION:
        raise FamevilError(f"{directory / METRICS_FILE}: unknown schema_version; rerun famevil evaluate")
    return payload["metrics"]
