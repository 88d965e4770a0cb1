"""How a catalogue index ranks its products for one query vector: which products a search may find
(Among), what every way of ranking answers (Ranker), and the exact way: an inner product against every
item on the CPU. famevil.approximate ranks through FAISS, famevil.qdrant_backend in a Qdrant collection."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch

from data_specs.indexes import PRODUCT_VECTORS


@dataclass(frozen=True)
class Among:
    """The products a search may find: those of a category and a subcategory (None: any), less one."""

    category: str | None = None
    subcategory: str | None = None
    excluded: int | None = None  # a product's number: similar items leave out the reference's own product

    @property
    def everything(self) -> bool:
        return self.category is None and self.subcategory is None and self.excluded is None


EVERYTHING = Among()


class Ranker(Protocol):
    def ranked(self, vectors: str, query: torch.Tensor, wanted: int, among: Among) -> list[tuple[int, float]]:
        """The `wanted` best (product number, cosine) pairs among the products `among` lets through, best
        first, for one L2-normalised query (D,) against the index's `vectors` (of data_specs.indexes)."""
        ...


class ExactRanker:
    """Every item scored: a product scores as its best view (or as its product vector, where the index
    has them). Exact, and fast enough on the CPU to about a hundred thousand items."""

    def __init__(self, index):  # a famevil.catalogue_index.CatalogueIndex
        self.index = index

    @cached_property
    def vectors(self) -> dict[str, torch.Tensor]:
        """The index's vectors in float32, made at the first search (a ranker put in this one's place never makes them)."""
        return {name: vectors.float() for name, vectors in self.index.vectors.items()}

    @cached_property
    def product_of(self) -> torch.Tensor:
        """Each item's product number as int64, which scatter_reduce wants (the index keeps int32, memory-mapped)."""
        return self.index.product_of.long()

    def ranked(self, vectors: str, query: torch.Tensor, wanted: int, among: Among) -> list[tuple[int, float]]:
        scores = self.vectors[vectors] @ query
        if vectors != PRODUCT_VECTORS:
            scores = torch.full((self.index.product_count,), -torch.inf).scatter_reduce(0, self.product_of, scores, "amax")
        if not among.everything:
            scores = scores.masked_fill(~self.index.allowed(among), -torch.inf)
        values, products = scores.topk(min(wanted, int(torch.isfinite(scores).sum())))
        return list(zip(products.tolist(), values.tolist(), strict=True))
