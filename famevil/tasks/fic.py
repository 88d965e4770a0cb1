"""FIC, fashion image captioning on FashionGen: the causal text tower cross-attends to the image tower,
an untied language-model head, teacher-forced next-token cross-entropy (padding neither trains nor
counts); evaluated with BLEU-4, METEOR, ROUGE-L and CIDEr on greedy or beam-searched captions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from famevil.metrics.captioning import caption_scores
from famevil.metrics.chance import fic_chance
from famevil.model.backbone import PAD_TOKEN
from famevil.model.decoding import generate
from famevil.model.fame_vil import FameVil
from famevil.tasks.base import (
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
from famevil.tasks.fashiongen import product_text, view_batch


def caption_targets(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing: the input positions (all but the last), where the next token is a real one
    (padding neither trains nor counts), and those next tokens, packed."""
    inputs, following = tokens[:, :-1], tokens[:, 1:]
    real = following != PAD_TOKEN
    return inputs, real, following[real]


class Captioning(Task):
    name = "fic"
    title = "fashion image captioning"
    aliases = ("captioning", "caption")
    mode = GENERATIVE
    source = FASHIONGEN
    headline = "cider"
    report_rows = (("bleu4", "FIC BLEU-4"), ("cider", "FIC CIDEr"))
    paper = {"bleu4": 30.73, "meteor": 25.04, "rouge_l": 55.83, "cider": 150.4}

    def batch(self, samples: list[Sample], transform: Transform, tokenize: Tokenize) -> Batch:
        return view_batch(samples, transform, tokenize)

    def build_head(self, network: FameVil, vocabularies: dict[str, list[str]]) -> nn.Module:
        return nn.Linear(network.text_width, network.backbone.vocab_size)  # untied from the token embedding

    @torch.no_grad()
    def init_head(self, head: nn.Module, network: FameVil) -> None:
        """Start from the token embedding the text tower was trained with (the head stays untied): it
        learns in far fewer steps than a head from noise."""
        head.weight.copy_(network.backbone.token_embedding.weight)
        head.bias.zero_()

    def logits(self, network: FameVil, head: nn.Module | None, batch: Batch) -> torch.Tensor:
        """Teacher-forced next-token log-probabilities at the positions whose next token is real, packed
        (N, vocabulary). Normalised once here, since the cross-entropy and the distillation term both
        read them and the vocabulary-wide softmax is the costliest step of a small model."""
        inputs, real, _ = caption_targets(batch["tokens"])
        return F.log_softmax(head(network.caption_states(batch["images"], inputs, self.name, where=real)), dim=-1)

    def loss(self, log_probs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.nll_loss(log_probs, caption_targets(batch["tokens"])[2])

    def signals(self, network: FameVil, head: nn.Module | None, batch: Batch, top_k: int) -> Signals:
        """Top-k log-probabilities and ids at each position whose next token is real, in rows padded to
        the tokenizer's context (other positions stay zero and are never read: the student's own tokens
        say which positions are real)."""
        inputs, real, _ = caption_targets(batch["tokens"])
        logprobs, ids = self.logits(network, head, batch).topk(top_k, dim=-1)
        positions = network.backbone.context_length - 1
        stored_logprobs = torch.zeros(len(inputs), positions, top_k, dtype=torch.half, device=inputs.device)
        stored_ids = torch.zeros(len(inputs), positions, top_k, dtype=torch.int32, device=inputs.device)
        stored_logprobs[:, : inputs.shape[1]][real] = logprobs.half()
        stored_ids[:, : inputs.shape[1]][real] = ids.int()
        return {"logprobs": stored_logprobs, "ids": stored_ids}

    def distillation(self, student_logits: torch.Tensor, signals: Signals, batch: Batch, temperature: float) -> torch.Tensor:
        """Per-token soft labels over the teacher's top-k: the teacher's distribution renormalised on its
        top k tokens, against the student's full-vocabulary distribution at those tokens."""
        inputs, real, _ = caption_targets(batch["tokens"])
        length = inputs.shape[1]
        ids = signals["ids"][:, :length][real].long()
        teacher = F.softmax(signals["logprobs"][:, :length][real].float() / temperature, dim=-1)
        # The student's logits are log-probabilities already; at temperature 1 they need no second softmax.
        student = (student_logits if temperature == 1 else F.log_softmax(student_logits / temperature, dim=-1)).gather(1, ids)
        return (teacher * (teacher.clamp_min(1e-12).log() - student)).sum(dim=-1).mean() * temperature**2

    def evaluator(self, network: FameVil, head: nn.Module | None, settings: EvalSettings) -> CaptionEvaluation:
        return CaptionEvaluation(self, network, head, settings)

    def chance(self, facts: DatasetFacts) -> dict[str, float]:
        return fic_chance(facts.train_texts, facts.val_texts, facts.seed)

    def standalone_parameters(self, network: FameVil, head: nn.Module | None) -> int:
        """A CLIP with text-side cross-attention and the language-model head, as the paper counts it."""
        return super().standalone_parameters(network, head) + count_parameters(network.xaa["text"])


class CaptionEvaluation:
    def __init__(self, task: Captioning, network: FameVil, head: nn.Module, settings: EvalSettings):
        self.task, self.network, self.head, self.settings = task, network, head, settings
        self.keys: list[str] = []
        self.generated: list[str] = []
        self.references: list[str] = []

    def add(self, subset: str, samples: list[Sample]) -> None:
        settings = self.settings
        batch = self.task.batch(samples, settings.transform, settings.tokenize)
        ids = generate(self.network, self.head, batch["images"], self.task.name, max_new_tokens=settings.max_new_tokens, beams=settings.beams)
        self.generated += [settings.tokenize.decode(caption).strip() for caption in ids]
        self.keys += batch["keys"]
        self.references += [product_text(sample["json"]) for sample in samples]

    def finish(self) -> TaskEvaluation:
        references = {key: [reference] for key, reference in zip(self.keys, self.references, strict=True)}
        scores = caption_scores(references, dict(zip(self.keys, self.generated, strict=True)), meteor=self.settings.meteor)
        lines = [
            {"key": key, "generated": generated, "references": [reference]}
            for key, generated, reference in zip(self.keys, self.generated, self.references, strict=True)
        ]
        metrics = {"bleu4": scores.bleu4, "meteor": scores.meteor, "rouge_l": scores.rouge_l, "cider": scores.cider}
        return TaskEvaluation(metrics, {"captions": lines}, list(scores.warnings))


TASK = Captioning()
