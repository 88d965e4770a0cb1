"""Caption decoding: greedy and beam search, with or without the key/value cache, optionally never
writing an n-gram twice.

The length limit is a setting (max_new_tokens), never the length of the references: the public code
caps it at the longest reference in the batch, which leaks the answer's length. Evaluation blocks no
n-gram (the paper's protocol); captions for use do (NO_REPEAT_NGRAM), so that a phrase is not
written twice ("button closure at front . button closure at front").
"""

from __future__ import annotations

import torch
from torch import nn

from data_specs.errors import FamevilError
from famevil.limits import BEAMS, Range
from famevil.model.fame_vil import DecodingState, FameVil
from famevil.model.towers import LayerCache

NO_REPEAT_NGRAM = 3  # captions for use: no three tokens written twice in a caption (what Hugging Face's no_repeat_ngram_size does)


def _next_logits(model: FameVil, head: nn.Module, tokens: torch.Tensor, state: DecodingState, use_cache: bool, adapters: str) -> torch.Tensor:
    """Logits for the token after `tokens` (all decoded so far, start of text included)."""
    if use_cache:
        return head(model.decode_step(tokens[:, state.length :], state, adapters, last_only=True))
    # Without the cache the whole prefix runs again every step; the image side is still computed once.
    fresh = DecodingState(state.image_keys_values, [LayerCache() for _ in state.caches])
    return head(model.decode_step(tokens, fresh, adapters, last_only=True))


def block_repeated_ngrams(log_probs: torch.Tensor, generated: torch.Tensor, columns: torch.Tensor, n: int) -> None:
    """Set to -inf, in place, each row's log-probability of any token that would complete an n-gram the
    row has written already: one whose n - 1 tokens before it are the row's last n - 1. generated:
    (rows, length) the tokens written so far; columns: the sorted token ids of log_probs's columns."""
    for row, ids in enumerate(generated.tolist()):
        last = tuple(ids[len(ids) - n + 1 :]) if n > 1 else ()
        banned = {ids[i + n - 1] for i in range(len(ids) - n + 1) if tuple(ids[i : i + n - 1]) == last}
        if banned:
            log_probs[row, torch.searchsorted(columns, torch.tensor(sorted(banned), device=columns.device))] = float("-inf")


def caption_lengths(generated: torch.Tensor, end: int) -> torch.Tensor:
    """(rows,) how many tokens of each generated row come before its first end token (all of them where
    it has none). The padding after the end is told by position, not by id: the padding id may also be a
    real token (CLIP's "!") or the end token itself (SigLIP's)."""
    ended = generated == end
    return torch.where(ended.any(dim=1), ended.int().argmax(dim=1), generated.shape[1])


@torch.no_grad()
def generate(
    model: FameVil,
    head: nn.Module,
    images: torch.Tensor,
    adapters: str,
    max_new_tokens: int | None = None,
    beams: int = 1,
    use_cache: bool = True,
    no_repeat_ngram: int = 0,
) -> list[list[int]]:
    """Token ids of one caption per image, without start, end or padding tokens: the text tower with
    `adapters` cross-attends to the images, and `head` maps its states to next-token logits over
    `head.tokens` (the sorted token ids of its columns, padding among them: the whole vocabulary or
    part of it). Start, end and padding are the base's tokenizer's. A caption may run to the text
    context (76 new tokens for CLIP) unless max_new_tokens cuts it shorter. no_repeat_ngram: n > 0
    never writes an n-gram of tokens twice in a caption, greedy or beam; 0 blocks nothing."""
    beam_range = Range.up_to(1, BEAMS)
    if not beam_range.admits(beams):  # the command line bounds it too; this covers famevil.load(...).caption and evaluate()
        raise FamevilError(f"beams={beams}: {beam_range.refusal('beams', beams)}")
    if no_repeat_ngram < 0:
        raise FamevilError(f"no_repeat_ngram={no_repeat_ngram}: must be 0 (block nothing) or more")
    tokenizer = model.tokenizer()
    start, end = tokenizer.start, tokenizer.end
    columns = head.tokens
    pad_column = int(torch.searchsorted(columns, torch.tensor(tokenizer.pad, device=columns.device)))
    context = tokenizer.context_length
    max_new_tokens = min(max_new_tokens or context, context - 1)
    count = images.shape[0]
    state = model.start_decoding(images, adapters)
    state.repeat(beams)
    tokens = torch.full((count * beams, 1), start, dtype=torch.long, device=images.device)
    # Beam b of image i starts at -inf except b = 0, so the first step does not pick one token beams times.
    scores = torch.full((count, beams), float("-inf"), device=images.device)
    scores[:, 0] = 0
    finished = torch.zeros(count * beams, dtype=torch.bool, device=images.device)
    for _ in range(max_new_tokens):
        log_probs = _next_logits(model, head, tokens, state, use_cache, adapters).float().log_softmax(dim=-1)
        if no_repeat_ngram:
            block_repeated_ngrams(log_probs, tokens[:, 1:], columns, no_repeat_ngram)
        # A finished beam continues with padding at no cost, and with nothing else.
        log_probs[finished] = float("-inf")
        log_probs[finished, pad_column] = 0
        vocabulary = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(count, beams * vocabulary)
        scores, best = candidates.topk(beams, dim=-1)
        chosen = (torch.arange(count, device=images.device)[:, None] * beams + best // vocabulary).flatten()
        new_tokens = columns[(best % vocabulary).flatten()]
        tokens = torch.cat([tokens[chosen], new_tokens[:, None]], dim=1)
        if beams > 1:
            state.reorder(chosen)
        finished = finished[chosen] | (new_tokens == end)
        if finished.all():
            break
    generated = tokens[:, 1:]
    lengths = caption_lengths(generated, end).view(count, beams)
    best_beam = (scores / lengths.clamp(min=1)).argmax(dim=-1)  # length-normalised, so short is not favoured
    return [generated[image * beams + beam, : lengths[image, beam]].tolist() for image, beam in enumerate(best_beam.tolist())]
