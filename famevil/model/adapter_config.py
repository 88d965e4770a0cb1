"""The adapters' settings, declared once: the training options take them by name (--set tsa_bottleneck=128),
a checkpoint's model config and the network nest this one object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from data_specs.errors import FamevilError
from famevil.limits import BOTTLENECK, Range


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    tsa_bottleneck: int = field(default=64, metadata={"range": Range.up_to(1, BOTTLENECK)})  # task-specific adapters (paper: 64; 128 and 512 in its ablations)
    # The cross-attention adapters', a setting of their own (the public code hard-codes 64).
    xaa_bottleneck: int = field(default=64, metadata={"range": Range.up_to(1, BOTTLENECK)})
    adapter_dropout: float = field(default=0.0, metadata={"range": Range(0.0, 0.99)})  # dropout inside every adapter (the authors': 0.0)
    # What the captioner's text layer i reads of image layer i: "block_outputs", the authors'; or
    # "attention_states" (h'), which the synthetic demo needs: on its small from-scratch backbone the
    # authors' wiring let every cross-attention ReLU unit die (docs/captioning.md).
    caption_reads: Literal["block_outputs", "attention_states"] = "block_outputs"
    # How fusion mode joins the towers: they cross-attend, or run apart and add their vectors (the no-XAA ablation).
    fusion: Literal["cross_attention", "late"] = "cross_attention"
    task_adapters: Literal["per_task", "shared"] = "per_task"  # one TSA set per task, or one that all tasks share (an ablation)

    def __post_init__(self) -> None:
        hints = get_type_hints(AdapterConfig)
        for item in fields(self):
            value = getattr(self, item.name)
            if get_origin(hints[item.name]) is Literal and value not in get_args(hints[item.name]):
                raise FamevilError(f"{item.name}={value!r}: expected {' or '.join(get_args(hints[item.name]))}")
            limits = item.metadata.get("range", Range(None, None))
            if not limits.admits(value):
                raise FamevilError(f"{item.name}={value!r}: {limits.refusal(item.name, value)}")

    @property
    def shared_task_adapters(self) -> bool:
        return self.task_adapters == "shared"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ADAPTER_OPTIONS = tuple(item.name for item in fields(AdapterConfig))
ADAPTER_LIMITS = {item.name: item.metadata["range"] for item in fields(AdapterConfig) if "range" in item.metadata}
