"""FAME-ViL around an open_clip CLIP: the backbone's modules and weights stay open_clip's; the adapters sit
beside them, and the towers are stepped block by block so that the adapters can join in (open_clip's
own towers, timm's ViT trunks, custom text towers: famevil.model.towers).

This is the plain network: towers, adapters and three modes. It knows nothing of tasks; a task picks
its set of task-specific adapters by name and puts its own head on top (famevil.multitask).

In every block, with h' the state after self-attention and its residual:

    h = h' + MLP(LN2(h')) + TSA_task(h') [+ XAA(h', other stream's h' at this layer)]

Modes: contrastive (towers apart, no XAA; the text tower masked as it was trained, causal or not),
fusion (both towers advance together, each layer computed once, and cross-attend both ways to the
other's h'; text padding masked), generative (the image tower runs first; the text tower, causal in
this mode whatever it was trained with, has its layer i cross-attend to image layer i: to its block's
output, as the authors' captioner does, or to its h', a setting: `caption_reads`).

Towers of different depths pair from the top: the deeper tower's last layers meet the shallower
tower's, one XAA per pair, and its first layers run alone.

Two switches of the paper's ablations: `fusion="late"` drops the XAA from fusion (the towers run
apart and their vectors are added, as the authors' `enable_xattn: false`; the captioner keeps its
text-side XAA, its only path to the image), and `shared_task_adapters` gives every task one TSA set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data_specs.errors import FamevilError
from famevil.data.transforms import Preprocess
from famevil.model import towers
from famevil.model.adapter_config import AdapterConfig
from famevil.model.adapters import Adapter, CrossAttentionAdapter
from famevil.model.backbone import backbone_config, create_backbone, default_preprocess
from famevil.model.tokenizer import TextTokenizer, text_tokenizer
from famevil.model.towers import TEXT, VISION, LayerCache


@dataclass(frozen=True, kw_only=True)
class FameVilConfig:
    backbone: str  # the architecture's name: open_clip's (ViT-B-16), famevil's (famevil-tiny), or the hf-hub:/local-dir: base it came from
    adapter_sets: tuple[str, ...]  # one set of task-specific adapters (TSA) per name, in every block of both towers
    cross_attention: bool = True  # build the shared cross-attention adapters (fusion and generative modes need them)
    adapters: AdapterConfig = AdapterConfig()


SHARED_ADAPTERS = "shared"  # the one TSA set's key when the tasks share it


@dataclass
class DecodingState:
    """What caption decoding keeps between steps: the image side's cross-attention keys and values
    (fixed per image) and each text layer's self-attention cache."""

    image_keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    caches: list[LayerCache]
    length: int = 0

    def repeat(self, times: int) -> None:
        """Each image's row `times` times over, one per beam."""
        self.image_keys_values = [(k.repeat_interleave(times, 0), v.repeat_interleave(times, 0)) for k, v in self.image_keys_values]

    def reorder(self, rows: torch.Tensor) -> None:
        """Follow the beams that survived. Rows stay within their image's beams, whose image keys and
        values are identical, so only the text caches move."""
        for cache in self.caches:
            cache.reorder(rows)


def _causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """True where query i (the last `queries` of `keys` positions) may attend to key j."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)


class FameVil(nn.Module):
    def __init__(self, config: FameVilConfig, architecture: dict | None = None, preprocess: Preprocess | None = None, tokenizer_files: str | None = None):
        """architecture: the open_clip config of the backbone (activation included); by default, that of
        config.backbone. preprocess: how images are prepared for it, as its weights were trained; by
        default, the architecture's (famevil.model.backbone.default_preprocess). tokenizer_files: where a
        Hugging Face tokenizer's files are (a folder or a Hub name), for a text tower that has one."""
        super().__init__()
        if not config.adapter_sets:
            raise FamevilError("a FAME-ViL model needs at least one set of task-specific adapters")
        self.backbone_name = config.backbone
        self.backbone_config = architecture or backbone_config(config.backbone)
        self.preprocess = preprocess or default_preprocess(config.backbone, self.backbone_config)
        self.tokenizer_files = tokenizer_files
        self._tokenizer: TextTokenizer | None = None  # made on first use: a Hugging Face one is slow to load
        self.backbone = create_backbone(config.backbone, self.backbone_config)
        self.depths = {VISION: len(towers.image_blocks(self.backbone)), TEXT: len(towers.text_blocks(self.backbone))}
        # Towers of different depths pair layer by layer from the top: the deeper tower's last `paired`
        # layers meet the shallower tower's layers, and its first ones run alone, without cross-attention
        # (docs/model.md). The late layers are where both towers hold their most semantic states.
        self.paired = min(self.depths.values())
        self.unpaired = {tower: depth - self.paired for tower, depth in self.depths.items()}
        widths = {VISION: towers.image_width(self.backbone), TEXT: towers.text_width(self.backbone)}
        heads = {VISION: towers.attention_heads(towers.image_blocks(self.backbone)[0]), TEXT: towers.attention_heads(towers.text_blocks(self.backbone)[0])}
        self.text_causal = towers.text_is_causal(self.backbone)
        adapters = config.adapters

        def tower_adapters(tower: str) -> nn.ModuleList:
            return nn.ModuleList(Adapter(widths[tower], adapters.tsa_bottleneck, adapters.adapter_dropout) for _ in range(self.depths[tower]))

        self.adapter_sets = config.adapter_sets
        self.shared_task_adapters = adapters.shared_task_adapters
        self.tsa = nn.ModuleDict(
            {
                name: nn.ModuleDict({VISION: tower_adapters(VISION), TEXT: tower_adapters(TEXT)})
                for name in ((SHARED_ADAPTERS,) if adapters.shared_task_adapters else config.adapter_sets)
            }
        )
        self.fusion = adapters.fusion
        self.xaa = None
        if config.cross_attention:

            def cross_adapters(tower: str, context: str) -> nn.ModuleList:
                return nn.ModuleList(
                    CrossAttentionAdapter(widths[tower], widths[context], heads[tower], adapters.xaa_bottleneck, adapters.adapter_dropout)
                    for _ in range(self.paired)
                )

            sides = {TEXT: cross_adapters(TEXT, VISION)}
            if adapters.fusion == "cross_attention":  # only fusion has the image side attend to the text
                sides[VISION] = cross_adapters(VISION, TEXT)
            self.xaa = nn.ModuleDict(sides)
        self.caption_reads = adapters.caption_reads
        self.embed_dim = self.backbone_config["embed_dim"]  # the projected image and text vectors
        self.text_width = widths[TEXT]

    def tokenizer(self) -> TextTokenizer:
        """The base's tokenizer: open_clip's CLIP tokenizer, or the Hugging Face one the text tower was
        trained with, at the tower's context length."""
        if self._tokenizer is None:
            self._tokenizer = text_tokenizer(self.backbone_config, self.tokenizer_files)
        return self._tokenizer

    def open_cross_attention(self) -> None:
        """Give each cross-attention adapter's last projection PyTorch's default initialisation instead of
        zero: the model no longer starts as its backbone, but the attention's projections get gradient
        from the first update instead of waiting for that projection to grow (TrainConfig.xaa_init)."""
        for side in (self.xaa or {}).values():  # a contrastive-only model has none
            for adapter in side:
                adapter.adapter.up.reset_parameters()

    # Towers: their own stems and pooling (famevil.model.towers) ----------------------------------

    def _blocks(self, tower: str) -> nn.Module:
        return towers.image_blocks(self.backbone) if tower == VISION else towers.text_blocks(self.backbone)

    def _task_adapters(self, adapters: str, tower: str) -> nn.ModuleList:
        if adapters not in self.adapter_sets:
            raise FamevilError(f"this model has no {adapters!r} adapters (its tasks: {', '.join(self.adapter_sets)})")
        return self.tsa[SHARED_ADAPTERS if self.shared_task_adapters else adapters][tower]

    def _text_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The text tower's mask as it was trained (contrastive and fusion modes): causal, or none."""
        return _causal_mask(tokens.shape[1], tokens.shape[1], tokens.device) if self.text_causal else None

    def _real_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """True up to and including each text's end token; what follows is padding, whatever ids it holds."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return positions[None, :] <= self.tokenizer().ends(tokens)[:, None]

    # Contrastive mode ----------------------------------------------------------------------------

    def _run_tower(self, tower: str, x: torch.Tensor, adapters: str, mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One tower alone; returns its output and, per layer, the state a generating text tower reads
        (the block's output or its h', as `caption_reads` says)."""
        states = []
        for block, adapter in zip(self._blocks(tower), self._task_adapters(adapters, tower), strict=True):
            h = towers.self_attention(block, x, mask)
            x = towers.feed_forward(block, h) + adapter(h)
            states.append(x if self.caption_reads == "block_outputs" else h)
        return x, states

    def encode_image(self, images: torch.Tensor, adapters: str, normalize: bool = True) -> torch.Tensor:
        x, _ = self._run_tower(VISION, towers.image_stem(self.backbone, images), adapters, None)
        vector = towers.image_vector(self.backbone, x)
        return F.normalize(vector, dim=-1) if normalize else vector

    def encode_text(self, tokens: torch.Tensor, adapters: str, normalize: bool = True) -> torch.Tensor:
        x, _ = self._run_tower(TEXT, towers.text_stem(self.backbone, tokens), adapters, self._text_mask(tokens))
        vector = towers.text_vector(self.backbone, x, tokens)
        return F.normalize(vector, dim=-1) if normalize else vector

    # Fusion mode ---------------------------------------------------------------------------------

    def _require_xaa(self) -> nn.ModuleDict:
        if self.xaa is None:
            raise FamevilError("this model has no cross-attention adapters: none of its tasks fuses the towers or generates text")
        return self.xaa

    def fuse(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text vectors of both towers run together, each cross-attending to the other at the
        paired layers (with late fusion: run apart)."""
        if self.fusion == "late":
            return self.encode_image(images, adapters, normalize=False), self.encode_text(tokens, adapters, normalize=False)
        xaa = self._require_xaa()
        x = {VISION: towers.image_stem(self.backbone, images), TEXT: towers.text_stem(self.backbone, tokens)}
        masks = {VISION: None, TEXT: self._text_mask(tokens)}
        blocks = {tower: list(self._blocks(tower)) for tower in x}
        tsa = {tower: self._task_adapters(adapters, tower) for tower in x}
        real_tokens = self._real_tokens(tokens)
        for tower in x:  # the deeper tower's first layers, alone
            for layer in range(self.unpaired[tower]):
                h = towers.self_attention(blocks[tower][layer], x[tower], masks[tower])
                x[tower] = towers.feed_forward(blocks[tower][layer], h) + tsa[tower][layer](h)
        for pair in range(self.paired):
            layer = {tower: self.unpaired[tower] + pair for tower in x}
            h = {tower: towers.self_attention(blocks[tower][layer[tower]], x[tower], masks[tower]) for tower in x}
            # Each tower's sum in one expression, the image tower's first: the order the gradients accumulate
            # in, which keeps earlier runs' weights bit for bit.
            x[VISION] = self._block_output(VISION, blocks, tsa, layer, h) + xaa[VISION][pair](h[VISION], h[TEXT], real_tokens)
            x[TEXT] = self._block_output(TEXT, blocks, tsa, layer, h) + xaa[TEXT][pair](h[TEXT], h[VISION])
        return towers.image_vector(self.backbone, x[VISION]), towers.text_vector(self.backbone, x[TEXT], tokens)

    @staticmethod
    def _block_output(tower: str, blocks: dict, tsa: dict, layer: dict[str, int], h: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tower's block output at a fused layer before its cross-attention: h' + MLP + TSA."""
        return towers.feed_forward(blocks[tower][layer[tower]], h[tower]) + tsa[tower][layer[tower]](h[tower])

    def composed(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str) -> torch.Tensor:
        """The fused image vector plus the fused text vector (a composed query, a classifier's input)."""
        image_vector, text_vector = self.fuse(images, tokens, adapters)
        return image_vector + text_vector

    # Generative mode -----------------------------------------------------------------------------

    def start_decoding(self, images: torch.Tensor, adapters: str) -> DecodingState:
        """Run the image tower once and keep, per paired layer, the keys and values the text side attends to."""
        xaa = self._require_xaa()
        _, states = self._run_tower(VISION, towers.image_stem(self.backbone, images), adapters, None)
        paired_states = states[self.unpaired[VISION] :]
        keys_values = [adapter.context_keys_values(h) for adapter, h in zip(xaa[TEXT], paired_states, strict=True)]
        return DecodingState(keys_values, [LayerCache() for _ in range(self.depths[TEXT])])

    def decode_step(
        self, tokens: torch.Tensor, state: DecodingState, adapters: str, last_only: bool = False, where: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The text tower's final states (after its last LayerNorm, where a language-model head reads)
        for `tokens`, which continue the text in `state` (all of it, when the state is fresh); updates
        the state. A vocabulary-wide head is the largest matrix of a small model, so only the states it
        needs come back: last_only, the last position's (decoding); where, the positions a boolean
        (batch, length) mask selects, packed into (selected, width).

        The text tower runs causally whatever it was trained with, as FAME-ViL's captioner makes CLIP's
        text tower a decoder: a bidirectional tower (SigLIP's) becomes causal here, in this mode only."""
        xaa = self._require_xaa()
        start, count = state.length, tokens.shape[1]
        mask = _causal_mask(count, start + count, tokens.device)
        x = towers.text_stem(self.backbone, tokens, start)
        cross = [None] * self.unpaired[TEXT] + list(zip(xaa[TEXT], state.image_keys_values, strict=True))
        layers = zip(self._blocks(TEXT), self._task_adapters(adapters, TEXT), cross, state.caches, strict=True)
        for block, tsa, paired, cache in layers:
            h = towers.self_attention(block, x, mask, cache)
            x = towers.feed_forward(block, h) + tsa(h)
            if paired is not None:
                adapter, keys_values = paired
                x = x + adapter(h, keys_values=keys_values)
        state.length += count
        if last_only:
            x = x[:, -1]
        elif where is not None:
            x = x[where]
        return towers.text_final_norm(self.backbone, x)

    def caption_states(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str, where: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced final text states (batch, length, width) for `tokens` given `images`; with
        `where`, only the selected positions', packed (selected, width)."""
        return self.decode_step(tokens, self.start_decoding(images, adapters), adapters, where=where)
