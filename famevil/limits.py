"""The largest sizes famevil takes, each with its reason, in one place: the command-line options read
them for their `max=` and their help, the training options for their ranges, so that a bound and its
reason never disagree.

A size past its bound is refused before any work, in one line. Unbounded, it failed late and badly:
`evaluate --beams 1000` was killed for memory at 23 GB, `--set batch_size=99999999` grew until it was.
Light on purpose (the standard library alone): `famevil --help` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Bound:
    """A size's largest value, and why it is where it is."""

    most: int
    why: str

    @property
    def help(self) -> str:
        """The bound as an option's help states it, after what the option does."""
        return f"At most {self.most:,}: {self.why}."


class Range(NamedTuple):
    """A numeric option's range, None for no bound; `why` says why the upper bound is where it is."""

    low: float | None
    high: float | None
    why: str = ""

    @classmethod
    def up_to(cls, low: float, bound: Bound) -> Range:
        return cls(low, bound.most, bound.why)

    def admits(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def refusal(self, name: str, value: float) -> str:
        """'NAME must be from LOW to HIGH': what a value out of range is told, and why HIGH when it is past it."""
        low, high = self.low, self.high
        bounds = f"from {low} to {high}" if low is not None and high is not None else f"at least {low}" if low is not None else f"at most {high}"
        too_large = high is not None and value > high and self.why
        return f"{name} must be {bounds}" + (f" ({self.why})" if too_large else "")


BEAMS = Bound(16, "each beam is a whole decoding state per image, and captions stop improving after a few beams")
NGRAM = Bound(16, "a repeated phrase longer than this is already rare, and each step checks every earlier n-gram")
BATCH = Bound(4096, "a larger batch's activations outgrow one accelerator's memory, and run no faster")
POINTS_BATCH = Bound(1024, "a Qdrant server refuses requests past 32 MB by default, and 1,024 points of two 512-wide vectors are about 10 MB")
TRAINING_BATCH = Bound(
    1024,
    "per process; past it the activations and gradients outgrow one accelerator's memory at ViT-B/16, "
    "and a larger global batch comes from gradient_accumulation and more processes",
)
GRADIENT_ACCUMULATION = Bound(1024, "the global batch is batch_size x processes x this; past it one update takes hours and no published recipe goes")
KEEP_CHECKPOINTS = Bound(100, "each is a full copy of the weights and the optimiser's state, about 1.8 GB at ViT-B/16")
LOADER_WORKERS = Bound(64, "each is a process with its own shard streams; more than the cores add memory, not speed")
WORKERS = Bound(256, "each is a process with its own memory; more than the cores add memory, not speed")
BOTTLENECK = Bound(2048, "an adapter is narrower than the tower it adapts, and the widest open_clip tower (ViT-bigG) is 1,664 wide")
CLASSES = Bound(100_000, "the head's parameters grow with the classes; FashionGen has 121")
TOP = Bound(1000, "a longer list is not read, and a page of results holds a thumbnail for each")
TOP_K = Bound(1000, "FIC's teacher outputs store this many log-probabilities per caption token, so they grow with it")
SHARD = Bound(100_000, "a shard is what one worker writes and an interrupted run redoes, and training hands out whole shards to its workers")
THUMBNAIL = Bound(512, "the index keeps a thumbnail of every image, and a results page shows them at 160 pixels")
SYNTH_IMAGE = Bound(512, "every image is rendered on the CPU, and the releases' are 256")
SEED = Bound(2**32 - 1, "what torch and numpy take")
