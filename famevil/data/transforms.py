"""How an image becomes the network's input: the preprocessing a base's weights were trained with
(size, mean and std, interpolation), in the authors' geometry.

A `Preprocess` is recorded in every checkpoint's config.json and travels with the model, so that
training, dumping, evaluation and every use of a model prepare images the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from data_specs.errors import FamevilError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI's, and open_clip's default
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
RESIZE_MODES = ("shortest", "longest", "squash")
EVALUATION_FITS = ("squash", "shortest")
# What open_clip's preprocess_cfg holds (open_clip.transform.PreprocessCfg, less its fixed mode "RGB").
OPEN_CLIP_KEYS = ("size", "mean", "std", "interpolation", "resize_mode", "fill_color")


@dataclass(frozen=True)
class Preprocess:
    size: int  # the network's input, in pixels a side
    mean: tuple[float, float, float]  # per channel, after scaling to [0, 1]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # how images are resized: bicubic (open_clip's default) or bilinear
    # How open_clip's own transform fits an image to the input: recorded and exported, but evaluation keeps
    # the authors' geometry whatever it says (evaluation_fit below, then a centre crop; docs/fidelity.md).
    resize_mode: str = "shortest"
    # How evaluation fits an image to 256/224 of the input before its centre crop: "squash" to a square,
    # as the authors do for every data set (a tall FashionIQ garment keeps its top and bottom), or
    # "shortest" side, as famevil did before 0.2 (the crop then cuts a tall image's ends).
    evaluation_fit: str = "squash"
    fill_color: int = 0  # open_clip's padding colour for resize_mode "longest" (exported with the rest)
    # Where the resize's arithmetic runs: "pil", as open_clip's transform does (and so the pretrained
    # weights saw), or "torch", famevil's antialiased tensor resize, which the demo's from-scratch bases
    # and every checkpoint made before 0.2 were trained with (the two differ by one level in under 1% of pixels).
    resampler: str = "pil"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise FamevilError(f"preprocess interpolation {self.interpolation!r}: famevil resizes with {' or '.join(INTERPOLATIONS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise FamevilError(f"preprocess resize_mode {self.resize_mode!r}: expected one of {', '.join(RESIZE_MODES)}")
        if self.evaluation_fit not in EVALUATION_FITS:
            raise FamevilError(f"preprocess evaluation_fit {self.evaluation_fit!r}: expected one of {', '.join(EVALUATION_FITS)}")
        if self.resampler not in ("pil", "torch"):
            raise FamevilError(f"preprocess resampler {self.resampler!r}: expected pil or torch")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise FamevilError(f"preprocess mean {self.mean} and std {self.std}: give one value per RGB channel")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mean": list(self.mean), "std": list(self.std)}

    def open_clip_dict(self) -> dict[str, Any]:
        """As open_clip's preprocess_cfg (an exported folder's open_clip_config.json)."""
        return {key: value for key, value in self.to_dict().items() if key in OPEN_CLIP_KEYS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known} | _channels(values))

    @classmethod
    def from_open_clip(cls, preprocess_cfg: dict[str, Any], image_size: int | list[int] | tuple[int, ...], where: str) -> Preprocess:
        """open_clip's defaults (PreprocessCfg), overlaid with a tag's or a folder's preprocess_cfg, at the
        tower's image size, as open_clip's create_model settles them."""
        values = {"mean": CLIP_MEAN, "std": CLIP_STD} | {key: preprocess_cfg[key] for key in OPEN_CLIP_KEYS if preprocess_cfg.get(key) is not None}
        return cls(**(values | {"size": square_size(image_size, where)} | _channels(values)))


def _channels(values: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """mean and std as 3-tuples (open_clip also takes one number for all three channels)."""
    as_tuple = lambda value: tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else (float(value),) * 3  # noqa: E731
    return {key: as_tuple(values[key]) for key in ("mean", "std") if key in values}


def square_size(image_size: int | list[int] | tuple[int, ...], where: str) -> int:
    """An image tower's input size as one side; famevil's geometry is square."""
    sides = set(image_size) if isinstance(image_size, (list, tuple)) else {image_size}
    if len(sides) != 1:
        raise FamevilError(f"{where}: its image tower takes {image_size[0]}x{image_size[1]} inputs; famevil's transforms are square")
    return int(sides.pop())


def scratch_preprocess(size: int) -> Preprocess:
    """famevil's own from-scratch architectures (famevil-tiny, famevil-small): CLIP's mean and std and a
    bilinear resize of the image tensor, the transform their demo figures were measured with."""
    return Preprocess(size, CLIP_MEAN, CLIP_STD, interpolation="bilinear", resampler="torch")


def legacy_preprocess(size: int) -> Preprocess:
    """What famevil did before a checkpoint recorded its preprocessing: the scratch preprocessing with
    evaluation's resize on the shortest side. Checkpoints without a record keep it."""
    return replace(scratch_preprocess(size), evaluation_fit="shortest")


def evaluation_side(size: int) -> int:
    """The side evaluation fits an image to before its centre crop of `size`: 256/224 of it, as the
    authors (and CLIP's evaluations) do. Exported with the ONNX encoders, so that one formula decides."""
    return round(size * 256 / 224)


def image_transform(preprocess: Preprocess, train: bool) -> Callable[[Any], torch.Tensor]:
    """Train: random resized crop (scale 0.8-1, ratio 0.75-1.3) and horizontal flip. Eval: squash to a
    square of 256/224 of the input size (or resize its shortest side to it), centre crop. Both with the
    base's interpolation, ending in its normalisation. PIL images are resized by PIL unless the
    preprocessing says torch."""
    size, interpolation = preprocess.size, INTERPOLATIONS[preprocess.interpolation]
    if train:
        geometry = [v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.75, 1.3), interpolation=interpolation, antialias=True), v2.RandomHorizontalFlip()]
    else:
        fitted = evaluation_side(size)
        fit = (fitted, fitted) if preprocess.evaluation_fit == "squash" else fitted
        geometry = [v2.Resize(fit, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
    # v2 transforms run on what they are given: on a PIL image they call PIL, on a tensor torch.
    steps = [*geometry, v2.ToImage()] if preprocess.resampler == "pil" else [v2.ToImage(), *geometry]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocess.mean, preprocess.std)])
