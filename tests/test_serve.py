"""famevil serve: the JSON API through FastAPI's test client, and the web page driven in a real browser."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import famevil_cli.server as server
from famevil.serving import SearchSession
from stages.index import index


@pytest.fixture(scope="module")
def catalogue_index(tiny_student, tiny_raw, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    images = root / "images"
    images.mkdir()
    for picture in sorted((tiny_raw / "fashioniq" / "images").iterdir())[:12]:
        shutil.copy(picture, images / picture.name)
    index(tiny_student, images, root / "index", batch_size=8)
    return root / "index"


@pytest.fixture(scope="module")
def client(catalogue_index) -> TestClient:
    return TestClient(server.create_app(SearchSession(catalogue_index)), raise_server_exceptions=False)


def _png(size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (30, 40, 84)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_api_answers_every_call(client, catalogue_index):
    found = client.get("/api/search", params={"q": "navy wool cardigan", "top": 5}).json()
    expected = SearchSession(catalogue_index).search(text="navy wool cardigan", top=5).hits
    assert [r["item"] for r in found["results"]] == [h.item for h in expected] and found["kind"] == "text"
    thumbnail = client.get(found["results"][0]["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
    item = client.get("/api/items/3").json()
    assert isinstance(item["caption"], str) and len(item["subcategories"]) == 3
    similar = client.get("/api/items/3/similar", params={"modify": "is red", "top": 4}).json()
    assert similar["kind"] == "composed" and len(similar["results"]) == 4
    upload = {"image": ("ref.png", _png(), "image/png")}
    assert len(client.post("/api/search/composed", files=upload, data={"modify": "has short sleeves", "top": "3"}).json()["results"]) == 3
    assert isinstance(client.post("/api/caption", files=upload).json()["caption"], str)
    assert len(client.post("/api/classify", files=upload, data={"text": "Navy Cardigan.", "top": "2"}).json()["subcategories"]) == 2


def test_bad_requests_get_a_4xx_with_a_json_error(client, monkeypatch):
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
    monkeypatch.setattr(server, "MAX_UPLOAD_BYTES", 100)
    too_large = client.post("/api/caption", files={"image": ("big.png", _png(200), "image/png")})
    assert too_large.status_code == 413 and "larger than" in too_large.json()["error"]


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(catalogue_index):
    catalogue = SearchSession(catalogue_index)
    client = TestClient(server.create_app(catalogue), raise_server_exceptions=False)
    catalogue.search = lambda **_: (_ for _ in ()).throw(RuntimeError("boom"))
    response = client.get("/api/search", params={"q": "coat"})
    assert response.status_code == 500 and response.json() == {"error": "internal error (RuntimeError)"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_page_searches_shows_a_product_searches_a_variation_and_searches_from_a_photo(catalogue_index, browser, screenshots, tmp_path):
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
        browser.get(f"http://127.0.0.1:{port}/")
        browser.find_element(By.ID, "query").send_keys("navy wool cardigan\n")
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results figure.hit")) == 12)
        first = browser.find_elements(By.CSS_SELECTOR, "#results figure.hit img")[0]
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", first))  # the thumbnail loaded
        browser.find_elements(By.CSS_SELECTOR, "#results figure.hit")[2].click()
        wait.until(lambda b: b.find_element(By.ID, "detail-caption").text not in ("", "…"))
        assert "%" in browser.find_element(By.ID, "detail-subcategory").text
        answered = "return Number(document.body.dataset.searches)"
        browser.find_element(By.ID, "modify").send_keys("is red with short sleeves\n")
        wait.until(lambda b: b.execute_script(answered) == 2)
        assert browser.find_element(By.ID, "status").text == ""
        photo = tmp_path / "photo.png"
        photo.write_bytes(_png(64))
        browser.find_element(By.ID, "upload").send_keys(str(photo))
        browser.find_element(By.ID, "upload-modify").send_keys("has long sleeves\n")
        wait.until(lambda b: b.execute_script(answered) == 3)  # the composed search from the upload answered
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results figure.hit")) == 12 and browser.find_element(By.ID, "status").text == ""
        browser.save_screenshot(str(screenshots / "page.png"))
    finally:
        process.terminate()
        process.wait(timeout=30)
