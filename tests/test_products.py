"""An index built from a catalogue: products (views collapsed to the best), filters, similar items,
product vectors, paging, indexes that work from any folder, and indexes of models without composed retrieval."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import famevil
from data_specs.errors import FamevilError
from data_specs.manifest import require_artifact
from famevil.serving import SearchSession
from famevil.tasks.product_text import product_text
from stages.index import index
from tests.test_equivalence import FOLDER_CONFIG, random_weights

# Four products of three views each: (product_id, title, category, subcategory).
PRODUCTS = [
    ("P0", "Navy Wool Cardigan", "SWEATERS", "CARDIGANS"),
    ("P1", "Red Mini Dress", "DRESSES", "MINI"),
    ("P2", "Black Maxi Dress", "DRESSES", "MAXI"),
    ("P3", "White Cotton Shirt", "TOPS", "SHIRTS"),
]


@pytest.fixture(scope="module")
def shop(tiny_raw, tmp_path_factory) -> Path:
    """A shop folder: images/ (twelve photos) and products.csv (four products of three views, a price
    column, a row without an image and a row whose image is missing)."""
    root = tmp_path_factory.mktemp("shop")
    (root / "images").mkdir()
    pictures = sorted((tiny_raw / "fashioniq" / "images").iterdir())[:12]
    rows = []
    for number, picture in enumerate(pictures):
        shutil.copy(picture, root / "images" / picture.name)
        product, title, category, subcategory = PRODUCTS[number // 3]
        rows.append([picture.name, product, title, f"{title.lower()}, view {number % 3}", category, subcategory, str(10 + number)])
    rows += [["", "P9", "No Photo", "a row without an image", "TOPS", "SHIRTS", "1"], ["gone.png", "P8", "Gone", "its file is missing", "TOPS", "SHIRTS", "1"]]
    with open(root / "products.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "product_id", "title", "description", "category", "subcategory", "price"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def shop_index(tiny_student, shop, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shop-index") / "index"
    index(tiny_student, shop / "images", out, catalogue=shop / "products.csv", batch_size=8)
    return out


@pytest.fixture(scope="module")
def session(shop_index) -> SearchSession:
    return SearchSession(shop_index)


def test_an_index_from_a_catalogue_records_each_view_with_its_product_and_lists_skipped_rows(shop, shop_index):
    items = [json.loads(line) for line in (shop_index / "items.jsonl").read_text().splitlines()]
    assert len(items) == 12 and [item["product_id"] for item in items] == [p[0] for p in PRODUCTS for _ in range(3)]
    first = items[0]
    assert (first["title"], first["category"], first["subcategory"], first["payload"]) == ("Navy Wool Cardigan", "SWEATERS", "CARDIGANS", {"price": "10"})
    assert first["description"] == "navy wool cardigan, view 0" and not Path(first["path"]).is_absolute()
    skipped = [json.loads(line) for line in (shop_index / "skipped.jsonl").read_text().splitlines()]
    catalogue = str(shop / "products.csv")
    assert skipped == [
        {"file": catalogue, "row": 14, "path": "", "reason": "no image"},
        {"file": catalogue, "row": 15, "path": "gone.png", "reason": "missing"},
    ]
    details = require_artifact(shop_index, "index").details
    assert (details["items"], details["products"], details["skipped"], details["text_weight"]) == (12, 4, 2, 0.0)
    assert details["catalogue"] == catalogue and details["searches"] == ["text", "similar", "composed"]


def test_search_finds_products_as_their_best_view(session, shop, tiny_student):
    model = famevil.load(tiny_student)
    paths = sorted((shop / "images").iterdir())
    scores = model.encode_images(paths) @ model.encode_texts(["navy wool cardigan"])[0]
    best = scores.view(4, 3).max(dim=1)  # the catalogue lists each product's three views together
    result = session.search(text="navy wool cardigan", top=4)
    assert [h.product_id for h in result.hits] == [PRODUCTS[p][0] for p in best.values.argsort(descending=True).tolist()]
    for hit in result.hits:
        product = int(hit.product_id[1])
        assert hit.item == 3 * product + int(best.indices[product]) and hit.path == str(paths[hit.item]) and hit.views == 3
        assert hit.score == pytest.approx(float(best.values[product]), abs=2e-3) and hit.title == PRODUCTS[product][1]
    assert not result.more and session.search(text="navy wool cardigan", top=3).more
    assert [h.rank for h in session.search(text="navy wool cardigan", top=2, offset=2).hits] == [3, 4]


def test_filters_apply_before_ranking_and_name_the_closest_category(session):
    assert session.categories() == {"DRESSES": ["MAXI", "MINI"], "SWEATERS": ["CARDIGANS"], "TOPS": ["SHIRTS"]}
    dresses = session.search(text="white cotton shirt", top=10, category="dresses")  # any case
    assert sorted(h.product_id for h in dresses.hits) == ["P1", "P2"] and not dresses.more
    assert [h.product_id for h in session.search(text="dress", subcategory="MINI").hits] == ["P1"]
    with pytest.raises(FamevilError, match="--category 'DRESES': not among the categories of .*; did you mean DRESSES\\?"):
        session.search(text="dress", category="DRESES")
    with pytest.raises(FamevilError, match="--subcategory 'SHIRTS': not among the subcategories of DRESSES; choose one of MAXI, MINI"):
        session.search(text="dress", category="DRESSES", subcategory="SHIRTS")


def test_approximate_search_with_filters_finds_what_exact_search_finds(shop_index, session):
    approximate = SearchSession(shop_index, backend="approximate")
    for filters in ({}, {"category": "DRESSES"}, {"subcategory": "SHIRTS"}):
        exact = session.search(text="black coat", top=3, **filters).hits
        assert [(h.product_id, h.item) for h in approximate.search(text="black coat", top=3, **filters).hits] == [(h.product_id, h.item) for h in exact]


def test_similar_items_are_other_products_nearest_the_image(session, shop, tiny_student):
    model = famevil.load(tiny_student)
    paths = sorted((shop / "images").iterdir())
    by_path = session.search(image=paths[4], top=10)  # a view of P1
    assert by_path.kind == "similar" and [h.product_id for h in by_path.hits] != [] and "P1" not in [h.product_id for h in by_path.hits]
    scores = (model.encode_images(paths) @ model.encode_images([paths[4]])[0]).view(4, 3).max(dim=1).values
    scores[1] = -1
    assert [h.product_id for h in by_path.hits] == [PRODUCTS[p][0] for p in scores.argsort(descending=True)[:3].tolist()]
    by_item = session.search(item=4, top=10)
    assert [h.product_id for h in by_item.hits] == [h.product_id for h in by_path.hits]
    assert [h.product_id for h in session.search(item=4, category="DRESSES").hits] == ["P2"]
    with pytest.raises(FamevilError, match="give a text query or --image, not both"):
        session.search(text="red", image=paths[4])


def test_product_vectors_weight_the_views_images_with_the_products_text(tiny_student, shop, shop_index, tmp_path):
    index(tiny_student, shop / "images", tmp_path / "weighted", catalogue=shop / "products.csv", text_weight=0.3, batch_size=8)
    assert require_artifact(tmp_path / "weighted", "index").details["text_weight"] == 0.3
    stored = load_file(tmp_path / "weighted" / "vectors.safetensors")
    model = famevil.load(tiny_student)
    items = [json.loads(line) for line in (shop_index / "items.jsonl").read_text().splitlines()]
    texts = model.encode_texts([product_text(items[3 * p]) for p in range(4)])
    means = stored["image"].float().view(4, 3, -1).mean(dim=1)
    assert torch.allclose(stored["product"].float(), torch.nn.functional.normalize(0.7 * means + 0.3 * texts, dim=-1), atol=3e-3)
    hits = SearchSession(tmp_path / "weighted").search(text="red mini dress", top=4).hits
    expected = stored["product"].float() @ model.encode_texts(["red mini dress"])[0]
    assert [h.product_id for h in hits] == [PRODUCTS[p][0] for p in expected.argsort(descending=True).tolist()]
    with pytest.raises(FamevilError, match="--text-weight needs --catalogue"):
        index(tiny_student, shop / "images", tmp_path / "unweighted", text_weight=0.3)


def test_an_index_works_from_any_folder(tiny_student, shop, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(shop, work / "shop")
    shutil.copytree(tiny_student, work / "student")
    monkeypatch.chdir(work)
    index(Path("student"), Path("shop/images"), Path("index"), catalogue=Path("shop/products.csv"))
    assert require_artifact(work / "index", "index").inputs[0].path == str(work / "student")
    monkeypatch.chdir(tmp_path)
    session = SearchSession(work / "index")
    hit = session.search(text="red mini dress", top=1).hits[0]
    assert Path(hit.path) == work / "shop" / "images" / session.index.items[hit.item]["path"] and Path(hit.path).is_file()
    assert session.index.original(hit.item) == Path(hit.path).read_bytes()


@pytest.fixture
def plain_base(tmp_path) -> str:
    """A random-weight open_clip folder, as `famevil export --format open_clip` writes one (no download), as --base names it."""
    folder = tmp_path / "open-clip-base"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(FOLDER_CONFIG))
    torch.save(random_weights(FOLDER_CONFIG["model_cfg"], 5), folder / "open_clip_pytorch_model.bin")
    return f"local-dir:{folder}"


@pytest.mark.parametrize("built_with", ["an XMR teacher", "a plain base"])
def test_an_index_of_a_cross_modal_retrieval_model_answers_text_and_similar_search(tiny_dumps, plain_base, shop, tmp_path, built_with):
    teacher = tiny_dumps["xmr"][0] if built_with == "an XMR teacher" else plain_base
    index(teacher, shop / "images", tmp_path / "xmr-index", catalogue=shop / "products.csv")
    assert require_artifact(tmp_path / "xmr-index", "index").details["searches"] == ["text", "similar"]
    assert set(load_file(tmp_path / "xmr-index" / "vectors.safetensors")) == {
        "image",
        "thumbnail_bytes",
        "thumbnail_offsets",
        "item_product",
        "item_sha256",
        "product_group",
    }
    session = SearchSession(tmp_path / "xmr-index")
    assert session.searches == ("text", "similar") and len(session.search(text="red dress", top=2).hits) == 2
    assert session.search(item=0, top=2).kind == "similar"
    with pytest.raises(FamevilError, match="composed search needs a model with composed retrieval; .* lacks it \\(its tasks: "):
        session.search(item=0, modify="is red")


def test_search_command_pages_filters_and_refuses_text_beside_an_image(cli, shop, shop_index, tmp_path):
    reference = shop / "images" / sorted(p.name for p in (shop / "images").iterdir())[0]
    result = cli("search", shop_index, "dress", "--top", 1, "--offset", 1, "--category", "DRESSES", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["offset"] == 1 and not found["more"] and [h["rank"] for h in found["hits"]] == [2] and found["hits"][0]["product_id"] in {"P1", "P2"}
    result = cli("search", shop_index, "red", "--image", reference)
    assert result.exit_code == 1 and result.stderr.startswith("error: 'red': give a text query or --image, not both") and "Traceback" not in result.output
    result = cli("search", shop_index, "red", "--category", "DRES")
    assert result.exit_code == 1 and "did you mean DRESSES?" in result.stderr
    result = cli("search", shop_index, "--image", reference, "--html", tmp_path / "similar.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "similar.html").read_text()
    assert 'alt="the reference image"' in page and "Red Mini Dress" in page and "<small>P1</small>" in page and "<small>P0</small>" not in page
