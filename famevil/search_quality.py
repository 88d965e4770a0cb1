"""A shop's own search queries, and how well a catalogue index answers them (famevil evaluate-search).

A queries file is CSV (a header row) or JSON Lines (one object per line), told apart by its suffix and
read as a catalogue is (famevil.data.catalogue.read_table: column names in any case, a spreadsheet's
byte order mark dropped). Each row is one query:

    query            a text query (text search); or
    image, modify    a reference image and how the wanted product differs from it (composed search); or
    image            alone: products like it (similar-items search)
    relevant         the ids of the products that answer it, separated by "|" (in JSON Lines, a list too)

`image` is a path relative to the queries file's folder. A row that cannot be used (no query, no
relevant product, a product id the index does not know, a missing image) is refused in one line
naming the file and its line: a measurement over a silently shortened query set would mislead.

Each query's results are all the index's products in rank order (no filter), a relevant product
counting where it first appears; ties count against the model, as in famevil.metrics.retrieval.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from data_specs.errors import FamevilError, did_you_mean
from data_specs.indexes import COMPOSED_SEARCH, SIMILAR_SEARCH, TEXT_SEARCH
from famevil.data.catalogue import Record, read_table
from famevil.metrics.retrieval import NDCG_AT, RECALL_KS, first_relevant_rank, ndcg, recall, reciprocal_rank, relevance_in_rank_order
from famevil.serving import SearchSession

QUERY_COLUMNS = ("query", "image", "modify", "relevant")
ID_SEPARATOR = "|"
ALL_QUERIES = "all"  # the summary over every query, beside one per kind of search


@dataclass(frozen=True)
class ShopQuery:
    line: int  # in the queries file (a CSV's header is line 1)
    search: str  # the kind of search that answers it: text, composed or similar
    text: str | None
    image: Path | None
    modify: str | None
    relevant: frozenset[str]  # product ids

    @property
    def shown(self) -> str:
        """The query as its ranking records it."""
        if self.image is None:
            return self.text or ""
        return f"{self.image} + {self.modify!r}" if self.modify else str(self.image)


def read_queries(path: Path, products: Collection[str], searches: Collection[str]) -> list[ShopQuery]:
    """Every row of a queries file as a query, each checked against the index: its relevant ids among
    `products`, its kind of search among the `searches` the index answers."""
    records, skipped, columns = read_table(path, "queries")
    if skipped:
        first = skipped[0]
        raise FamevilError(f"{path}: line {first.line}: {first.reason} ({first.detail}); one JSON object per line")
    if "relevant" not in columns or not columns & {"query", "image"}:
        found = ", ".join(sorted(columns)) or "none"
        raise FamevilError(f"{path}: needs a relevant column and a query or image column (found: {found}); columns: {', '.join(QUERY_COLUMNS)}")
    if not records:
        raise FamevilError(f"{path}: no queries; one row per query, with the ids of its relevant products")
    return [_query(path, line, record, products, searches) for line, record in records]


def _query(path: Path, line: int, record: Record, products: Collection[str], searches: Collection[str]) -> ShopQuery:
    where = f"{path}: line {line}"
    text, image, modify = (_text(record, column, where) for column in ("query", "image", "modify"))
    if text and image:
        raise FamevilError(f"{where}: both a query and an image; a row is a text query, or an image (with a modify text for composed search)")
    if modify and not image:
        raise FamevilError(f"{where}: a modify text without an image; composed search changes a reference image: give its path in the image column")
    if not (text or image):
        raise FamevilError(f"{where}: empty query; give a query text, or an image (and a modify text)")
    search = TEXT_SEARCH if text else COMPOSED_SEARCH if modify else SIMILAR_SEARCH
    if search not in searches:
        raise FamevilError(f"{where}: a {search} query, but the index answers {' and '.join(searches)} search only (its model decides)")
    relevant = _relevant(record, where)
    for product in sorted(relevant):
        if product not in products:
            raise FamevilError(f"{where}: relevant product {product!r} is not in the index{did_you_mean(product, products)}; use the catalogue's product_id")
    picture = path.parent / image if image else None
    if picture is not None and not picture.is_file():
        raise FamevilError(f"{where}: image {image}: no such file (paths are relative to the queries file's folder, {path.parent})")
    return ShopQuery(line, search, text or None, picture, modify or None, frozenset(relevant))


def _text(record: Record, column: str, where: str) -> str:
    value = record.get(column)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FamevilError(f"{where}: {column} is not text; give a string")
    return str(value).strip()


def _relevant(record: Record, where: str) -> set[str]:
    value = record.get("relevant")
    parts = value if isinstance(value, list) else _text(record, "relevant", where).split(ID_SEPARATOR)
    ids = {str(part).strip() for part in parts if isinstance(part, (str, int)) and str(part).strip()}
    if not ids:
        raise FamevilError(f"{where}: no relevant product; list the ids of the products that answer the query, separated by {ID_SEPARATOR!r}")
    return ids


@dataclass(frozen=True)
class Ranking:
    """How one query's results rank its relevant products."""

    query: ShopQuery
    rank: int  # 0-based position of the first relevant product
    reciprocal_rank: float
    ndcg: float
    top: list[str]  # the first NDCG_AT product ids, as the search returned them

    def record(self) -> dict:
        """Its line in rankings.jsonl."""
        query = self.query
        return {"line": query.line, "search": query.search, "query": query.shown, "relevant": sorted(query.relevant), "rank": self.rank + 1, "top": self.top}


def search_ranking(session: SearchSession, query: ShopQuery) -> Ranking:
    """The query searched over every product of the session's index, no filter."""
    result = session.search(text=query.text, image=query.image, modify=query.modify, top=len(session.index.products))
    return ranking(query, [hit.product_id for hit in result.hits], torch.tensor([hit.score for hit in result.hits]))


def ranking(query: ShopQuery, products: list[str], scores: torch.Tensor) -> Ranking:
    """A query's ranking from its results: every product's id and score, best first."""
    in_order = relevance_in_rank_order(scores, torch.tensor([product in query.relevant for product in products]))
    return Ranking(query, first_relevant_rank(in_order), reciprocal_rank(in_order), ndcg(in_order), products[:NDCG_AT])


def summary(rankings: list[Ranking]) -> dict[str, dict[str, float]]:
    """Per kind of search (in the order the queries first ask for it) and over all queries: their count,
    R@1/5/10 (percent of queries with a relevant product in the top k), MRR and nDCG@10 (x100)."""
    kinds = dict.fromkeys(ranked.query.search for ranked in rankings)
    groups = {kind: [ranked for ranked in rankings if ranked.query.search == kind] for kind in kinds} | {ALL_QUERIES: rankings}
    return {kind: _scores(group) for kind, group in groups.items()}


def _scores(rankings: list[Ranking]) -> dict[str, float]:
    ranks = torch.tensor([ranked.rank for ranked in rankings])
    measured = {"queries": len(rankings)} | {f"r{k}": value for k, value in recall(ranks, RECALL_KS).items()}
    return measured | {
        "mrr": 100 * sum(ranked.reciprocal_rank for ranked in rankings) / len(rankings),
        f"ndcg{NDCG_AT}": 100 * sum(ranked.ndcg for ranked in rankings) / len(rankings),
    }
