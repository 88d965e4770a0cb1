"""Does `famevil evaluate-search` measure what `famevil evaluate` does, at the demo's scale?

The shards' FashionGen validation split becomes a shop as tests/test_evaluate_search.py builds one
(each view a product of its own, saved losslessly), with one text query per FashionGen product (its
"title. description", its views the relevant ids): XMR's full-gallery text-to-image protocol. The
model indexes it, evaluate-search measures it, and its R@1/5/10 print beside those of an evaluation of
the same model on the same shards (famevil evaluate), with the seconds each step took.

    python benchmarks/search_agreement.py --model runs/demo/seed-0/student --shards runs/demo/shards \\
        --evaluation runs/demo/seed-0/eval/student --work /tmp/search-agreement
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests, for the shop they build

from data_specs.evaluations import read_metrics
from famevil.tasks.product_text import product_text
from famevil.tasks.xmr import TASK as XMR
from stages.evaluate_search import evaluate_search
from stages.index import index
from tests.test_evaluate_search import shop_from_shards


def text_queries(views: list[tuple[str, dict]], path: Path) -> Path:
    """One query per FashionGen product: its text, and its views' keys as the relevant ids."""
    keys, texts = {}, {}
    for key, record in views:
        keys.setdefault(record["product_id"], []).append(key)
        texts.setdefault(record["product_id"], product_text(record))
    path.write_text("".join(json.dumps({"query": texts[product], "relevant": keys[product]}) + "\n" for product in keys), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint with cross-modal retrieval")
    parser.add_argument("--shards", type=Path, required=True, help="the shards the evaluation ran on")
    parser.add_argument("--evaluation", type=Path, required=True, help="famevil evaluate's output for that model on those shards")
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the shop, its index and the search metrics")
    arguments = parser.parse_args()
    started = time.perf_counter()
    views = shop_from_shards(arguments.shards, arguments.work / "shop", ("val",), view_products=True)
    queries = text_queries(views, arguments.work / "shop" / "queries.jsonl")
    written = time.perf_counter()
    index(arguments.model, arguments.work / "shop" / "images", arguments.work / "index", catalogue=arguments.work / "shop" / "catalogue.csv")
    indexed = time.perf_counter()
    found = evaluate_search(arguments.work / "index", queries, arguments.work / "eval").metrics["text"]
    measured = time.perf_counter()
    expected = read_metrics(arguments.evaluation)[XMR.name]["full"]
    print(
        f"{len(views)} views, {found['queries']} text queries; shop {written - started:.0f} s, index {indexed - written:.0f} s, evaluate-search {measured - indexed:.0f} s"
    )
    print("| metric | famevil evaluate (xmr.full.t2i) | famevil evaluate-search (text) |\n|---|---:|---:|")
    for k in (1, 5, 10):
        print(f"| R@{k} | {expected[f't2i_r{k}']:.2f} | {found[f'r{k}']:.2f} |")
    print(f"| MRR | | {found['mrr']:.2f} |\n| nDCG@10 | | {found['ndcg10']:.2f} |")


if __name__ == "__main__":
    main()
