"""Approximate search through FAISS: inverted files over an index's vectors, for catalogues too large to
search exactly at the speed wanted (famevil search/serve --approximate)."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from data_specs.errors import FamevilError
from data_specs.indexes import PRODUCT_VECTORS
from famevil.ranking import Among


def faiss_module() -> Any:
    try:
        return importlib.import_module("faiss")  # optional: pip install 'famevil[faiss]'
    except ImportError:
        raise FamevilError("--approximate needs FAISS: pip install faiss-cpu (or famevil[faiss])") from None


def approximate_index(vectors: torch.Tensor, probes: int = 16) -> Any:
    """A FAISS inverted-file index over L2-normalised vectors (inner product): about 4 sqrt(N) cells,
    `probes` of them searched per query."""
    faiss = faiss_module()
    data = vectors.float().contiguous().numpy()
    cells = max(1, min(int(4 * len(data) ** 0.5), len(data) // 39))  # FAISS wants about 39 training points per cell
    quantizer = faiss.IndexFlatIP(data.shape[1])
    inverted = faiss.IndexIVFFlat(quantizer, data.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
    inverted.train(data)
    inverted.add(data)
    inverted.nprobe = min(probes, cells)
    return inverted


class ApproximateRanker:
    """famevil.ranking.Ranker through FAISS. Per-item vectors: `wanted` products' best views lie among the
    best wanted x most_views items, whatever the order, since no product has more views. A filter is an id
    selector, applied while searching; when the probed cells hold too few allowed items, every cell is searched."""

    def __init__(self, index):  # a famevil.catalogue_index.CatalogueIndex
        self.index = index
        self.searched = {name: approximate_index(vectors) for name, vectors in index.vectors.items()}

    def ranked(self, vectors: str, query: torch.Tensor, wanted: int, among: Among) -> list[tuple[int, float]]:
        per_item = vectors != PRODUCT_VECTORS
        allowed = None if among.everything else self.index.allowed(among)
        allowed_ids = None if allowed is None else (allowed[self.index.product_of] if per_item else allowed).nonzero().flatten()
        available = len(self.index.vectors[vectors]) if allowed_ids is None else len(allowed_ids)
        count = min(wanted * (self.index.most_views if per_item else 1), available)
        searched = self.searched[vectors]
        ranked = self._ranked(searched, query, count, allowed_ids, searched.nprobe, per_item)
        if len(ranked) < min(wanted, available) and allowed_ids is not None:
            ranked = self._ranked(searched, query, count, allowed_ids, searched.nlist, per_item)
        return ranked[:wanted]

    def _ranked(self, searched: Any, query: torch.Tensor, count: int, allowed_ids: torch.Tensor | None, probes: int, per_item: bool) -> list[tuple[int, float]]:
        faiss = faiss_module()
        selector = None if allowed_ids is None else faiss.IDSelectorBatch(allowed_ids.numpy().astype("int64"))
        parameters = faiss.SearchParametersIVF(sel=selector, nprobe=probes) if selector is not None else None
        values, indices = searched.search(query[None].numpy(), max(count, 1), params=parameters)
        best: dict[int, float] = {}
        for found, score in zip(indices[0].tolist(), values[0].tolist(), strict=True):
            if found >= 0:  # FAISS pads with -1 when the probed cells hold fewer than `count` items
                best.setdefault(int(self.index.product_of[found]) if per_item else found, score)
        return list(best.items())
