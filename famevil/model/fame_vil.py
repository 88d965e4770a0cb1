"""FAME-ViL around an open_clip CLIP: the backbone's modules and weights stay open_clip's; the adapters and
heads sit beside them, and the towers are stepped block by block so that the adapters can join in.

In every block, with h' the state after self-attention and its residual:

    h = h' + MLP(LN2(h')) + TSA_task(h') [+ XAA(h', other stream's h' at this layer)]

Modes: contrastive (towers apart, no XAA), fusion (both towers advance together, each layer computed
once, and cross-attend both ways; text padding masked), generative (the causal text tower
cross-attends to the image tower's states of the same layer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from data_specs.errors import FamevilError
from famevil.model.adapters import Adapter, CrossAttentionAdapter, attend
from famevil.model.backbone import backbone_config, create_backbone
from famevil.model.heads import HeadSizes

from famevil.model.tasks import CONTRASTIVE, TASK_NAMES, find_task


@dataclass(frozen=True)
class FameVilConfig:
    backbone: str  # an open_clip model name: ViT-B-16, famevil-tiny, ...
    tasks: tuple[str, ...] = TASK_NAMES  # tasks that get a TSA and a head
    tsa_bottleneck: int = 64  # the paper's main model; 128 and 512 in its ablations
    xaa_bottleneck: int = 64  # a setting of its own (the public code hard-codes 64)
    adapter_dropout: float = 0.1
    num_classes: int = 0  # SCR classes: the shards' subcategory vocabulary size
    vocabularies: dict = field(default_factory=dict)  # label names, kept so a checkpoint is self-contained

    def to_dict(self) -> dict:
        return asdict(self) | {"tasks": list(self.tasks)}

    @classmethod
    def from_dict(cls, values: dict) -> FameVilConfig:
        return cls(**(values | {"tasks": tuple(values["tasks"])}))


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
    def __init__(self, config: FameVilConfig, architecture: dict | None = None):
        """architecture: the open_clip config of the backbone; by default, that of config.backbone."""
        super().__init__()
        self.config = config
        tasks = [find_task(name) for name in config.tasks]
        if not tasks:
            raise FamevilError("a FAME-ViL model needs at least one task")
        self.backbone_config = architecture or backbone_config(config.backbone)
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

        def tower_adapters(width: int) -> nn.ModuleList:
            return nn.ModuleList(Adapter(width, config.tsa_bottleneck, config.adapter_dropout) for _ in range(self.layers))

        self.tsa = nn.ModuleDict({t.name: nn.ModuleDict({"vision": tower_adapters(vision_width), "text": tower_adapters(text_width)}) for t in tasks})
        if any(t.mode != CONTRASTIVE for t in tasks):
            self.xaa = nn.ModuleDict(
                {
                    "vision": nn.ModuleList(
                        CrossAttentionAdapter(vision_width, text_width, vision_heads, config.xaa_bottleneck, config.adapter_dropout)
                        for _ in range(self.layers)
                    ),
                    "text": nn.ModuleList(
                        CrossAttentionAdapter(text_width, vision_width, text_heads, config.xaa_bottleneck, config.adapter_dropout)
                        for _ in range(self.layers)
                    ),
                }
            )
        else:
            self.xaa = None
        sizes = HeadSizes(self.backbone.text_projection.shape[1], text_width, self.backbone.vocab_size, config.num_classes)
        heads = {t.name: head for t in tasks if (head := t.build_head(sizes)) is not None}
        self.heads = nn.ModuleDict(heads)

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

    def _task_adapters(self, task: str, tower: str) -> nn.ModuleList:
        if task not in self.tsa:
            raise FamevilError(f"this model has no {task!r} adapters (its tasks: {', '.join(self.tsa)})")
        return self.tsa[task][tower]

    def _blocks(self, tower: str) -> nn.ModuleList:
        return (self.backbone.visual.transformer if tower == "vision" else self.backbone.transformer).resblocks

    # Contrastive mode ----------------------------------------------------------------------------

    def _run_tower(self, tower: str, x: torch.Tensor, task: str, mask: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One tower alone; returns its output and each layer's h' (what the other tower attends to)."""
        states = []
        for block, adapter in zip(self._blocks(tower), self._task_adapters(task, tower)):
            h = _self_attention(block, x, mask)
            states.append(h)
            x = _feed_forward(block, h) + adapter(h)
        return x, states

    def encode_image(self, images: torch.Tensor, task: str, normalize: bool = True) -> torch.Tensor:
        x, _ = self._run_tower("vision", self._image_stem(images), task, None)
        vector = self._image_vector(x)
        return F.normalize(vector, dim=-1) if normalize else vector

    def encode_text(self, tokens: torch.Tensor, task: str, normalize: bool = True) -> torch.Tensor:
        causal = _causal_mask(tokens.shape[1], tokens.shape[1], tokens.device)
        x, _ = self._run_tower("text", self._text_stem(tokens), task, causal)
        vector = self._text_vector(x, tokens)
        return F.normalize(vector, dim=-1) if normalize else vector

    # Fusion mode ---------------------------------------------------------------------------------

    def _require_xaa(self) -> nn.ModuleDict:
        if self.xaa is None:
            raise FamevilError("this model has no cross-attention adapters: none of its tasks fuses the towers")
        return self.xaa

    def fuse(self, images: torch.Tensor, tokens: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text vectors of both towers run together, each cross-attending to the other."""
        xaa = self._require_xaa()
        vision_x, text_x = self._image_stem(images), self._text_stem(tokens)
        causal = _causal_mask(tokens.shape[1], tokens.shape[1], tokens.device)
        real_tokens = _real_tokens(tokens)
        layers = zip(
            self._blocks("vision"), self._blocks("text"),
            self._task_adapters(task, "vision"), self._task_adapters(task, "text"),
            xaa["vision"], xaa["text"],
        )
        for vision_block, text_block, vision_tsa, text_tsa, vision_xaa, text_xaa in layers:
            vision_h, text_h = _self_attention(vision_block, vision_x, None), _self_attention(text_block, text_x, causal)
            vision_x = _feed_forward(vision_block, vision_h) + vision_tsa(vision_h) + vision_xaa(vision_h, text_h, real_tokens)
            text_x = _feed_forward(text_block, text_h) + text_tsa(text_h) + text_xaa(text_h, vision_h)
        return self._image_vector(vision_x), self._text_vector(text_x, tokens)

    def composed(self, images: torch.Tensor, tokens: torch.Tensor, task: str) -> torch.Tensor:
        """The fused image vector plus the fused text vector: TGIR's query and SCR's classifier input."""
        image_vector, text_vector = self.fuse(images, tokens, task)
        return image_vector + text_vector

    # Generative mode -----------------------------------------------------------------------------

    def start_decoding(self, images: torch.Tensor, task: str = "fic") -> DecodingState:
        """Run the image tower once and keep, per layer, the keys and values the text side attends to."""
        xaa = self._require_xaa()
        _, states = self._run_tower("vision", self._image_stem(images), task, None)
        keys_values = [adapter.context_keys_values(h) for adapter, h in zip(xaa["text"], states)]
        return DecodingState(keys_values, [LayerCache() for _ in range(self.layers)])

    def decode_step(
        self, tokens: torch.Tensor, state: DecodingState, task: str = "fic", last_only: bool = False, where: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits for `tokens`, which continue the text in `state` (all of it, when the
        state is fresh); updates the state. The language-model head is the largest matrix of a small
        model, so it runs only where needed: last_only, the last position (decoding); where, the
        positions a boolean (batch, length) mask selects, packed into (selected, vocabulary)."""
        xaa = self._require_xaa()
        start, count = state.length, tokens.shape[1]
        mask = _causal_mask(count, start + count, tokens.device)
        x = self._text_stem(tokens, start)
        layers = zip(self._blocks("text"), self._task_adapters(task, "text"), xaa["text"], state.image_keys_values, state.caches)
        for block, tsa, cross, keys_values, cache in layers:
            h = _self_attention(block, x, mask, cache)
            x = _feed_forward(block, h) + tsa(h) + cross(h, keys_values=keys_values)
        state.length += count
        if last_only:
            x = x[:, -1]
        elif where is not None:
            x = x[where]
        return self.head(task)(self.backbone.ln_final(x))

    def caption_logits(self, images: torch.Tensor, tokens: torch.Tensor, task: str = "fic", where: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced next-token logits (batch, length, vocabulary) for `tokens` given `images`;
        with `where`, only the selected positions', packed (selected, vocabulary)."""
        return self.decode_step(tokens, self.start_decoding(images, task), task, where=where)

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task's logits on a batch (see famevil.model.objectives). Training calls the model, not
        its methods, so that a DistributedDataParallel wrapper sees the forward pass and syncs gradients."""
        return find_task(task).logits(self, batch)

    def loss(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task's training loss on a batch."""
        return find_task(task).objective(self(task, batch), batch)

    @torch.no_grad()
    def start_language_head_from_embeddings(self) -> None:
        """Copy the backbone's token embedding into the captioning head (which stays untied): a caption
        head that starts from the word vectors the text tower was trained with learns in far fewer
        steps than one from noise. Call after loading the backbone's weights."""
        if "fic" in self.heads:
            self.heads["fic"].weight.copy_(self.backbone.token_embedding.weight)
            self.heads["fic"].bias.zero_()

    def head(self, task: str) -> nn.Module:
        if task not in self.heads:
            raise FamevilError(f"this model has no {task!r} head (its heads: {', '.join(self.heads) or 'none'})")
        return self.heads[task]
