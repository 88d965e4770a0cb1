"""Approximate search through FAISS, for catalogues too large to search exactly at the speed wanted
(famevil index --approximate builds it once; famevil search/serve --approximate use it).

An index's vectors get an inverted file: about 4 sqrt(N) cells by k-means, PROBES of them searched per
query, each cell holding its vectors as 6-bit scalar codes of their residuals (96 bytes for a 128-d
vector, against 256 in fp16), read memory-mapped. RERANK times the candidates wanted come back from FAISS
and are ranked again by their exact (fp16, memory-mapped) vectors, so scores are exact and near copies of
one photo keep their order. docs/benchmarks.md ("A million items") has the measurements that chose this
over 8-bit, 4-bit and product-quantised codes (and why not HNSW): the most recall within 300 bytes an item
for an index's two vector kinds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_specs.indexes import APPROXIMATE_FILE, PRODUCT_VECTORS
from famevil.optional import optional_module
from famevil.ranking import Among

PROBES = 32  # inverted-file cells searched per query
RERANK = 2  # FAISS returns RERANK x the candidates wanted, ranked again by their exact vectors
TRAINING_PER_CELL = 40  # k-means points per cell (FAISS warns below 39), an evenly spaced sample of the vectors


def faiss_module() -> Any:
    return optional_module("faiss", "--approximate", "FAISS", "pip install faiss-cpu (or famevil[faiss])")


def factory_spec(count: int) -> str:
    """The FAISS index_factory string for `count` vectors (see the module's docstring)."""
    cells = max(1, min(int(4 * count**0.5), count // 39))  # FAISS wants about 39 training points per cell
    return f"IVF{cells},SQ6"


def build(vectors: torch.Tensor, spec: str | None = None) -> Any:
    """A trained and filled FAISS index over L2-normalised vectors (inner product); spec: an index_factory
    string of an inverted file, factory_spec's by default. Deterministic: k-means trains on evenly spaced vectors with FAISS's fixed seed."""
    faiss = faiss_module()
    data = vectors.float().contiguous().numpy()
    built = faiss.index_factory(data.shape[1], spec or factory_spec(len(data)), faiss.METRIC_INNER_PRODUCT)
    cells = faiss.extract_index_ivf(built).nlist  # the ranker searches inverted files only
    sample = np.linspace(0, len(data) - 1, min(len(data), TRAINING_PER_CELL * cells)).astype(np.int64)
    built.train(data[np.unique(sample)])
    for start in range(0, len(data), 65_536):  # in blocks: a million vectors convert to float32 a block at a time
        built.add(data[start : start + 65_536])
    return built


def write(folder: Path, name: str, built: Any) -> None:
    faiss_module().write_index(built, str(folder / APPROXIMATE_FILE.format(name)))


def read(folder: Path, name: str) -> Any | None:
    """The FAISS index `famevil index --approximate` wrote for the `name` vectors, memory-mapped; None if there is none."""
    path = folder / APPROXIMATE_FILE.format(name)
    if not path.is_file():
        return None
    faiss = faiss_module()
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)


class ApproximateRanker:
    """famevil.ranking.Ranker through FAISS: the index's own approximate files, else built here (in memory).
    Per-item vectors: `wanted` products' best views lie among the best wanted x most_views items, whatever
    the order, since no product has more views. A filter is an id selector, applied while searching; when
    the probed cells hold too few allowed items, every cell is searched."""

    def __init__(self, index):  # a famevil.catalogue_index.CatalogueIndex
        self.index = index
        self.searched = {name: read(index.root, name) or build(vectors) for name, vectors in index.vectors.items()}
        self.probes = PROBES  # attributes, so a benchmark can sweep them on one opened index
        self.rerank = RERANK

    def ranked(self, vectors: str, query: torch.Tensor, wanted: int, among: Among) -> list[tuple[int, float]]:
        per_item = vectors != PRODUCT_VECTORS
        allowed_ids = None if among.everything else self.index.allowed_ids(among, per_item)
        available = len(self.index.vectors[vectors]) if allowed_ids is None else len(allowed_ids)
        count = min(wanted * (self.index.most_views if per_item else 1), available)
        inverted = faiss_module().extract_index_ivf(self.searched[vectors])
        ranked = self._ranked(vectors, query, count, allowed_ids, min(self.probes, inverted.nlist), per_item)
        if len(ranked) < min(wanted, available) and allowed_ids is not None:
            ranked = self._ranked(vectors, query, count, allowed_ids, inverted.nlist, per_item)
        return ranked[:wanted]

    def _ranked(self, vectors: str, query: torch.Tensor, count: int, allowed_ids: np.ndarray | None, probes: int, per_item: bool) -> list[tuple[int, float]]:
        faiss = faiss_module()
        selector = None if allowed_ids is None else faiss.IDSelectorBatch(allowed_ids)
        parameters = faiss.SearchParametersIVF(sel=selector, nprobe=probes)
        _, found = self.searched[vectors].search(query[None].numpy(), max(self.rerank * count, 1), params=parameters)
        candidates = found[0][found[0] >= 0]  # FAISS pads with -1 when the probed cells hold fewer
        items = torch.from_numpy(candidates)
        exact = self.index.vectors[vectors][items].float() @ query
        scores, order = exact.sort(descending=True, stable=True)
        keys = self.index.product_of[items[order]] if per_item else items[order]
        best: dict[int, float] = {}
        for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
            best.setdefault(key, score)
        return list(best.items())
