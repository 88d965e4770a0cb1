"""The towers as famevil steps them, block by block, for every kind it adapts: open_clip's own
VisionTransformer and text towers (a CLIP's, or a CustomTextCLIP's TextTransformer: causal or not,
pooled where its pool_type says), and timm's VisionTransformer trunks (SigLIP's among them) behind
open_clip's TimmModel.

Each block is split where the adapters join it: h' = x + attention(x), then out = h' + MLP(h'), each
half with the block's own norms, layer scale and stochastic depth, pre- or post-norm as the block
has them. The stems before the first block and the pooling after the last are the towers' own code
paths, so that at zero adapters a tower computes exactly what open_clip's forward computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.model import CustomTextCLIP
from open_clip.timm_model import TimmModel
from open_clip.transformer import ResidualAttentionBlock, text_global_pool
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import ResPostBlock, VisionTransformer
from torch import nn

from data_specs.errors import FamevilError
from famevil.model.adapters import attend

VISION, TEXT = "vision", "text"


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


# Blocks ----------------------------------------------------------------------------------------------


def self_attention(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None, cache: LayerCache | None = None) -> torch.Tensor:
    """h': the block's input plus its attention branch. An open_clip block's attention is computed from
    its own weights, so that a key/value cache can be kept (nn.MultiheadAttention allows none); a timm
    block (image side only: never masked, never cached) runs its own attention module."""
    if isinstance(block, ResidualAttentionBlock):
        attention = block.attn
        queries, keys, values = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
        if cache is not None:
            keys, values = cache.extend(keys, values)
        return x + block.ls_1(attention.out_proj(attend(queries, keys, values, attention.num_heads, mask)))
    if isinstance(block, ResPostBlock):  # post-norm: the norm follows the branch
        return x + block.drop_path1(block.norm1(block.attn(x)))
    return x + block.drop_path1(block.ls1(block.attn(block.norm1(x))))


def feed_forward(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The block's output from h': h' plus its MLP branch."""
    if isinstance(block, ResidualAttentionBlock):
        return h + block.ls_2(block.mlp(block.ln_2(h)))
    if isinstance(block, ResPostBlock):
        return h + block.drop_path2(block.norm2(block.mlp(h)))
    return h + block.drop_path2(block.ls2(block.mlp(block.norm2(h))))


def attention_heads(block: nn.Module) -> int:
    return block.attn.num_heads


# The image tower -------------------------------------------------------------------------------------


def image_blocks(backbone: nn.Module) -> nn.ModuleList | nn.Sequential:
    visual = backbone.visual
    return visual.trunk.blocks if isinstance(visual, TimmModel) else visual.transformer.resblocks


def image_width(backbone: nn.Module) -> int:
    visual = backbone.visual
    return visual.trunk.embed_dim if isinstance(visual, TimmModel) else visual.transformer.width


def image_stem(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The tokens the first block reads: patches, class/register tokens, positions, pre-norm."""
    visual = backbone.visual
    if isinstance(visual, TimmModel):
        trunk = visual.trunk
        return trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(images))))
    return visual._embeds(images)


def image_vector(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The image vector from the last block's output, as the tower's head makes it: a class token, a
    mean or an attention pool (timm's "map"), then the projection."""
    visual = backbone.visual
    if isinstance(visual, TimmModel):
        return visual.head(visual.trunk.forward_head(visual.trunk.norm(x)))
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


# The text tower --------------------------------------------------------------------------------------


def text_module(backbone: nn.Module) -> nn.Module:
    """Where the text tower's parts live: a CustomTextCLIP's `text`, or the CLIP itself."""
    return backbone.text if isinstance(backbone, CustomTextCLIP) else backbone


def text_blocks(backbone: nn.Module) -> nn.ModuleList:
    return text_module(backbone).transformer.resblocks


def text_width(backbone: nn.Module) -> int:
    return text_module(backbone).transformer.width


def text_is_causal(backbone: nn.Module) -> bool:
    """Whether the tower was trained with a causal mask (CLIP's) or bidirectionally (SigLIP's)."""
    return text_module(backbone).attn_mask is not None


def _pooling(backbone: nn.Module) -> tuple[str, int | None]:
    """(pool type, end-of-text id) of the text tower, under the names CLIP and TextTransformer give them."""
    text = text_module(backbone)
    if isinstance(backbone, CustomTextCLIP):
        return text.pool_type, getattr(text, "eos_id", None)
    return text.text_pool_type, getattr(text, "text_eos_id", None)


def text_stem(backbone: nn.Module, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Token embeddings plus positions, from position `start` on (decoding continues a text)."""
    text = text_module(backbone)
    return text.token_embedding(tokens) + text.positional_embedding[start : start + tokens.shape[1]]


def text_final_norm(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return text_module(backbone).ln_final(x)


def text_vector(backbone: nn.Module, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The text vector from the last block's output: the final norm, open_clip's pooling, the projection."""
    pool_type, end = _pooling(backbone)
    pooled = text_global_pool(text_final_norm(backbone, x), tokens, pool_type, eos_token_id=end)
    projection = text_module(backbone).text_projection
    if projection is None:
        return pooled
    return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection


def token_embedding(backbone: nn.Module) -> nn.Embedding:
    return text_module(backbone).token_embedding


# What famevil can step -------------------------------------------------------------------------------


def check_steppable(backbone: nn.Module, where: str) -> None:
    """One line, before any work, for a tower built of blocks famevil cannot split where the adapters
    join: it adapts open_clip's ResidualAttentionBlock and timm's Block and ResPostBlock over timm's
    plain Attention."""
    visual = backbone.visual
    if isinstance(visual, TimmModel):
        trunk = visual.trunk
        if not isinstance(trunk, VisionTransformer):
            raise FamevilError(f"{where}: famevil adapts timm's VisionTransformer trunks, not a {type(trunk).__name__}")
        for block in trunk.blocks:
            if type(block) not in (TimmBlock, ResPostBlock) or type(block.attn) is not TimmAttention:
                raise FamevilError(
                    f"{where}: famevil cannot split timm's {type(block).__name__} (attention {type(block.attn).__name__}) yet; "
                    "it adapts timm's Block and ResPostBlock over its plain Attention"
                )
    text = text_module(backbone)
    if getattr(text, "cls_emb", None) is not None:
        raise FamevilError(f"{where}: famevil cannot adapt a text tower with an appended class token (embed_cls) yet")
    if getattr(text, "use_pad_mask", False):
        raise FamevilError(f"{where}: famevil cannot adapt a text tower that masks its padding (use_pad_mask) yet")
