"""famevil serve: the JSON API through FastAPI's test client, and the web page driven in a real browser."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import famevil_cli.server as server
from famevil.catalogue_index import MAX_ORIGINAL_BYTES
from famevil.serving import SearchSession
from stages.index import index

HOSTILE_TITLE = '<img src=x onerror="window.pwned=1">'  # a catalogue title that would run as HTML
CATEGORIES = {"TOPS": ("SWEATERS", "SHIRTS"), "DRESSES": ("DRESSES",)}
PRODUCTS = 20  # more than the page's 12 a page, so that it pages


def _catalogue_rows() -> list[dict[str, str]]:
    """20 products, the first 10 with two views: image, title, description, category, subcategory, product_id."""
    labels = [(category, subcategory) for category, subcategories in CATEGORIES.items() for subcategory in subcategories]
    rows = []
    for product in range(PRODUCTS):
        category, subcategory = labels[product % len(labels)]
        title = HOSTILE_TITLE if product == 0 else f"{subcategory.title()} number {product}"
        for view in range(2 if product < 10 else 1):
            rows.append({"image": f"p{product:02d}-{view}.png", "title": title, "description": f"A {subcategory.lower()} in colour {product}.",
                         "category": category, "subcategory": subcategory, "product_id": f"P{product:02d}"})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> tuple[Path, Path]:
    """A shop's catalogue CSV and its images folder."""
    root = tmp_path_factory.mktemp("shop")
    images = root / "images"
    images.mkdir()
    rows = _catalogue_rows()
    for number, row in enumerate(rows):
        Image.new("RGB", (24, 20), (number * 37 % 256, number * 91 % 256, 120)).save(images / row["image"])
    with open(root / "catalogue.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "catalogue.csv", images


@pytest.fixture(scope="module")
def catalogue_index(tiny_student, catalogue, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "index"
    index(tiny_student, catalogue[1], out, catalogue=catalogue[0], batch_size=16)
    return out


@pytest.fixture(scope="module")
def session(catalogue_index) -> SearchSession:
    return SearchSession(catalogue_index)


def _client(app) -> TestClient:
    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)  # a Host the server answers to


@pytest.fixture(scope="module")
def client(session) -> TestClient:
    return _client(server.create_app(session))


def _png(size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 40, 84)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_api_answers_every_call(client, catalogue_index):
    found = client.get("/api/search", params={"q": "navy wool cardigan", "top": 5}).json()
    expected = SearchSession(catalogue_index).search(text="navy wool cardigan", top=5).hits
    assert [r["product_id"] for r in found["results"]] == [h.product_id for h in expected] and found["kind"] == "text"
    thumbnail = client.get(found["results"][0]["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
    similar = client.get("/api/items/3/similar", params={"modify": "is red", "top": 4}).json()
    assert similar["kind"] == "composed" and len(similar["results"]) == 4
    upload = {"image": ("ref.png", _png(), "image/png")}
    assert len(client.post("/api/search/composed", files=upload, data={"modify": "has short sleeves", "top": "3"}).json()["results"]) == 3
    assert client.post("/api/search/similar", files=upload, data={"top": "3"}).json()["kind"] == "similar"
    assert isinstance(client.post("/api/caption", files=upload).json()["caption"], str)
    assert len(client.post("/api/classify", files=upload, data={"text": "Navy Cardigan.", "top": "2"}).json()["subcategories"]) == 2


def test_info_says_what_the_index_holds_and_answers(client):
    info = client.get("/api/info").json()
    assert (info["items"], info["products"]) == (len(_catalogue_rows()), PRODUCTS)
    assert info["searches"] == ["text", "similar", "composed"] and info["composed_missing"] is None
    assert {category: sorted(names) for category, names in info["categories"].items()} == {c: sorted(n) for c, n in CATEGORIES.items()}
    assert info["captions"] is True and info["zero_shot"] is True


def test_results_are_products_paged_by_offset(client):
    first, second = (client.get("/api/search", params={"q": "a shirt", "top": 12, "offset": offset}).json() for offset in (0, 12))
    assert first["more"] is True and second["more"] is False and len(second["results"]) == PRODUCTS - 12
    ids = [r["product_id"] for r in first["results"] + second["results"]]
    assert sorted(ids) == sorted(f"P{n:02d}" for n in range(PRODUCTS))  # every product once: views fold into their product
    two_views = next(r for r in first["results"] + second["results"] if r["product_id"] == "P01")
    assert set(two_views) >= {"product_id", "title", "category", "subcategory", "score", "item", "views", "thumbnail"}
    assert two_views["title"] == "Shirts number 1" and two_views["views"] == 2 and two_views["item"] in (2, 3)


def test_searches_filter_by_category_and_subcategory(client):
    upload = {"image": ("ref.png", _png(), "image/png")}
    answers = [
        client.get("/api/search", params={"q": "a dress", "category": "TOPS", "top": 50}),
        client.get("/api/items/0/similar", params={"subcategory": "SHIRTS", "top": 50}),
        client.post("/api/search/composed", files=upload, data={"modify": "is red", "subcategory": "DRESSES", "top": "50"}),
    ]
    kept = [{(r["category"], r["subcategory"]) for r in answer.json()["results"]} for answer in answers]
    assert kept == [{("TOPS", "SWEATERS"), ("TOPS", "SHIRTS")}, {("TOPS", "SHIRTS")}, {("DRESSES", "DRESSES")}]
    unknown = client.get("/api/search", params={"q": "a dress", "category": "TOP"})
    assert unknown.status_code == 400 and "did you mean TOPS" in unknown.json()["error"]


def test_similar_items_of_a_catalogue_item_need_no_modification(client):
    similar = client.get("/api/items/2/similar", params={"top": 5}).json()
    assert similar["kind"] == "similar" and len(similar["results"]) == 5


def test_a_products_detail_has_its_fields_caption_and_zero_shot_tags(client, session):
    detail = client.get("/api/items/1").json()  # the second view of product P00
    assert (detail["product_id"], detail["title"], detail["category"], detail["subcategory"]) == ("P00", HOSTILE_TITLE, "TOPS", "SWEATERS")
    assert detail["view_items"] == [0, 1] and isinstance(detail["caption"], str)
    subcategories = {name for names in CATEGORIES.values() for name in names}
    assert len(detail["tags"]) == server.TAGS and {tag["label"] for tag in detail["tags"]} <= subcategories
    probabilities = [tag["probability"] for tag in detail["tags"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6


@pytest.fixture(scope="module")
def retrieval_only_client(tiny_dumps, catalogue, tmp_path_factory) -> TestClient:
    """A server over an index built by a cross-modal retrieval teacher: text and similar search, no composed search."""
    out = tmp_path_factory.mktemp("xmr-index") / "index"
    index(tiny_dumps["xmr"][0], catalogue[1], out, catalogue=catalogue[0], batch_size=16)
    return _client(server.create_app(SearchSession(out)))


def test_an_index_without_composed_retrieval_serves_text_and_similar_search_and_refuses_composed(retrieval_only_client):
    client = retrieval_only_client
    info = client.get("/api/info").json()
    assert info["searches"] == ["text", "similar"] and "text-guided image retrieval" in info["composed_missing"]
    assert len(client.get("/api/search", params={"q": "a shirt", "top": 3}).json()["results"]) == 3
    assert client.get("/api/items/0/similar", params={"top": 3}).json()["kind"] == "similar"
    refused = [
        client.get("/api/items/0/similar", params={"modify": "is red"}),
        client.post("/api/search/composed", files={"image": ("ref.png", _png(), "image/png")}, data={"modify": "is red"}),
    ]
    for response in refused:
        assert response.status_code == 409 and response.json() == {"error": info["composed_missing"]}


def test_bad_requests_get_a_4xx_with_a_json_error(client):
    cases = [
        client.get("/api/search"),  # no query
        client.get("/api/search", params={"q": "x", "top": 0}),
        client.get("/api/thumbnails/999"),
        client.get("/api/items/-1"),
        client.get("/api/thumbnails/..%2F..%2Fetc%2Fpasswd"),
        client.post("/api/caption", files={"image": ("notes.png", b"not an image", "image/png")}),
        client.post("/api/search/composed", files={"image": ("ref.png", _png(), "image/png")}),  # no modification
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()) == {"error"} and "Traceback" not in response.text
    assert cases[5].status_code == 415 and cases[2].status_code == 404


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(client, session, monkeypatch):
    monkeypatch.setattr(session, "search", lambda **_: (_ for _ in ()).throw(RuntimeError("boom")))
    response = client.get("/api/search", params={"q": "coat"})
    assert response.status_code == 500 and response.json() == {"error": "internal error (RuntimeError)"}
    assert response.headers["x-content-type-options"] == "nosniff"  # answered inside the middleware that adds the headers


def test_an_upload_being_worked_on_leaves_text_search_answering_and_a_second_upload_gets_503(session, monkeypatch):
    working, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_caption(images: list) -> list[str]:
        working.set()
        release.wait(10)  # on the event loop, this would hold up the text search below for 10 s
        done.set()
        return ["a coat"]

    monkeypatch.setattr(session.model, "caption", slow_caption)
    upload = {"image": ("ref.png", _png(), "image/png")}
    with TestClient(server.create_app(session, upload_slots=1), base_url="http://localhost") as client:  # one event loop for all requests
        first = threading.Thread(target=client.post, args=("/api/caption",), kwargs={"files": upload})
        first.start()
        assert working.wait(10)
        search = client.get("/api/search", params={"q": "red coat"})
        answered_meanwhile = not done.is_set()
        busy = client.post("/api/caption", files=upload)
        release.set()
        first.join(10)
    assert search.status_code == 200 and answered_meanwhile
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]


def test_a_pixel_bomb_is_refused_from_its_header(client):
    buffer = io.BytesIO()
    Image.new("L", (12000, 12000), 128).save(buffer, format="PNG")  # 168 kB that would decode to 144 megapixels
    refused = client.post("/api/search/composed", files={"image": ("bomb.png", buffer.getvalue(), "image/png")}, data={"modify": "is red"})
    assert refused.status_code == 413 and "12000x12000" in refused.json()["error"]


def test_an_upload_is_turned_upright_as_its_exif_orientation_says(client, session, monkeypatch):
    sizes: list[tuple[int, int]] = []
    monkeypatch.setattr(session.model, "caption", lambda images: [sizes.append(images[0].size) or "a coat"])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored turned 90 degrees, as a phone held upright writes it
    sideways = io.BytesIO()
    Image.new("RGB", (40, 20), (30, 40, 84)).save(sideways, format="JPEG", exif=exif.tobytes())
    assert client.post("/api/caption", files={"image": ("phone.jpg", sideways.getvalue(), "image/jpeg")}).status_code == 200
    assert sizes == [(20, 40)]


def _post_raw(app, path: str, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> tuple[int, int]:
    """POST straight to the ASGI app, the body in chunks as a client sends them: the status, and how many
    chunks the app read."""
    read, status = 0, 0

    async def receive() -> dict:
        nonlocal read
        chunk = next(chunks, None)
        read += chunk is not None
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict) -> None:
        nonlocal status
        status = message.get("status", status)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000), "server": ("localhost", 80),
             "headers": [(b"host", b"localhost"), (b"content-type", b"multipart/form-data; boundary=B"), *headers]}  # fmt: skip
    anyio.run(app, scope, receive, send)
    return status, read


def _huge_upload(mebibytes: int = 200) -> Iterator[bytes]:
    yield b'--B\r\nContent-Disposition: form-data; name="image"; filename="huge.png"\r\nContent-Type: image/png\r\n\r\n'
    for _ in range(mebibytes):
        yield bytes(1024 * 1024)


def test_a_body_past_the_limit_is_refused_before_or_as_it_is_read(client):
    declared = [(b"content-length", str(200 * 1024 * 1024).encode())]
    assert _post_raw(client.app, "/api/caption", declared, _huge_upload()) == (413, 0)  # refused from Content-Length, nothing read
    status, read = _post_raw(client.app, "/api/caption", [], _huge_upload())  # chunked: no length given
    assert status == 413 and read <= 2 + server.MAX_UPLOAD_BYTES // (1024 * 1024)  # cut at the limit, not spooled whole


def test_every_response_carries_the_hardening_headers(client):
    responses = [
        client.get("/"),
        client.get("/api/search", params={"q": "coat"}),
        client.get("/api/thumbnails/999"),
        client.get("/api/search", params={"q": "coat"}, headers={"host": "rebound.example"}),
        client.post("/api/caption", content=bytes(11 * 1024 * 1024), headers={"content-type": "multipart/form-data; boundary=B"}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 413]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff" and response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer" and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", responses[0].text, re.DOTALL).group(1)
    allowed = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{allowed}';" in responses[0].headers["content-security-policy"]  # the page's own script, and only it
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 200  # Swagger UI would load a CDN's scripts


def test_only_the_hosts_the_address_implies_are_answered(client):
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
        assert client.get("/api/search", params={"q": "coat"}, headers={"host": host}).status_code == 200
    rebound = client.get("/api/search", params={"q": "coat"}, headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400 and "--allowed-host attacker.example" in rebound.json()["error"]
    assert server.allowed_hosts("0.0.0.0") is None  # a wildcard address answers any name, unless names are given
    assert server.allowed_hosts("0.0.0.0", ["Shop.example"]) == server.LOOPBACK_NAMES | {"0.0.0.0", "shop.example"}
    assert "[::1]" in server.allowed_hosts("::1") and "192.168.1.5" in server.allowed_hosts("192.168.1.5")


def _bytes_read() -> int:
    return int(re.search(r"rchar: (\d+)", Path("/proc/self/io").read_text()).group(1))


def test_an_item_file_changed_or_outside_the_catalogue_shows_the_thumbnail_after_bounded_reads(client, session, monkeypatch, tmp_path):
    captioned: list[bytes] = []
    monkeypatch.setattr(session.model, "caption", lambda images: [captioned.append(images[0].tobytes()) or "a coat"])
    edited = list(session.index.items)  # the index reads items.jsonl's lines as asked for: this list stands in for an edited file
    monkeypatch.setattr(session.index, "items", edited)
    listed = edited[3]
    original = Path(session.index.path(3))  # the index lists it relative to its images root
    thumbnail = Image.open(io.BytesIO(session.index.thumbnail(3))).convert("RGB").tobytes()
    assert Image.open(original).convert("RGB").tobytes() != thumbnail  # the two can be told apart
    swapped = original.with_name("swapped" + original.suffix)  # inside the catalogue folder, same size, other bytes
    swapped.write_bytes(bytes(reversed(original.read_bytes())))
    huge = original.with_name("huge" + original.suffix)
    with open(huge, "wb") as sparse:
        sparse.truncate(1024**3)
    device = original.with_name("device" + original.suffix)  # a link inside the folder, to what never ends
    device.symlink_to("/dev/zero")
    outside = tmp_path / original.name  # the very same bytes, but not where the index was built from
    shutil.copy(original, outside)
    try:
        assert client.get("/api/items/3").status_code == 200 and captioned.pop() != thumbnail  # unchanged: the original
        for path in ("/dev/zero", device.name, swapped.name, huge.name, str(outside)):  # items.jsonl lists paths relative to the images
            monkeypatch.setitem(listed, "path", path)
            before = _bytes_read()
            assert client.get("/api/items/3").status_code == 200, path
            assert captioned.pop() == thumbnail and _bytes_read() - before < MAX_ORIGINAL_BYTES // 4, path
    finally:
        for made in (swapped, huge, device):
            made.unlink()


def test_a_port_in_use_is_one_line_naming_it_and_the_fix(cli, catalogue_index):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", catalogue_index, "--port", port)
    assert result.exit_code == 1 and "serving" not in result.stdout, result.output
    assert result.stderr.strip().splitlines() == [f"error: port {port} is already in use on 127.0.0.1; stop what uses it, or pick another port with --port"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_page_searches_pages_filters_shows_a_product_and_its_similar_items(catalogue_index, browser, screenshots, tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "famevil_cli", "serve", str(catalogue_index), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        banner = process.stdout.readline()
        assert re.search(rf"at http://127\.0\.0\.1:{port}/", banner), banner  # the default binds to this machine only
        for _ in range(100):
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        wait = WebDriverWait(browser, 60)
        answered = "return Number(document.body.dataset.searches)"
        cards = lambda: browser.find_elements(By.CSS_SELECTOR, "#results .card")  # noqa: E731
        titles = lambda: [card.find_element(By.CLASS_NAME, "title").text for card in cards()]  # noqa: E731
        browser.set_window_size(1280, 1000)  # room for the results and the detail panel in the screenshot
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda b: b.execute_script("return document.body.dataset.ready") == "1")  # /api/info filled the filters
        assert browser.find_element(By.ID, "upload-modify").is_displayed() and not browser.find_element(By.ID, "composed-missing").is_displayed()
        browser.find_element(By.ID, "query").send_keys("a shirt\n")
        wait.until(lambda b: b.execute_script(answered) == 1)
        first_page = titles()
        assert len(first_page) == 12 and all(first_page) and browser.find_element(By.ID, "error").is_displayed() is False
        thumbnail = cards()[0].find_element(By.TAG_NAME, "img")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumbnail))
        browser.set_network_conditions(latency=1500, download_throughput=10**7, upload_throughput=10**7)  # time to see the request wait
        browser.find_element(By.ID, "next").click()
        assert browser.find_element(By.ID, "status").text == "searching…" and "loading" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
        assert not browser.find_element(By.ID, "next").is_enabled()  # the buttons wait with it
        wait.until(lambda b: b.execute_script(answered) == 2)
        browser.delete_network_conditions()
        second_page = titles()
        assert len(second_page) == PRODUCTS - 12 and browser.find_element(By.ID, "page-label").text == f"13–{PRODUCTS}"
        assert set(first_page).isdisjoint(second_page) and HOSTILE_TITLE in first_page + second_page  # shown as the characters it holds
        browser.find_element(By.ID, "previous").click()
        wait.until(lambda b: b.execute_script(answered) == 3)
        assert titles() == first_page
        Select(browser.find_element(By.ID, "subcategory")).select_by_value("SWEATERS")  # the search again, sweaters only
        wait.until(lambda b: b.execute_script(answered) == 4)
        sweaters = [product for product in range(PRODUCTS) if product % 3 == 0]
        assert len(cards()) == len(sweaters) and browser.find_element(By.ID, "pager").is_displayed() is False
        hostile = next(card for card in cards() if card.find_element(By.CLASS_NAME, "title").text == HOSTILE_TITLE)
        hostile.click()
        wait.until(lambda b: b.find_element(By.ID, "detail-caption").text not in ("", "…"))
        tags = [tag.text for tag in browser.find_elements(By.CSS_SELECTOR, "#detail-tags li.tag")]
        assert len(tags) == server.TAGS and all("%" in tag for tag in tags)
        assert HOSTILE_TITLE in browser.find_element(By.ID, "detail-fields").text and "P00" in browser.find_element(By.ID, "detail-fields").text
        assert browser.execute_script("return window.pwned") is None  # the title's onerror never ran
        searches = browser.execute_script(answered)
        browser.find_element(By.ID, "similar").click()
        wait.until(lambda b: b.execute_script(answered) == searches + 1)
        assert browser.find_element(By.ID, "results-heading").text in ("similar search: like item 0", "similar search: like item 1")  # a view of P00
        assert len(cards()) == len(sweaters) - 1 and HOSTILE_TITLE not in titles()  # the product itself is no similar item of its own
        Select(browser.find_element(By.ID, "category")).select_by_value("DRESSES")  # the similar items again, dresses only
        wait.until(lambda b: b.execute_script(answered) == searches + 2)
        assert len(cards()) == sum(1 for product in range(PRODUCTS) if product % 3 == 2)
        browser.save_screenshot(str(screenshots / "page.png"))
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_bytes(b"not an image")
        browser.find_element(By.ID, "upload").send_keys(str(not_an_image))
        browser.find_element(By.ID, "upload-form").submit()
        wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
        assert "JPEG, PNG or WebP expected" in browser.find_element(By.ID, "error").text  # the JSON error, in the page
        assert browser.find_element(By.ID, "status").text == "" and "loading" not in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_page_offers_no_composed_search_where_the_index_lacks_it_and_says_why(retrieval_only_client, browser):
    port = _free_port()
    served = uvicorn.Server(uvicorn.Config(retrieval_only_client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    try:
        wait = WebDriverWait(browser, 60)
        wait.until(lambda _: served.started)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda b: b.execute_script("return document.body.dataset.ready") == "1")
        missing = browser.find_element(By.ID, "composed-missing")
        assert missing.is_displayed() and "text-guided image retrieval" in missing.text
        assert browser.find_element(By.ID, "upload").is_displayed() and not browser.find_element(By.ID, "upload-modify").is_displayed()  # similar items only
        assert not browser.find_element(By.ID, "modify-form").is_displayed() and browser.find_element(By.ID, "similar").get_attribute("hidden") is None
    finally:
        served.should_exit = True
        thread.join(30)
