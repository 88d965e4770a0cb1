"""A task's endless stream of training batches that knows where it is, so a run can save its place
and a resumed run can pick the stream up at the same batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import webdataset as wds

from data_specs.errors import FamevilError


class TaskStream:
    """Batches from `epoch_batches(epoch)`, epoch after epoch. Resuming rebuilds the saved epoch (the
    same seed gives the same batches) and skips the batches already consumed."""

    def __init__(self, epoch_batches: Callable[[int], Iterable[dict[str, Any]]], workers: int = 0):
        self._epoch_batches = epoch_batches
        self._workers = workers
        self.epoch = 0
        self.consumed = 0  # batches taken from the current epoch
        self._iterator: Iterator[dict[str, Any]] | None = None

    def _open(self) -> Iterator[dict[str, Any]]:
        batches = self._epoch_batches(self.epoch)
        if self._workers:
            # Batches arrive from the workers in a fixed round-robin order, so skipping stays exact; the
            # loader's own generator keeps it from drawing its worker seeds from torch's global one.
            generator = torch.Generator().manual_seed(self.epoch)
            batches = wds.WebLoader(batches, batch_size=None, num_workers=self._workers, generator=generator)
        return itertools.islice(iter(batches), self.consumed, None)

    def __next__(self) -> dict[str, Any]:
        try:
            batch = self._next_batch()
        except FamevilError as error:
            raise FamevilError(_one_line(error)) from None
        self.consumed += 1
        return batch

    def _next_batch(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = self._open()
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._iterator = self._open()
            return next(self._iterator)

    def __iter__(self) -> TaskStream:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = state["epoch"], state["consumed"]
        self._iterator = None


def _one_line(error: FamevilError) -> str:
    """A FamevilError's message, also when a data-loader worker raised it (a shard that fails its check):
    torch raises it again in this process with the worker's traceback, whose last line is the message."""
    last = str(error).rstrip().splitlines()[-1]
    return last.removeprefix(f"{FamevilError.__module__}.{FamevilError.__qualname__}: ")
