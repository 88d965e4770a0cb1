"""FIC, fashion image captioning on FashionGen: the causal text tower cross-attends to the image tower,
an untied language-model head, teacher-forced next-token cross-entropy (padding neither trains nor
counts); evaluated with BLEU-4, METEOR, ROUGE-L and CIDEr on greedy or beam-searched captions."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from data_specs.shards import Shards
from famevil.data.loading import records
from famevil.metrics.captioning import caption_scores, paper_bleu4
from famevil.metrics.chance import fic_chance
from famevil.model.decoding import generate
from famevil.model.fame_vil import FameVil
from famevil.model.tokenizer import TextTokenizer
from famevil.model.towers import token_embedding
from famevil.tasks.base import (
    CAPTIONS,
    FASHIONGEN,
    GENERATIVE,
    Batch,
    DatasetFacts,
    EvalSettings,
    Sample,
    Signals,
    Task,
    TaskEvaluation,
    Tokenize,
    Transform,
    count_parameters,
)
from famevil.tasks.product_text import product_text, view_batch


def caption_targets(tokens: torch.Tensor, tokenizer: TextTokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing: the input positions (all but the last), where the next token is a real one
    (padding neither trains nor counts), and those next tokens, packed.

    Padding is told by length, up to the end-of-text token, and not by id: the padding id is also
    CLIP's "!", which a caption may hold, and SigLIP's is its end token."""
    inputs, following = tokens[:, :-1], tokens[:, 1:]
    real = torch.arange(following.shape[1], device=tokens.device)[None, :] < tokenizer.ends(tokens)[:, None]
    return inputs, real, following[real]


CAPTION_TOKENS = "caption_tokens"  # the model config's vocabulary entry of a head restricted to the training text


class CaptionHead(nn.Linear):
    """The language-model head: next-token logits over `tokens`, the tokenizer's ids it can write (all
    of them, or those of the training text). Restricting it leaves evaluation unchanged (its captions
    are token ids of the same tokenizer) and makes a small model's step cheaper: the vocabulary-wide
    matrix is most of famevil-small's work."""

    def __init__(self, width: int, tokens: torch.Tensor):
        super().__init__(width, len(tokens))
        # Not saved with the weights: the model config lists them, and a full head stays the plain
        # Linear that checkpoints have always held.
        self.register_buffer("tokens", tokens, persistent=False)


class CaptionLogits(NamedTuple):
    """Log-probabilities at the positions whose next token is real, packed (N, len(tokens)), the token
    id of each column, and the teacher-forcing positions they were read at (caption_targets)."""

    log_probs: torch.Tensor
    tokens: torch.Tensor
    real: torch.Tensor  # (batch, length - 1): True where the next token is a real one
    following: torch.Tensor  # (N,) those next tokens, packed

    @property
    def device(self) -> torch.device:
        return self.log_probs.device

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        """Columns of token ids; -100 (ignored by the loss) for an id outside the head's tokens."""
        rows = torch.searchsorted(self.tokens, ids).clamp(max=len(self.tokens) - 1)
        return torch.where(self.tokens[rows] == ids, rows, -100)


def training_tokens(shards: Shards, subset: str, tokenize: Tokenize, special: tuple[int, ...]) -> list[int]:
    """The sorted token ids of a subset's product texts, with the special tokens a caption needs."""
    seen: set[int] = set(special)
    texts = [product_text(record) for record in records(shards, subset)]
    for start in range(0, len(texts), 1024):
        seen.update(tokenize(texts[start : start + 1024]).unique().tolist())
    return sorted(seen)


class Captioning(Task):
    name = "fic"
    title = "fashion image captioning"
    aliases = ("captioning", "caption")
    mode = GENERATIVE
    source = FASHIONGEN
    headline = "cider"
    authors_selection = "bleu4"  # captioning.yaml
    report_rows = (("bleu4", "FIC BLEU-4"), ("coco_bleu4", "FIC BLEU-4 (coco-caption)"), ("cider", "FIC CIDEr"))
    paper = {"bleu4": 30.73, "meteor": 25.04, "rouge_l": 55.83, "cider": 150.4}

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        """A caption is decoded from the start token, so every text begins with one (TextTokenizer.for_captions)."""
        return view_batch(samples, transform, tokenize.for_captions())

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module:
        """Untied from the token embedding; over the whole vocabulary unless the model config restricts it."""
        kept = vocabularies.get(CAPTION_TOKENS)
        tokens = torch.tensor([int(token) for token in kept]) if kept else torch.arange(token_embedding(network.backbone).num_embeddings)
        return CaptionHead(network.text_width, tokens)

    def text_vocabulary(self, shards: Shards, tokenize: Tokenize) -> dict[str, list[str]]:
        """The tokens of the training text (and the caption's start, end and padding), for a head
        restricted to them."""
        special = (tokenize.pad, tokenize.start, tokenize.end)
        tokens = training_tokens(shards, self.train_subset(), tokenize, special)
        return {CAPTION_TOKENS: [str(token) for token in tokens]}

    @torch.no_grad()
    def init_head(self, head: nn.Module, network: FameVil) -> None:
        """Start from the token embedding the text tower was trained with (the head stays untied): it
        learns in far fewer steps than a head from noise."""
        head.weight.copy_(token_embedding(network.backbone).weight[head.tokens])
        head.bias.zero_()

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> CaptionLogits:
        """Teacher-forced next-token log-probabilities at the positions whose next token is real, packed.
        Normalised once here, since the cross-entropy and the distillation term both read them and the
        head-wide softmax is the costliest step of a small model."""
        inputs, real, following = caption_targets(batch["tokens"], network.tokenizer())
        states = network.caption_states(batch["images"], inputs, self.name, where=real)
        return CaptionLogits(F.log_softmax(head(states), dim=-1), head.tokens, real, following)

    def loss(self, logits: CaptionLogits, batch: Batch) -> torch.Tensor:
        """Next-token cross-entropy; a token the head cannot write (one outside a restricted head's
        training text) neither trains nor counts."""
        return F.nll_loss(logits.log_probs, logits.targets(logits.following))

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        """Top-k log-probabilities and ids at each position whose next token is real, in rows padded to
        the tokenizer's context (other positions stay zero and are never read: the student's own tokens
        say which positions are real)."""
        logits = self.logits(network, head, batch)
        real = logits.real
        inputs = batch["tokens"][:, :-1]
        logprobs, columns = logits.log_probs.topk(top_k, dim=-1)
        ids = logits.tokens[columns]
        positions = network.tokenizer().context_length - 1
        stored_logprobs = torch.zeros(len(inputs), positions, top_k, dtype=torch.half, device=inputs.device)
        stored_ids = torch.zeros(len(inputs), positions, top_k, dtype=torch.int32, device=inputs.device)
        stored_logprobs[:, : inputs.shape[1]][real] = logprobs.half()
        stored_ids[:, : inputs.shape[1]][real] = ids.int()
        return {"logprobs": stored_logprobs, "ids": stored_ids}

    def distillation(self, student_logits: CaptionLogits, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """Per-token soft labels over the teacher's top-k: the teacher's distribution renormalised on its
        top k tokens (those the student's head can write), against the student's distribution at those tokens."""
        real = student_logits.real
        length = real.shape[1]
        columns = student_logits.targets(signals["ids"][:, :length][real].long())
        writable = columns >= 0
        teacher_logits = signals["logprobs"][:, :length][real].float() / temperature
        teacher = F.softmax(teacher_logits.masked_fill(~writable, float("-inf")), dim=-1).nan_to_num(0.0)
        log_probs = student_logits.log_probs
        # The student's logits are log-probabilities already; at temperature 1 they need no second softmax.
        student = (log_probs if temperature == 1 else F.log_softmax(log_probs / temperature, dim=-1)).gather(1, columns.clamp_min(0))
        return (teacher * (teacher.clamp_min(1e-12).log() - student)).sum(dim=-1).mean() * temperature**2

    @torch.no_grad()
    def check(self, network: FameVil, head: nn.Module | None, batch: Batch) -> dict[str, float]:
        """The grounding gap on a training batch, each image swapped with the next caption's."""
        matching, shuffled = paired_losses(self, network, head, batch, torch.roll(torch.arange(len(batch["tokens"])), 1))
        return {"grounding_gap": round(grounding_gap(matching, shuffled), 3)} if matching else {}

    def warning(self, figures: dict[str, float]) -> str | None:
        return ungrounded_warning(figures["grounding_gap"], "on recent training batches") if "grounding_gap" in figures else None

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> CaptionEvaluation:
        return CaptionEvaluation(self, network, head, settings)

    def chance(self, facts: DatasetFacts) -> dict[str, float]:
        return fic_chance(facts.train_texts, facts.val_texts, facts.seed)

    def standalone_parameters(self, network: FameVil, head: nn.Module | None) -> int:
        """A CLIP with text-side cross-attention and the language-model head, as the paper counts it."""
        return super().standalone_parameters(network, head) + count_parameters(network.xaa["text"])


# Below this grounding gap (percent) a captioner is taken to ignore the image: on the demo, captioners
# that wrote one caption for every image measured 0.1-0.6%, grounded ones well above 10%.
UNGROUNDED_GAP = 2.0


def token_losses(logits: CaptionLogits) -> torch.Tensor:
    """Each caption's summed next-token loss (batch,)."""
    losses = torch.zeros(logits.real.shape, device=logits.device)
    losses[logits.real] = F.nll_loss(logits.log_probs, logits.targets(logits.following), reduction="none")
    return losses.sum(dim=1)


def paired_losses(task: Captioning, network: FameVil, head: nn.Module, batch: Batch, others: torch.Tensor) -> tuple[float, float]:
    """The summed teacher-forced caption loss with each caption's own image and with the image at
    `others` (a permutation of the batch), over the captions whose partner shows another product (a
    product's other views would not count); (0, 0) when there is none."""
    products = batch["products"]
    counted = products != products[others.to(products.device)]
    if not counted.any():
        return 0.0, 0.0
    matching = token_losses(task.logits(network, head, batch))
    shuffled = token_losses(task.logits(network, head, batch | {"images": batch["images"][others.to(batch["images"].device)]}))
    counted = counted.to(matching.device)
    return matching[counted].sum().item(), shuffled[counted].sum().item()


def grounding_gap(matching: float, shuffled: float) -> float:
    """How much worse, in percent, the teacher-forced caption loss is with another product's image than
    with the caption's own: about 0 for a captioner that ignores the image."""
    return 100 * (shuffled - matching) / matching if matching > 0 else 0.0


def ungrounded_warning(gap: float, where: str) -> str | None:
    if gap >= UNGROUNDED_GAP:
        return None
    return (
        f"fic: grounding gap {gap:.2f}% {where}: the captioner's loss barely changes when the images are shuffled, "
        "so it ignores the image (see docs/captioning.md)"
    )


class CaptionEvaluation:
    """Generated captions and their scores, plus two figures that catch a captioner ignoring the image:
    the grounding gap (teacher-forced loss with other products' images against their own) and the share
    of distinct captions."""

    def __init__(self, task: Captioning, network: FameVil, head: nn.Module, settings: EvalSettings):
        self.task, self.network, self.head, self.settings = task, network, head, settings
        self.keys: list[str] = []
        self.generated: list[str] = []
        self.references: list[str] = []
        self.read_references: list[str] = []  # the references as the model reads them, the authors' BLEU-4 scores against
        self.shuffler = torch.Generator().manual_seed(settings.seed)
        self.matching_loss = self.shuffled_loss = 0.0  # summed over captions: the gap is their ratio

    def add(self, subset: str, samples: list[Sample]) -> None:
        settings = self.settings
        batch = self.task.batch(samples, settings.transform, settings.tokenize)
        ids = generate(self.network, self.head, batch["images"], self.task.name, max_new_tokens=settings.max_new_tokens, beams=settings.beams)
        self.generated += [settings.tokenize.decode(caption).strip() for caption in ids]
        self.keys += batch["keys"]
        self.references += [product_text(sample["json"]) for sample in samples]
        ends = settings.tokenize.ends(batch["tokens"]).tolist()
        self.read_references += [settings.tokenize.decode(row[1:end]).strip() for row, end in zip(batch["tokens"].tolist(), ends, strict=True)]
        others = torch.randperm(len(samples), generator=self.shuffler)
        matching, shuffled = paired_losses(self.task, self.network, self.head, batch, others)
        self.matching_loss += matching
        self.shuffled_loss += shuffled

    def finish(self) -> TaskEvaluation:
        references = {key: [reference] for key, reference in zip(self.keys, self.references, strict=True)}
        scores = caption_scores(references, dict(zip(self.keys, self.generated, strict=True)), meteor=self.settings.meteor)
        lines = [
            {"key": key, "generated": generated, "references": [reference]}
            for key, generated, reference in zip(self.keys, self.generated, self.references, strict=True)
        ]
        gap = grounding_gap(self.matching_loss, self.shuffled_loss)
        metrics = {
            "bleu4": paper_bleu4(self.read_references, self.generated),
            "coco_bleu4": scores.bleu4,
            "meteor": scores.meteor,
            "rouge_l": scores.rouge_l,
            "cider": scores.cider,
            "grounding_gap": gap,
            "distinct_captions": 100 * len(set(self.generated)) / max(len(self.generated), 1),
        }
        warnings = list(scores.warnings)
        if self.matching_loss and (warning := ungrounded_warning(gap, "on the validation images")) is not None:
            warnings.append(warning)
        return TaskEvaluation(metrics, {CAPTIONS: lines}, warnings)


TASK = Captioning()
