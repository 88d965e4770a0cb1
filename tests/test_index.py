"""famevil index and famevil search: what an index holds, exact search over it, resume, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import famevil
import stages.index as index_module
from data_specs.errors import FamevilError
from data_specs.indexes import IMAGE_VECTORS, THUMBNAIL_BYTES, THUMBNAIL_OFFSETS
from data_specs.manifest import require_artifact
from famevil import approximate
from famevil.catalogue_index import OUTSIDE_THE_LISTING, CatalogueIndex, write_index_files
from famevil.serving import SearchSession, results_page
from stages.index import index
from tests.conftest import launch
from tests.test_images import sideways_jpeg


@pytest.fixture
def catalogue(tiny_raw, tmp_path) -> Path:
    """Nine catalogue images in two folders, and one file that is not an image."""
    folder = tmp_path / "catalogue"
    for i, picture in enumerate(sorted((tiny_raw / "fashioniq" / "images").iterdir())[:9]):
        (folder / f"part{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(picture, folder / f"part{i % 2}" / picture.name)
    (folder / "part0" / "notes.jpg").write_text("not an image")
    return folder


def test_an_index_holds_each_readable_image_with_its_vectors_thumbnail_and_hash(tiny_student, catalogue, tmp_path):
    result = index(tiny_student, catalogue, tmp_path / "idx", batch_size=4, thumbnail=24)
    out = tmp_path / "idx"
    assert sorted(p.name for p in out.iterdir()) == ["items.jsonl", "manifest.json", "skipped.jsonl", "vectors.safetensors"]
    manifest = require_artifact(out, "index")
    assert manifest.inputs[0].id == require_artifact(tiny_student).content_id and manifest.details["items"] == 9
    assert result.items == result.products == 9 and result.skipped == [
        {"file": None, "row": None, "path": "part0/notes.jpg", "reason": "not an image format PIL can decode"}
    ]
    assert manifest.details["images"] == str(catalogue) and manifest.details["searches"] == ["text", "similar", "composed"]
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    paths = sorted(p for p in catalogue.rglob("*.png"))
    assert [item["path"] for item in items] == [p.relative_to(catalogue).as_posix() for p in paths]
    assert [item["product_id"] for item in items] == [item["path"] for item in items]  # without a catalogue, each image its own product
    assert items[0]["sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    model = famevil.load(tiny_student)
    expected = model.catalogue_vectors(paths)
    stored = load_file(out / "vectors.safetensors")
    for kind, vectors in expected.items():
        assert stored[kind].dtype == torch.float16 and torch.allclose(stored[kind].float(), vectors, atol=2e-3)
    thumbnail = Image.open(io.BytesIO(CatalogueIndex(out).thumbnail(8)))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 24


def test_search_ranks_as_the_model_does(tiny_student, catalogue, tmp_path):
    index(tiny_student, catalogue, tmp_path / "idx", batch_size=4)
    searcher = SearchSession(tmp_path / "idx")
    model = famevil.load(tiny_student)
    paths = sorted(catalogue.rglob("*.png"))
    hits = searcher.search(text="navy wool cardigan", top=5).hits
    scores = model.encode_images(paths) @ model.encode_texts(["navy wool cardigan"])[0]
    assert [h.path for h in hits] == [str(paths[i]) for i in scores.argsort(descending=True)[:5].tolist()]
    composed = searcher.search(image=paths[0], modify="is red with short sleeves", top=3).hits
    query = model.compose([paths[0]], ["is red with short sleeves"])[0]
    gallery = model.encode_images(paths, task="tgir")
    assert [h.path for h in composed] == [str(paths[i]) for i in (gallery @ query).argsort(descending=True)[:3].tolist()]
    page = results_page(searcher, searcher.search(text="red dress", top=4))
    assert page.count("<img ") == 4 and "data:image/jpeg;base64," in page


def _interrupted_after_two_batches(model: Path, images: Path, out: Path, monkeypatch) -> list[Path]:
    """An index run of batches of 3 stopped by Ctrl-C as it starts its third: the two chunks it finished."""
    write_chunk = index_module._write_chunk
    written = []

    def fail_on_the_third(path, *args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        write_chunk(path, *args)

    monkeypatch.setattr(index_module, "_write_chunk", fail_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        index(model, images, out, batch_size=3)
    monkeypatch.setattr(index_module, "_write_chunk", write_chunk)
    assert not out.exists()
    return written


def test_an_interrupted_index_resumes_its_finished_batches(tiny_student, catalogue, tmp_path, monkeypatch):
    _interrupted_after_two_batches(tiny_student, catalogue, tmp_path / "idx", monkeypatch)
    resumed = index(tiny_student, catalogue, tmp_path / "idx", batch_size=3)
    fresh = index(tiny_student, catalogue, tmp_path / "fresh", batch_size=3)
    assert resumed.resumed_chunks == 2 and fresh.resumed_chunks == 0
    assert (tmp_path / "idx" / "vectors.safetensors").read_bytes() == (tmp_path / "fresh" / "vectors.safetensors").read_bytes()


def _assert_same_index(one: Path, other: Path) -> None:
    """The same files byte for byte, and manifests that differ only in the command that made them and when."""
    for name in ("vectors.safetensors", "items.jsonl", "skipped.jsonl"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    manifests = [{k: v for k, v in json.loads((out / "manifest.json").read_text()).items() if k not in ("command", "created")} for out in (one, other)]
    assert manifests[0] == manifests[1]


@pytest.mark.slow  # two processes under accelerate launch
def test_two_processes_write_the_index_one_process_writes(tiny_student, catalogue, tmp_path):
    index(tiny_student, catalogue, tmp_path / "one", batch_size=2)  # 5 batches: 3 for the main process, 2 for the other
    finished = launch(["index", "--model", tiny_student, "--images", catalogue, "--out", tmp_path / "two", "--batch-size", "2"], port=29527)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("9 images of 9 products indexed") == 1  # printed by the main process alone
    _assert_same_index(tmp_path / "one", tmp_path / "two")
    again = launch(["index", "--model", tiny_student, "--images", catalogue, "--out", tmp_path / "two", "--batch-size", "2"], port=29527)
    # The main process's error, raised on the other process too (which the launcher may stop first): no process waits on.
    assert again.returncode != 0 and "already exists; pass --overwrite" in again.stderr


@pytest.mark.slow  # two processes under accelerate launch
def test_two_processes_resume_the_batches_an_interrupted_run_finished(tiny_student, catalogue, tmp_path, monkeypatch):
    first, second = _interrupted_after_two_batches(tiny_student, catalogue, tmp_path / "idx", monkeypatch)
    reused, replaced = _chunk_paths(first), _chunk_paths(second)
    shutil.copy(first, second)  # the second process's finished chunk made the first's: reused as it is, not embedded again
    finished = launch(["index", "--model", tiny_student, "--images", catalogue, "--out", tmp_path / "idx", "--batch-size", "3"], port=29537)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "2 batches resumed" in finished.stdout
    rest = [path for path in sorted(p.relative_to(catalogue).as_posix() for p in catalogue.rglob("*.png")) if path not in reused + replaced]
    items = [json.loads(line) for line in (tmp_path / "idx" / "items.jsonl").read_text().splitlines()]
    assert [item["path"] for item in items] == reused * 2 + rest


def _chunk_paths(chunk: Path) -> list[str]:
    with safe_open(chunk, framework="pt") as tensors:
        return [item["path"] for item in json.loads(tensors.metadata()["items"])]


def test_bad_input_is_one_line(tiny_student, tiny_dumps, catalogue, tmp_path):
    with pytest.raises(FamevilError, match="index\\(\\) needs a model trained for cross-modal retrieval; this one has: scr"):
        index(tiny_dumps["scr"][0], catalogue, tmp_path / "a")
    listing = tmp_path / "products.csv"
    listing.write_text("file,title\na.jpg,x\n")
    with pytest.raises(FamevilError, match="no 'image' column \\(found: file, title\\)"):
        index(tiny_student, listing, tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FamevilError, match="no image files found"):
        index(tiny_student, tmp_path / "empty", tmp_path / "c")
    index(tiny_student, catalogue, tmp_path / "idx")
    with pytest.raises(FamevilError, match="is not the model .* was built with"):
        SearchSession(tmp_path / "idx", model=tiny_dumps["tgir"][0])
    with pytest.raises(FamevilError, match="--modify: composed search needs a reference image"):
        SearchSession(tmp_path / "idx").search(modify="is red")


def test_index_and_search_commands(cli, tiny_student, catalogue, tmp_path):
    listing = tmp_path / "products.csv"
    paths = sorted(catalogue.rglob("*.png"))
    listing.write_text("image,title\n" + "".join(f"{p.relative_to(tmp_path)},item\n" for p in paths[:5]) + "missing.png,gone\n")
    result = cli("index", "--model", tiny_student, "--images", listing, "--out", tmp_path / "idx", "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert "5 images of 5 products indexed" in result.stdout and f"{listing} row 7 (missing.png): missing" in result.stderr
    result = cli("search", tmp_path / "idx", "black coat", "--top", 3, "--json", "--html", tmp_path / "hits.html")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(h["path"] in {str(p) for p in paths[:5]} for h in hits)
    assert (tmp_path / "hits.html").read_text().count("<img ") == 3
    result = cli("search", tmp_path / "idx")
    assert result.exit_code == 1 and result.stderr.startswith("error:") and "Traceback" not in result.output
    items = (tmp_path / "idx" / "items.jsonl").read_bytes()
    result = cli("search", tmp_path / "idx", "black coat", "--html", tmp_path / "idx" / "items.jsonl")  # the page may not land inside the index
    assert result.exit_code == 1 and result.stderr.startswith("error: --html ") and "lies inside the input" in result.stderr, result.output
    assert (tmp_path / "idx" / "items.jsonl").read_bytes() == items


def test_a_csv_listing_is_read_as_a_catalogue_is_and_its_paths_stay_in_its_folder(tiny_student, catalogue, tmp_path):
    """A spreadsheet's byte order mark and header case change nothing; a path out of the CSV's folder is
    listed as skipped and never read, though the file is there."""
    paths = sorted(catalogue.rglob("*.png"))
    outside = tmp_path / "elsewhere" / "secret.png"
    outside.parent.mkdir()
    shutil.copy(paths[0], outside)
    listing = tmp_path / "shop" / "products.csv"
    listing.parent.mkdir()
    rows = [f"catalogue/{p.relative_to(catalogue)}" for p in paths[:3]] + [str(outside), "../elsewhere/secret.png"]
    listing.write_text("\ufeffImage,Title\n" + "".join(f"{row},item\n" for row in rows), encoding="utf-8")
    shutil.move(catalogue, tmp_path / "shop" / "catalogue")  # the first three inside the CSV's folder, the last two not
    result = index(tiny_student, listing, tmp_path / "idx")
    assert result.items == 3
    assert result.skipped == [
        {"file": str(listing), "row": 5, "path": str(outside), "reason": OUTSIDE_THE_LISTING},
        {"file": str(listing), "row": 6, "path": "../elsewhere/secret.png", "reason": OUTSIDE_THE_LISTING},
    ]
    assert [json.loads(line) for line in (tmp_path / "idx" / "skipped.jsonl").read_text().splitlines()] == result.skipped


def test_an_index_sees_a_sideways_photo_upright(tiny_student, tmp_path):
    data, upright = sideways_jpeg()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "portrait.jpg").write_bytes(data)
    index(tiny_student, tmp_path / "photos", tmp_path / "idx")
    stored = load_file(tmp_path / "idx" / "vectors.safetensors")
    expected = famevil.load(tiny_student).catalogue_vectors([upright])
    assert torch.allclose(stored["image"].float(), expected["image"], atol=2e-3)
    assert Image.open(io.BytesIO(CatalogueIndex(tmp_path / "idx").thumbnail(0))).size == (16, 24)


@pytest.mark.parametrize("where", ["the reference image", "the model"])
def test_a_search_page_never_overwrites_an_input(cli, tiny_student, catalogue, tmp_path, where):
    index(tiny_student, catalogue, tmp_path / "idx")
    reference = sorted(catalogue.rglob("*.png"))[0]
    page = {"the reference image": reference, "the model": tiny_student / "search.html"}[where]
    before = reference.read_bytes()
    result = cli("search", tmp_path / "idx", "--image", reference, "--modify", "is red", "--html", page)
    assert result.exit_code == 1 and result.stderr.startswith(f"error: --html {page}: "), result.output
    assert ("is the input" if where == "the reference image" else "lies inside the input") in result.stderr
    assert reference.read_bytes() == before and not (tiny_student / "search.html").exists()


def test_approximate_search_finds_what_exact_search_finds(tiny_student, catalogue, tmp_path):
    index(tiny_student, catalogue, tmp_path / "idx")
    exact_hits = SearchSession(tmp_path / "idx").search(text="black coat", top=4).hits
    approximate = SearchSession(tmp_path / "idx", backend="approximate")
    assert [h.item for h in approximate.search(text="black coat", top=4).hits] == [h.item for h in exact_hits]
    assert not list((tmp_path / "idx").glob("*.faiss"))  # without index --approximate, built in memory


def test_index_approximate_writes_faiss_files_that_search_reads_mapped(tiny_student, catalogue, tmp_path):
    result = index(tiny_student, catalogue, tmp_path / "idx", approximate=True)
    files = sorted(path.name for path in (tmp_path / "idx").glob("*.faiss"))
    assert files == ["approximate-composed.faiss", "approximate-image.faiss"] and result.manifest.details["approximate"] is True
    assert all(name in result.manifest.files for name in files)  # listed, so verify checks them
    session = SearchSession(tmp_path / "idx", backend="approximate")
    assert session.index.ranker.searched["image"].ntotal == result.items
    exact_hits = SearchSession(tmp_path / "idx").search(text="black coat", top=4).hits
    assert [h.item for h in session.search(text="black coat", top=4).hits] == [h.item for h in exact_hits]


def test_compact_codes_with_reranking_keep_near_copies_in_order(tmp_path):
    """The cells hold 6-bit codes; near copies of one vector, which the codes alone misorder now and
    then, come back in the exact search's order and with its scores, since FAISS's candidates are
    ranked again by the exact vectors."""
    generator = torch.Generator().manual_seed(0)
    count = 20_000
    sources = torch.nn.functional.normalize(torch.randn(200, 32, generator=generator), dim=-1)
    vectors = torch.nn.functional.normalize(sources[torch.arange(count) % 200] + 0.05 * torch.randn(count, 32, generator=generator), dim=-1)
    assert approximate.factory_spec(count) == "IVF512,SQ6"
    items = [{"path": f"{i}.jpg", "sha256": f"{i:064x}", "product_id": str(i), "title": "", "category": "", "subcategory": ""} for i in range(count)]
    empty = {THUMBNAIL_BYTES: torch.zeros(0, dtype=torch.uint8), THUMBNAIL_OFFSETS: torch.zeros(count + 1, dtype=torch.int64)}
    (tmp_path / "idx").mkdir()
    write_index_files(tmp_path / "idx", {IMAGE_VECTORS: vectors.half()} | empty, items, [])
    approximate.write(tmp_path / "idx", IMAGE_VECTORS, approximate.build(vectors.half()))
    exact, compact = CatalogueIndex(tmp_path / "idx"), CatalogueIndex(tmp_path / "idx", approximate=True)
    queries = torch.nn.functional.normalize(sources[:50] + 0.05 * torch.randn(50, 32, generator=generator), dim=-1)
    truth = [exact.search(IMAGE_VECTORS, query, 10) for query in queries]
    found = [compact.search(IMAGE_VECTORS, query, 10) for query in queries]
    assert sum(len({h.item for h in a} & {h.item for h in b}) for a, b in zip(truth, found, strict=True)) / 500 >= 0.99
    exact_scores = {h.item: h.score for hits in truth for h in hits}
    assert all(h.score == exact_scores[h.item] for hits in found for h in hits if h.item in exact_scores)
    _, coded = compact.ranker.searched[IMAGE_VECTORS].search(queries.numpy(), 10)  # the codes' own top 10, not reranked
    assert sum(len(set(row.tolist()) & {h.item for h in hits}) for row, hits in zip(coded, truth, strict=True)) / 500 < 0.99
