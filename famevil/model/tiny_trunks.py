"""famevil's tiny timm image trunks, registered with timm under famevil_* names so that an open_clip
config can name them (vision_cfg.timm_model_name) as it names SigLIP's vit_base_patch16_siglip_224.

They are timm's own VisionTransformer at CPU size, each in one of the variants famevil's tower
stepping must follow, so that the timm route is tested end to end offline, as famevil-tiny tests
open_clip's own towers:

    famevil_vit_tiny_map   SigLIP's layout: no class token, attention-pool ("map") head
    famevil_vit_tiny_ls    layer scale, a register token, mean pooling with a norm after it
    famevil_vit_tiny_post  post-norm blocks (ResPostBlock), class-token pooling
"""

from __future__ import annotations

from timm.models import register_model
from timm.models.vision_transformer import ResPostBlock, VisionTransformer

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 2}


FACTORY_KEYS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # what timm.create_model hands every model function


def _trunk(variant: dict, kwargs: dict) -> VisionTransformer:
    model = VisionTransformer(**(TINY | variant | {key: value for key, value in kwargs.items() if key not in FACTORY_KEYS}))
    # timm's factory gives each model the config of its weights; open_clip's TimmModel reads it for
    # the pooled size (none here: a ViT's features are tokens).
    model.pretrained_cfg = model.default_cfg = {"num_classes": model.num_classes, "input_size": (3, TINY["img_size"], TINY["img_size"])}
    return model


@register_model
def famevil_vit_tiny_map(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _trunk({"class_token": False, "global_pool": "map"}, kwargs)


@register_model
def famevil_vit_tiny_ls(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _trunk({"init_values": 0.5, "reg_tokens": 1, "global_pool": "avg", "fc_norm": True}, kwargs)


@register_model
def famevil_vit_tiny_post(pretrained: bool = False, **kwargs) -> VisionTransformer:
    return _trunk({"block_fn": ResPostBlock, "global_pool": "token"}, kwargs)
