"""`famevil evaluate-search`: a shop's own queries against an index, agreeing with `famevil evaluate`'s
XMR recall on the same gallery; its queries file read in any spelling, bad rows refused in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from data_specs.errors import FamevilError
from data_specs.evaluations import METRICS_FILE
from data_specs.manifest import file_sha256, require_artifact
from data_specs.shards import Shards, fashiongen_subset
from famevil.data.loading import samples
from famevil.search_quality import QUERY_COLUMNS, ShopQuery, ranking, read_queries, summary
from famevil.tasks.product_text import product_text
from famevil.tasks.xmr import TASK as XMR
from stages.evaluate import evaluate
from stages.evaluate_search import RANKINGS_FILE, evaluate_search
from stages.index import index

CATALOGUE_COLUMNS = ["image", "product_id", "title", "description", "category", "subcategory", "split"]


def shop_from_shards(shards: Path, root: Path, splits: tuple[str, ...], view_products: bool) -> list[tuple[str, dict]]:
    """The shards' FashionGen samples of these splits as a shop in root: images/KEY.png, saved losslessly
    so that an index sees the pixels evaluate sees, and catalogue.csv, each view a product of its own
    (view_products, named by its sample key) or of its FashionGen product. Returns each view's key and record."""
    (root / "images").mkdir(parents=True)
    views, rows = [], []
    for split in splits:
        for sample in samples(Shards.open(shards), fashiongen_subset(split)):
            key, record = sample["__key__"], sample["json"]
            sample["jpg"].save(root / "images" / f"{key}.png")
            product = key if view_products else record["product_id"]
            rows.append([f"{key}.png", product, record["title"], record["description"], record["category"], record["subcategory"], split])
            views.append((key, record))
    _write_csv(root / "catalogue.csv", CATALOGUE_COLUMNS, rows)
    return views


@pytest.fixture(scope="module")
def validation_shop(tiny_shards, tmp_path_factory) -> dict[str, Path]:
    """The tiny data's FashionGen validation split as a shop, each view a product; and one text query
    per FashionGen product, its text as XMR's text-to-image direction gives it, its views the relevant ids."""
    root = tmp_path_factory.mktemp("validation-shop")
    keys, texts = {}, {}
    for key, record in shop_from_shards(tiny_shards, root, ("val",), view_products=True):
        keys.setdefault(record["product_id"], []).append(key)
        texts.setdefault(record["product_id"], product_text(record))
    lines = [json.dumps({"query": texts[product], "relevant": views}) + "\n" for product, views in keys.items()]
    (root / "queries.jsonl").write_text("".join(lines), encoding="utf-8")
    return {"root": root, "images": root / "images", "catalogue": root / "catalogue.csv", "queries": root / "queries.jsonl"}


@pytest.fixture(scope="module")
def validation_index(tiny_student, validation_shop, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validation-index") / "index"
    index(tiny_student, validation_shop["images"], out, catalogue=validation_shop["catalogue"], batch_size=16)
    return out


@pytest.fixture(scope="module")
def measured(validation_index, validation_shop, tmp_path_factory):
    return evaluate_search(validation_index, validation_shop["queries"], tmp_path_factory.mktemp("search-eval") / "eval")


def _write_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_text_queries_agree_with_evaluates_full_gallery_text_to_image_recall(measured, tiny_student, tiny_shards, tmp_path):
    expected = evaluate(tmp_path / "eval", tiny_shards, model=tiny_student, tasks=[XMR.name], random100_runs=1).metrics[XMR.name]["full"]
    found = measured.metrics["text"]
    assert found["queries"] == 16 and measured.metrics["all"] == found
    # Equal, not close: the index keeps fp16 image vectors where evaluate keeps fp32, which moves a
    # cosine score by about 1e-3 at most; only two results scoring closer than that could swap (one
    # query one place, 100/16 points here), and on this seeded data none do.
    for k in (1, 5, 10):
        assert found[f"r{k}"] == pytest.approx(expected[f"t2i_r{k}"]), k
    assert 0 < found["mrr"] <= 100 and 0 < found["ndcg10"] <= 100


def test_the_metrics_are_an_artifact_with_each_querys_ranking(measured, validation_index, validation_shop, tiny_student):
    manifest = require_artifact(measured.out, "search-metrics")
    assert [ref.id for ref in manifest.inputs] == [require_artifact(validation_index).content_id, require_artifact(tiny_student).content_id]
    assert manifest.details["queries_sha256"] == file_sha256(validation_shop["queries"]) and manifest.details["count"] == 16
    assert json.loads((measured.out / METRICS_FILE).read_text(encoding="utf-8"))["metrics"] == measured.metrics
    rankings = [json.loads(line) for line in (measured.out / RANKINGS_FILE).read_text(encoding="utf-8").splitlines()]
    assert [ranked["line"] for ranked in rankings] == list(range(1, 17))
    hits = sum(ranked["rank"] <= 5 for ranked in rankings)
    assert hits == round(measured.metrics["text"]["r5"] * 16 / 100) and all(len(ranked["top"]) == 10 for ranked in rankings)


def test_a_ranking_by_hand():
    first, second = (ShopQuery(line, "text", "a query", None, None, frozenset({"A", "B"})) for line in (2, 3))
    top = ranking(first, ["A", "C", "B", "D"], torch.tensor([0.9, 0.5, 0.5, 0.1]))  # A first; B tied with C, counted after it
    late = ranking(second, ["C", "D", "A", "B"], torch.tensor([0.9, 0.8, 0.7, 0.6]))
    assert (top.rank, late.rank, late.reciprocal_rank) == (0, 2, pytest.approx(1 / 3))
    measured = summary([top, late])["all"]
    assert (measured["queries"], measured["r1"], measured["r5"]) == (2, 50.0, 100.0)
    assert measured["mrr"] == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_the_command_reads_any_spelling_and_every_kind_of_query(cli, validation_index, validation_shop, tmp_path):
    images = sorted(validation_shop["images"].iterdir())
    (tmp_path / "pictures").mkdir()
    for picture in images[:2]:
        (tmp_path / "pictures" / picture.name).write_bytes(picture.read_bytes())
    rows = [
        ["olive top in linen", "", "", f"{images[0].stem}|{images[1].stem}"],
        ["", f"pictures/{images[0].name}", "is red", images[2].stem],
        ["", f"pictures/{images[1].name}", "", f" {images[3].stem} | {images[4].stem} "],
    ]
    queries = _write_csv(tmp_path / "queries.csv", ["Query", "IMAGE", "Modify", "Relevant"], rows)
    queries.write_bytes(b"\xef\xbb\xbf" + queries.read_bytes())  # a spreadsheet's byte order mark
    result = cli("evaluate-search", validation_index, "--queries", queries, "--out", tmp_path / "eval", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {search: measured["queries"] for search, measured in metrics.items()} == {"text": 1, "composed": 1, "similar": 1, "all": 3}
    shown = cli("evaluate-search", validation_index, "--queries", queries, "--out", tmp_path / "eval", "--overwrite")
    assert shown.exit_code == 0 and "nDCG@10" in shown.stdout and "composed" in shown.stdout


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        (
            [["a top", "", "", "val-00000000"], ["a shirt", "", "", "val-00000000|val-9"]],
            None,
            "queries.csv: line 3: relevant product 'val-9' is not in the index",
        ),
        ([["", "", "", "val-00000000"]], None, "queries.csv: line 2: empty query"),
        ([["a top", "", "", " | "]], None, "queries.csv: line 2: no relevant product"),
        ([["", "gone.png", "is red", "val-00000000"]], None, "queries.csv: line 2: image gone.png: no such file"),
        ([["a top", "", "is red", "val-00000000"]], None, "queries.csv: line 2: a modify text without an image"),
        ([["a top"]], ("query",), "queries.csv: needs a relevant column"),
    ],
)
def test_a_bad_query_is_one_line_naming_the_file_and_line(cli, validation_index, tmp_path, rows, columns, message):
    queries = _write_csv(tmp_path / "queries.csv", list(columns or QUERY_COLUMNS), rows)
    result = cli("evaluate-search", validation_index, "--queries", queries, "--out", tmp_path / "eval")
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in " ".join(result.stderr.split()) and result.stderr.count("error:") == 1, result.stderr
    assert not (tmp_path / "eval").exists()


def test_read_queries_refuses_a_composed_query_an_index_cannot_answer(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"image": "a.png", "modify": "is red", "relevant": ["A"]}) + "\n", encoding="utf-8")
    with pytest.raises(FamevilError, match=r"queries.jsonl: line 1: a composed query, but the index answers text and similar search only"):
        read_queries(queries, {"A"}, ("text", "similar"))
