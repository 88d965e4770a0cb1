"""famevil export-index and --backend qdrant: an index's points in a Qdrant collection (qdrant-client's
embedded local mode, no server), ranked there as exact search ranks them, resumed, and refused when they
are another index's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_specs.errors import FamevilError
from famevil.qdrant_backend import POINTS_KEY, QdrantTarget, parse_target
from famevil.serving import SearchSession
from stages.export_index import export_index
from stages.index import index
from tests.test_products import shop, shop_index  # noqa: F401 (fixtures)

pytest.importorskip("qdrant_client")

# (search arguments): text (image or product vectors), similar items (their own product left out), composed, filtered.
QUERIES = [
    {"text": "black coat"},
    {"text": "red dress", "category": "DRESSES"},
    {"text": "a shirt", "subcategory": "MINI"},
    {"item": 0},
    {"item": 4, "category": "DRESSES"},
    {"item": 3, "modify": "is red with short sleeves"},
    {"item": 7, "modify": "is darker", "category": "TOPS"},
]


@pytest.fixture(scope="module")
def weighted_index(tiny_student, shop, tmp_path_factory) -> Path:  # noqa: F811
    """The shop's index with product vectors (--text-weight): text search ranks those."""
    out = tmp_path_factory.mktemp("weighted-index") / "index"
    index(tiny_student, shop / "images", out, catalogue=shop / "products.csv", text_weight=0.5, batch_size=8)
    return out


def local(folder: Path, collection: str = "shop") -> str:
    return f"qdrant+local:{folder}/{collection}"


def assert_same_hits(exact: SearchSession, qdrant: SearchSession) -> None:
    for query in QUERIES:
        wanted, got = exact.search(top=10, **query).hits, qdrant.search(top=10, **query).hits
        assert [(h.product_id, h.item) for h in got] == [(h.product_id, h.item) for h in wanted], query
        assert all(abs(a.score - b.score) < 1e-3 for a, b in zip(got, wanted, strict=True)), query


@pytest.mark.parametrize("which", ["image vectors", "product vectors"])
def test_qdrant_ranks_as_exact_search_does(shop_index, weighted_index, tmp_path, which):  # noqa: F811
    built = shop_index if which == "image vectors" else weighted_index
    result = export_index(built, local(tmp_path), batch_size=5)
    assert (result.items, result.products, result.resumed) == (12, 0 if which == "image vectors" else 4, 0)
    assert_same_hits(SearchSession(built), SearchSession(built, backend=local(tmp_path)))


def test_an_interrupted_export_resumes_after_its_last_complete_batch(shop_index, tmp_path, monkeypatch):  # noqa: F811
    opened, written, interrupt = QdrantTarget.client, [], [True]

    def interrupted_after_the_third_batch(target):
        client = opened(target)
        upsert, update = client.upsert, client.update_collection

        def recorded(collection, points, **options):
            written.append(points.ids)
            return upsert(collection, points, **options)

        def marked(collection, **options):
            if len(written) == 3 and interrupt.pop():  # the third batch is in, its marker not yet
                raise KeyboardInterrupt
            return update(collection, **options)

        client.upsert, client.update_collection = recorded, marked
        return client

    monkeypatch.setattr(QdrantTarget, "client", interrupted_after_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        export_index(shop_index, local(tmp_path), batch_size=4)
    assert written == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    written.clear()
    resumed = export_index(shop_index, local(tmp_path), batch_size=4)
    assert resumed.resumed == 8 and written == [[8, 9, 10, 11]]  # the unmarked batch again, nothing before it
    monkeypatch.undo()
    client = parse_target(local(tmp_path), "--to").client()
    points, _ = client.scroll("shop", limit=100, with_payload=True)
    assert sorted(point.id for point in points) == list(range(12)) and client.count("shop", exact=True).count == 12
    items = [json.loads(line) for line in (shop_index / "items.jsonl").read_text().splitlines()]
    assert [point.payload["sha256"] for point in sorted(points, key=lambda p: p.id)] == [item["sha256"] for item in items]
    assert client.get_collection("shop").config.metadata[POINTS_KEY] == 12
    client.close()
    assert export_index(shop_index, local(tmp_path)).resumed == 12  # complete: nothing written again


def test_a_collection_of_another_index_is_refused(shop_index, weighted_index, tmp_path):  # noqa: F811
    export_index(weighted_index, local(tmp_path))
    with pytest.raises(FamevilError, match=r"^--to .*: collection shop holds another index's points \(sha256:.*--overwrite"):
        export_index(shop_index, local(tmp_path))
    with pytest.raises(FamevilError, match=r"^--backend .*: collection shop holds another index's points, not .*export-index"):
        SearchSession(shop_index, backend=local(tmp_path))
    replaced = export_index(shop_index, local(tmp_path), overwrite=True)
    assert replaced.resumed == 0 and replaced.products == 0
    client = parse_target(local(tmp_path), "--to").client()
    assert not client.collection_exists("shop-products")  # the other index's product vectors went too
    client.update_collection("shop", metadata={POINTS_KEY: 5})
    client.close()
    with pytest.raises(FamevilError, match=r"holds 5 of the index's 12 points; finish the export"):
        SearchSession(shop_index, backend=local(tmp_path))
    with pytest.raises(FamevilError, match=r"^--backend .*: no collection other; export the index first"):
        SearchSession(shop_index, backend=local(tmp_path, "other"))


@pytest.mark.parametrize(
    "given",
    ["qdrant://localhost", "qdrant://localhost:99999/shop", "qdrant://:6333/shop", "qdrant://host/a/b", "qdrant+local:", "qdrant+local:/"],
)
def test_a_malformed_address_is_one_line(given):
    with pytest.raises(FamevilError, match=r"^--to .*: expected qdrant://HOST\[:PORT\]/COLLECTION, qdrants://"):
        parse_target(given, "--to")


def test_addresses_name_a_server_over_http_or_tls_or_a_local_folder(tmp_path):
    assert parse_target("qdrant://db.example:7000/shop", "--to").url == "http://db.example:7000"
    assert parse_target("qdrants://xyz.cloud.qdrant.io/shop", "--to").url == "https://xyz.cloud.qdrant.io:6333"
    assert parse_target("qdrant://[::1]/shop", "--to").url == "http://[::1]:6333"
    found = parse_target(local(tmp_path), "--to")
    assert (found.folder, found.collection, found.products) == (tmp_path, "shop", "shop-products")


def test_export_index_and_search_backend_commands(cli, shop_index, tmp_path):  # noqa: F811
    result = cli("export-index", shop_index, "--to", local(tmp_path), "--batch-size", 5)
    assert result.exit_code == 0 and f"{local(tmp_path)}: 12 items exported in" in result.stdout, result.output
    exact = cli("search", shop_index, "black coat", "--category", "dresses", "--json")
    found = cli("search", shop_index, "black coat", "--category", "dresses", "--json", "--backend", local(tmp_path))
    assert found.exit_code == 0, found.output
    wanted, got = json.loads(exact.stdout)["hits"], json.loads(found.stdout)["hits"]
    assert [(h["product_id"], h["item"]) for h in got] == [(h["product_id"], h["item"]) for h in wanted] and len(got) == 2
    for args, message in [
        (("--approximate", "--backend", local(tmp_path)), "error: --approximate and --backend"),
        (("--backend", "fast"), "error: --backend fast: expected exact, approximate or a Qdrant collection"),
    ]:
        result = cli("search", shop_index, "black coat", *args)
        assert result.exit_code == 1 and result.stderr.startswith(message) and "Traceback" not in result.output, result.output
    result = cli("export-index", shop_index, "--to", "qdrant://localhost")
    assert result.exit_code == 1 and result.stderr.startswith("error: --to qdrant://localhost: expected"), result.output


def test_an_unreachable_server_is_one_line(shop_index):  # noqa: F811
    with pytest.raises(FamevilError, match=r"^--to qdrant://127.0.0.1:9/shop: cannot reach Qdrant at http://127.0.0.1:9 .*check the address"):
        export_index(shop_index, "qdrant://127.0.0.1:9/shop")
