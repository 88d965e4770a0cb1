"""FAME-ViL around an open_clip CLIP: the backbone's modules and weights stay open_clip's; the adapters sit
beside them, and the towers are stepped block by block so that the adapters can join in.

This is the plain network: towers, adapters and three modes. It knows nothing of tasks; a task picks
its set of task-specific adapters by name and puts its own head on top (famevil.multitask).

In every block, with h' the state after self-attention and its residual:

    h = h' + MLP(LN2(h')) + TSA_task(h') [+ XAA(h', other stream's h' at this layer)]

Modes: contrastive (towers apart, no XAA), fusion (both towers advance together, each layer computed
once, and cross-attend both ways to the other's h'; text padding masked), generative (the image tower
runs first; the causal text tower's layer i cross-attends to image layer i: to its block's output, as
the authors' captioner does, or to its h', a setting: `caption_reads`).

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
from famevil.model.adapter_config import AdapterConfig
from famevil.model.adapters import Adapter, CrossAttentionAdapter, attend
from famevil.model.backbone import backbone_config, create_backbone, default_preprocess, text_tokenizer


@dataclass(frozen=True, kw_only=True)
class FameVilConfig:
    backbone: str  # the architecture's name: open_clip's (ViT-B-16), famevil's (famevil-tiny), or the hf-hub:/local-dir: base it came from
    adapter_sets: tuple[str, ...]  # one set of task-specific adapters (TSA) per name, in every block of both towers
    cross_attention: bool = True  # build the shared cross-attention adapters (fusion and generative modes need them)
    adapters: AdapterConfig = AdapterConfig()


SHARED_ADAPTERS = "shared"  # the one TSA set's key when the tasks share it


class LayerCache:
    """Self-attention keys and values of the text tokens decoded so far, for one layer."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is not None:
            keys, values = torch.cat([self.keys, keys], dim=1), torch.cat([self.values, values], dim=1)
        self.keys, self.values = keys, values
        return keys, values

    def reorder(self, rows: torch.Tensor) -> None:
        if self.keys is not None:
            self.keys, self.values = self.keys.index_select(0, rows), self.values.index_select(0, rows)


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


def _real_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """True up to and including the end-of-text token (CLIP's largest id, where the text vector is
    pooled); what follows is padding, whatever ids it holds."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return positions[None, :] <= tokens.argmax(dim=-1, keepdim=True)


def _self_attention(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, cache: LayerCache | None = None) -> torch.Tensor:
    """h' = x + attention(LN1(x)), computed from open_clip's own attention weights (so that a key/value
    cache can be kept, which nn.MultiheadAttention does not allow)."""
    attention = block.attn
    queries, keys, values = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
    if cache is not None:
        keys, values = cache.extend(keys, values)
    attended = attend(queries, keys, values, attention.num_heads, mask)
    return x + block.ls_1(attention.out_proj(attended))


def _feed_forward(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return h + block.ls_2(block.mlp(block.ln_2(h)))


class FameVil(nn.Module):
    def __init__(self, config: FameVilConfig, architecture: dict | None = None, preprocess: Preprocess | None = None):
        """architecture: the open_clip config of the backbone (activation included); by default, that of
        config.backbone. preprocess: how images are prepared for it, as its weights were trained; by
        default, the architecture's (famevil.model.backbone.default_preprocess)."""
        super().__init__()
        if not config.adapter_sets:
            raise FamevilError("a FAME-ViL model needs at least one set of task-specific adapters")
        self.backbone_name = config.backbone
        self.backbone_config = architecture or backbone_config(config.backbone)
        self.preprocess = preprocess or default_preprocess(config.backbone, self.backbone_config)
        self.backbone = create_backbone(config.backbone, self.backbone_config)
        vision, text = self.backbone.visual.transformer, self.backbone.transformer
        if vision.layers != text.layers:
            raise FamevilError(
                f"--model {config.backbone}: the towers have {vision.layers} and {text.layers} layers; "
                "layer-by-layer cross-attention needs towers of equal depth"
            )
        self.layers = vision.layers
        vision_width, text_width = vision.width, text.width
        vision_heads, text_heads = vision.resblocks[0].attn.num_heads, text.resblocks[0].attn.num_heads
        adapters = config.adapters

        def tower_adapters(width: int) -> nn.ModuleList:
            return nn.ModuleList(Adapter(width, adapters.tsa_bottleneck, adapters.adapter_dropout) for _ in range(self.layers))

        self.adapter_sets = config.adapter_sets
        self.shared_task_adapters = adapters.shared_task_adapters
        self.tsa = nn.ModuleDict(
            {
                name: nn.ModuleDict({"vision": tower_adapters(vision_width), "text": tower_adapters(text_width)})
                for name in ((SHARED_ADAPTERS,) if adapters.shared_task_adapters else config.adapter_sets)
            }
        )
        self.fusion = adapters.fusion
        self.xaa = None
        if config.cross_attention:

            def cross_adapters(width: int, context_width: int, heads: int) -> nn.ModuleList:
                return nn.ModuleList(
                    CrossAttentionAdapter(width, context_width, heads, adapters.xaa_bottleneck, adapters.adapter_dropout) for _ in range(self.layers)
                )

            sides = {"text": cross_adapters(text_width, vision_width, text_heads)}
            if adapters.fusion == "cross_attention":  # only fusion has the image side attend to the text
                sides["vision"] = cross_adapters(vision_width, text_width, vision_heads)
            self.xaa = nn.ModuleDict(sides)
        self.caption_reads = adapters.caption_reads
        self.embed_dim = self.backbone.text_projection.shape[1]  # the projected image and text vectors
        self.text_width = text_width

    def tokenizer(self):
        """The backbone's tokenizer (open_clip's, for its text tower's context length)."""
        return text_tokenizer(self.backbone_config)

    def open_cross_attention(self) -> None:
        """Give each cross-attention adapter's last projection PyTorch's default initialisation instead of
        zero: the model no longer starts as its backbone, but the attention's projections get gradient
        from the first update instead of waiting for that projection to grow (TrainConfig.xaa_init)."""
        for side in (self.xaa or {}).values():  # a contrastive-only model has none
            for adapter in side:
                adapter.adapter.up.reset_parameters()

    # Stems and pooling: open_clip's own code paths --------------------------------------------------

    def _image_stem(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.visual._embeds(images)

    def _image_vector(self, x: torch.Tensor) -> torch.Tensor:
        visual = self.backbone.visual
        pooled, _ = visual._pool(x)
        return pooled @ visual.proj if visual.proj is not None else pooled

    def _text_stem(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        positions = self.backbone.positional_embedding[start : start + tokens.shape[1]]
        return self.backbone.token_embedding(tokens) + positions

    def _text_vector(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.backbone.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # the end-of-text token
        projection = self.backbone.text_projection
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def _task_adapters(self, adapters: str, tower: str) -> nn.ModuleList:
        if adapters not in self.adapter_sets:
            raise FamevilError(f"this model has no {adapters!r} adapters (its tasks: {', '.join(self.adapter_sets)})")
        return self.tsa[SHARED_ADAPTERS if self.shared_task_adapters else adapters][tower]

    def _blocks(self, tower: str) -> nn.ModuleList:
        return (self.backbone.visual.transformer if tower == "vision" else self.backbone.transformer).resblocks

    # Contrastive mode ----------------------------------------------------------------------------

    def _run_tower(self, tower: str, x: torch.Tensor, adapters: str, mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One tower alone; returns its output and, per layer, the state a generating text tower reads
        (the block's output or its h', as `caption_reads` says)."""
        states = []
        for block, adapter in zip(self._blocks(tower), self._task_adapters(adapters, tower), strict=True):
            h = _self_attention(block, x, mask)
            x = _feed_forward(block, h) + adapter(h)
            states.append(x if self.caption_reads == "block_outputs" else h)
        return x, states

    def encode_image(self, images: torch.Tensor, adapters: str, normalize: bool = True) -> torch.Tensor:
        x, _ = self._run_tower("vision", self._image_stem(images), adapters, None)
        vector = self._image_vector(x)
        return F.normalize(vector, dim=-1) if normalize else vector

    def encode_text(self, tokens: torch.Tensor, adapters: str, normalize: bool = True) -> torch.Tensor:
        causal = _causal_mask(tokens.shape[1], tokens.shape[1], tokens.device)
        x, _ = self._run_tower("text", self._text_stem(tokens), adapters, causal)
        vector = self._text_vector(x, tokens)
        return F.normalize(vector, dim=-1) if normalize else vector

    # Fusion mode ---------------------------------------------------------------------------------

    def _require_xaa(self) -> nn.ModuleDict:
        if self.xaa is None:
            raise FamevilError("this model has no cross-attention adapters: none of its tasks fuses the towers or generates text")
        return self.xaa

    def fuse(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text vectors of both towers run together, each cross-attending to the other (with
        late fusion: run apart)."""
        if self.fusion == "late":
            return self.encode_image(images, adapters, normalize=False), self.encode_text(tokens, adapters, normalize=False)
        xaa = self._require_xaa()
        vision_x, text_x = self._image_stem(images), self._text_stem(tokens)
        causal = _causal_mask(tokens.shape[1], tokens.shape[1], tokens.device)
        real_tokens = _real_tokens(tokens)
        layers = zip(
            self._blocks("vision"),
            self._blocks("text"),
            self._task_adapters(adapters, "vision"),
            self._task_adapters(adapters, "text"),
            xaa["vision"],
            xaa["text"],
            strict=True,
        )
        for vision_block, text_block, vision_tsa, text_tsa, vision_xaa, text_xaa in layers:
            vision_h, text_h = _self_attention(vision_block, vision_x, None), _self_attention(text_block, text_x, causal)
            vision_x = _feed_forward(vision_block, vision_h) + vision_tsa(vision_h) + vision_xaa(vision_h, text_h, real_tokens)
            text_x = _feed_forward(text_block, text_h) + text_tsa(text_h) + text_xaa(text_h, vision_h)
        return self._image_vector(vision_x), self._text_vector(text_x, tokens)

    def composed(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str) -> torch.Tensor:
        """The fused image vector plus the fused text vector (a composed query, a classifier's input)."""
        image_vector, text_vector = self.fuse(images, tokens, adapters)
        return image_vector + text_vector

    # Generative mode -----------------------------------------------------------------------------

    def start_decoding(self, images: torch.Tensor, adapters: str) -> DecodingState:
        """Run the image tower once and keep, per layer, the keys and values the text side attends to."""
        xaa = self._require_xaa()
        _, states = self._run_tower("vision", self._image_stem(images), adapters, None)
        keys_values = [adapter.context_keys_values(h) for adapter, h in zip(xaa["text"], states, strict=True)]
        return DecodingState(keys_values, [LayerCache() for _ in range(self.layers)])

    def decode_step(
        self, tokens: torch.Tensor, state: DecodingState, adapters: str, last_only: bool = False, where: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The text tower's final states (after its last LayerNorm, where a language-model head reads)
        for `tokens`, which continue the text in `state` (all of it, when the state is fresh); updates
        the state. A vocabulary-wide head is the largest matrix of a small model, so only the states it
        needs come back: last_only, the last position's (decoding); where, the positions a boolean
        (batch, length) mask selects, packed into (selected, width)."""
        xaa = self._require_xaa()
        start, count = state.length, tokens.shape[1]
        mask = _causal_mask(count, start + count, tokens.device)
        x = self._text_stem(tokens, start)
        layers = zip(self._blocks("text"), self._task_adapters(adapters, "text"), xaa["text"], state.image_keys_values, state.caches, strict=True)
        for block, tsa, cross, keys_values, cache in layers:
            h = _self_attention(block, x, mask, cache)
            x = _feed_forward(block, h) + tsa(h) + cross(h, keys_values=keys_values)
        state.length += count
        if last_only:
            x = x[:, -1]
        elif where is not None:
            x = x[where]
        return self.backbone.ln_final(x)

    def caption_states(self, images: torch.Tensor, tokens: torch.Tensor, adapters: str, where: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced final text states (batch, length, width) for `tokens` given `images`; with
        `where`, only the selected positions', packed (selected, width)."""
        return self.decode_step(tokens, self.start_decoding(images, adapters), adapters, where=where)
