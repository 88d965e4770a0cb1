"""Benchmark: forward + backward time per sample of each FAME-ViL mode against plain open_clip, and caption
decoding speed with and without the key/value cache.

    python benchmarks/model_speed.py [--models famevil-tiny ViT-B-16] [--batch-size 8] [--decode-batch 32] [--steps 3]

For each architecture (random weights, CPU, all threads), times one training step of: plain
open_clip's contrastive CLIP loss, and FAME-ViL's XMR (contrastive), SCR (fusion) and FIC
(generative) losses on the same batch; prints seconds per sample and the ratio to plain open_clip.
Then greedy decoding of 32 new tokens for --decode-batch images, with and without the cache, in
tokens/s of the token loop (the image tower runs once either way and is timed apart). On a CPU, a
small decoding batch is bound by reading the weights once per step, which the cache cannot spare.
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch
import torch.nn.functional as F
from timing import interleaved  # benchmarks/timing.py, beside this script

from famevil.losses import symmetric_info_nce
from famevil.model.decoding import generate
from famevil.multitask import ModelConfig, MultiTaskModel, task_loss
from famevil.tasks import task_names

CAPTION = "Long sleeve wool cardigan in navy. V-neck collar. Five-button closure at front. Two patch pockets. Made in Italy."


def _seconds(step, steps: int) -> float:
    step()  # warm-up: allocations and kernels selection
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _training_step(model: torch.nn.Module, loss_of) -> callable:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_of().backward()

    return step


def _time_model(name: str, args: argparse.Namespace) -> None:
    model = MultiTaskModel(ModelConfig(backbone=name, tasks=task_names(), vocabularies={"subcategory": [f"class {i}" for i in range(121)]})).train()
    clip = model.backbone
    size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    images = torch.randn(args.batch_size, 3, size, size)
    tokens = open_clip.get_tokenizer(name)([CAPTION] * args.batch_size)
    batch = {"images": images, "tokens": tokens, "labels": torch.zeros(args.batch_size, dtype=torch.long)}

    def plain_loss():
        image = F.normalize(clip.encode_image(images), dim=-1)
        text = F.normalize(clip.encode_text(tokens), dim=-1)
        return symmetric_info_nce(clip.logit_scale.exp() * image @ text.T)

    plain_step = _training_step(model, plain_loss)
    print(f"\n{name}: forward + backward, seconds per sample (and against plain open_clip, steps interleaved)")
    print(f"  {'open_clip contrastive':<28}{_seconds(plain_step, args.steps) / args.batch_size:9.4f}   1.00x")
    for label, task in (("FAME-ViL contrastive (xmr)", "xmr"), ("FAME-ViL fusion (scr)", "scr"), ("FAME-ViL generative (fic)", "fic")):
        _, seconds, ratio = interleaved(plain_step, _training_step(model, lambda task=task: task_loss(model, task, batch)[0]), args.steps)
        print(f"  {label:<28}{seconds / args.batch_size:9.4f}   {ratio:.2f}x")

    model.eval()
    images = torch.randn(args.decode_batch, 3, size, size)
    with torch.no_grad():
        image_side = _seconds(lambda: model.start_decoding(images, "fic"), args.steps)  # run once per caption either way
    for use_cache in (True, False):
        captions = generate(model, model.head("fic"), images, "fic", max_new_tokens=32, use_cache=use_cache)
        produced = sum(len(c) for c in captions) + sum(len(c) < 32 for c in captions)  # the end token counts too
        seconds = _seconds(lambda use_cache=use_cache: generate(model, model.head("fic"), images, "fic", max_new_tokens=32, use_cache=use_cache), args.steps)
        print(
            f"  decoding {args.decode_batch} images, {'with' if use_cache else 'without'} cache: {produced / (seconds - image_side):8.1f} tokens/s "
            f"({produced} tokens; {seconds:.2f} s of which {image_side:.2f} s image tower)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["famevil-tiny", "ViT-B-16"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for name in args.models:
        _time_model(name, args)


if __name__ == "__main__":
    main()
