"""`famevil serve`: an HTTP JSON API and one web page over a catalogue index, on FastAPI.

Every image the server shows comes from the index (thumbnails by item number); no path taken from a
request reaches the file system. Request bodies are size-limited as they arrive, and uploads must decode
as images. Decoding and the model run in worker threads, a few uploads at a time, so that one upload
cannot stall the other requests. Every response carries hardening headers, and only the Host names that
`--host` implies are answered. A bad request gets a 4xx with a JSON {"error": ...}; anything unexpected
a 500 with the same shape, no traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Annotated, TypeVar

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from data_specs.errors import FamevilError
from data_specs.indexes import COMPOSED_SEARCH, PRODUCT_FIELDS
from famevil.data.images import ImageTooLarge, decode_image
from famevil.serving import SearchResult, SearchSession
from famevil.tasks.tgir import TextGuidedRetrieval

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a product photo; larger requests get 413
FORM_FIELDS_BYTES = 64 * 1024  # the multipart framing and the text fields sent beside the image
MAX_RESULTS = 200
PRODUCT_HIT_FIELDS = ("rank", "product_id", "title", "category", "subcategory", "item", "views")  # views: how many the index holds
MAX_OFFSET = 100_000  # deeper pages than anyone reads; the bound keeps one request's sort small
TAGS = 3  # zero-shot tags a product's detail shows
# Uploads decoded at once: half the cores, so that the other half keeps text search and thumbnails quick.
UPLOAD_SLOTS = max(1, (os.cpu_count() or 1) // 2)
RETRY_AFTER_SECONDS = 1  # about what one large upload takes to decode and encode
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARD_ADDRESSES = ("0.0.0.0", "::")

T = TypeVar("T")


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names the server answers to, or None for any.

    A page on another site can reach a server on this machine through a DNS name of its own that it
    points at 127.0.0.1 (DNS rebinding); its requests then carry that name as Host, so answering only the
    names this server is known by keeps such pages from reading the API. A wildcard address (0.0.0.0,
    ::) is reached by names the server cannot know, so it answers any unless `extra` lists them."""
    extra = [_bracketed(name) for name in extra]
    if host in WILDCARD_ADDRESSES and not extra:
        return None
    return LOOPBACK_NAMES | {_bracketed(host), *extra}


def _bracketed(name: str) -> str:
    """A host name as a Host header writes it: lower case, an IPv6 address in brackets."""
    name = name.strip().lower()
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" is "[::1]", "localhost:8000" "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.partition(":")[0]


def _inline_sources(page: str, tag: str) -> str:
    """The Content-Security-Policy sources that allow the page's own inline <tag> elements, by their hash:
    an injected inline element has another hash and does not run."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'" for body in bodies)


def hardening_headers(page: str) -> list[tuple[bytes, bytes]]:
    """The headers every response carries: no content-type sniffing, nothing loaded but from this server
    (and the page's own inline script and style), no framing (clickjacking), no referrer sent on."""
    policy = (
        f"default-src 'self'; script-src {_inline_sources(page, 'script')}; style-src {_inline_sources(page, 'style')}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def _too_large() -> str:
    return f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"


class Guard:
    """ASGI middleware: the hardening headers on every response, and 400 for a Host not allowed.

    It sits inside Starlette's outermost error middleware, which would send the unexpected-error 500
    without the headers; so that 500 is answered here (and the error re-raised for the server's log)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, headers: list[tuple[bytes, bytes]]):
        self.app, self.hosts, self.headers = app, hosts, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_hardened(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = message | {"headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        host = _host_name(Headers(scope=scope).get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            refusal = f"this server does not answer to the host {host!r}; start it with --allowed-host {host or 'NAME'} to allow it"
            return await JSONResponse({"error": refusal}, status_code=400)(scope, receive, send_hardened)
        try:
            await self.app(scope, receive, send_hardened)
        except Exception as error:
            if not started:
                await JSONResponse({"error": f"internal error ({error.__class__.__name__})"}, status_code=500)(scope, receive, send_hardened)
            raise


class BodyLimit:
    """ASGI middleware: a request body past `limit` bytes gets 413, at once when its Content-Length says so,
    else as soon as the bytes counted on arrival pass the limit; the rest is never read. Without it,
    Starlette spools a multipart body whole (to disk) before a route can look at its size."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await JSONResponse({"error": _too_large()}, status_code=413)(scope, receive, send)
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # an HTTPException: FastAPI's body parsing passes it on, the handlers answer it
                raise HTTPException(413, _too_large())
            return message

        await self.app(scope, counted_receive, send)


class UploadSlots:
    """At most `size` images decoded, and the model run on them, at once, in worker threads.

    One more is refused with 503 and Retry-After at once rather than queued: a queue grows without bound
    under load, each waiting request holding its spooled upload and a connection, and its wait ends in
    the clients' timeouts; a refused client knows when to retry. The count is only touched on the event
    loop's thread, so it needs no lock."""

    def __init__(self, size: int):
        self.free = size

    async def run(self, work: Callable[[], T]) -> T:
        if self.free == 0:
            raise HTTPException(503, "busy with other images; retry in a moment", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.free -= 1
        try:
            return await run_in_threadpool(work)
        finally:
            self.free += 1


class ResultsPage(BaseModel):
    """Which results of a search: `top` of them after the first `offset`, of one category or subcategory."""

    top: int = Field(12, ge=1, le=MAX_RESULTS, description="How many results.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="How many results to skip: the page's start.")
    category: str | None = Field(None, max_length=200, description="Only products of this category.")
    subcategory: str | None = Field(None, max_length=200, description="Only products of this subcategory.")


def _found(result: SearchResult) -> dict:
    """A page of a search's products, each with its thumbnail's address (not its file: no path on
    the server's disk is shown); `more` when products past this page match too."""
    products = [
        {name: getattr(hit, name) for name in PRODUCT_HIT_FIELDS} | {"score": round(hit.score, 4), "thumbnail": f"/api/thumbnails/{hit.item}"}
        for hit in result.hits
    ]
    return {"query": result.query, "kind": result.kind, "offset": result.offset, "more": result.more, "results": products}


def _distinct(names: Iterable[str]) -> list[str]:
    """The names sorted, one of each ignoring case (as zero-shot labels must be): subcategories of two
    categories may share a name."""
    kept: dict[str, str] = {}
    for name in sorted(names):
        kept.setdefault(name.casefold(), name)
    return list(kept.values())


def _decoded_upload(data: bytes, name: str) -> Image.Image:
    """An upload as an upright RGB image: 413 past the pixel limit (checked from the header, before
    decoding), 415 when it is not an image."""
    try:
        return decode_image(data, name)
    except ImageTooLarge as error:
        raise HTTPException(413, str(error)) from None
    except FamevilError as error:
        raise HTTPException(415, f"{error} (JPEG, PNG or WebP expected)") from None


def create_app(catalogue: SearchSession, hosts: frozenset[str] | None = LOOPBACK_NAMES, upload_slots: int = UPLOAD_SLOTS) -> FastAPI:
    """The server's app. hosts: the Host names it answers to (allowed_hosts), None for any.

    Swagger UI's /docs is off: it loads its scripts from a CDN. The schema stays at /openapi.json."""
    app = FastAPI(
        title="famevil",
        description="Search a fashion catalogue by text or by an image and a change; caption and classify images.",
        docs_url=None,
        redoc_url=None,
    )
    index, model = catalogue.index, catalogue.model
    capabilities = model.capabilities()
    categories = catalogue.categories()
    # The tags a product's detail shows: its image scored zero-shot against the index's own
    # subcategories, encoded once here rather than on every request.
    labels = _distinct(name for names in categories.values() for name in names)
    label_set = model.label_set(labels) if labels and "zero_shot" in capabilities else None
    composed_missing = (
        f"{index.root} was built with a model without {TextGuidedRetrieval.title}: it answers {' and '.join(catalogue.searches)} search, "
        "not composed search; index the catalogue with a model that has it (a student) for composed search"
    )
    slots = UploadSlots(upload_slots)
    page_html = resources.files("famevil_cli").joinpath("static/index.html").read_text(encoding="utf-8")
    app.add_middleware(BodyLimit, limit=MAX_UPLOAD_BYTES + FORM_FIELDS_BYTES)
    app.add_middleware(Guard, hosts=hosts, headers=hardening_headers(page_html))  # added last: the outer one

    def require_item(item: int) -> None:
        if not 0 <= item < len(index):
            raise HTTPException(404, f"no item {item}: the catalogue holds items 0 to {len(index) - 1}")

    def paged(page: ResultsPage, **query) -> dict:
        filters = {"category": page.category or None, "subcategory": page.subcategory or None}  # an empty select is no filter
        return _found(catalogue.search(**query, top=page.top, offset=page.offset, **filters))

    def product_of(item: int) -> dict:
        """What the catalogue says of an item's product (its first view's row), and all its views."""
        product = int(index.product_of[item])
        described = index.products[product]
        return {name: described[name] for name in PRODUCT_FIELDS} | {"payload": described.get("payload", {}), "view_items": index.views[product]}

    def require_composed() -> None:
        if COMPOSED_SEARCH not in catalogue.searches:
            raise HTTPException(409, composed_missing)

    async def on_upload(image: UploadFile, work: Callable[[Image.Image], T]) -> T:
        """`work` on the decoded upload, in a worker thread: decoding and the model are CPU work that on
        the event loop would hold up every other request."""
        data, name = await image.read(), image.filename or "the upload"
        return await slots.run(lambda: work(_decoded_upload(data, name)))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and the router's own 404 and 405
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(FamevilError)
    async def famevil_error(request: Request, error: FamevilError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/api/info")
    def info() -> dict:
        """What this server's index holds and answers: its items and products, the searches it answers
        (text, similar, composed), its categories with their subcategories (the filters), and whether
        its model captions and tags images zero-shot."""
        return {
            "items": len(index),
            "products": len(index.products),
            "searches": list(catalogue.searches),
            "categories": categories,
            "captions": "caption" in capabilities,
            "zero_shot": label_set is not None,
            "composed_missing": None if COMPOSED_SEARCH in catalogue.searches else composed_missing,
        }

    @app.get("/api/search")
    def search_text(q: Annotated[str, Query(min_length=1, max_length=500)], page: Annotated[ResultsPage, Query()]) -> dict:
        """Text search: the products whose images are nearest to the words."""
        # A plain def, as every route without an upload: FastAPI runs it in its thread pool, off the event loop.
        return paged(page, text=q)

    @app.get("/api/items/{item}")
    async def describe(item: int) -> dict:
        """A catalogue item's product: its fields and views, the model's caption of the image (when it
        captions) and its zero-shot tags (the index's subcategories, most likely first, when it can)."""
        require_item(item)

        def answer() -> dict:
            image = index.image(item)
            caption = model.caption([image])[0] if "caption" in capabilities else None
            tags = [tag._asdict() for tag in model.zero_shot([image], label_set, top=TAGS)[0]] if label_set is not None else []
            return product_of(item) | {"item": item, "thumbnail": f"/api/thumbnails/{item}", "caption": caption, "tags": tags}

        return await slots.run(answer)

    @app.get("/api/items/{item}/similar")
    async def similar(item: int, page: Annotated[ResultsPage, Query()], modify: Annotated[str | None, Query(min_length=1, max_length=500)] = None) -> dict:
        """Products that look like a catalogue item; with `modify`, composed search: products like it,
        changed as the words say (only where the index answers composed search, else 409)."""
        require_item(item)
        if modify is not None:
            require_composed()
        return await slots.run(lambda: paged(page, item=item, modify=modify))

    @app.post("/api/search/similar")
    async def search_similar(image: Annotated[UploadFile, File()], page: Annotated[ResultsPage, Form()]) -> dict:
        """Products that look like an uploaded photo."""
        return await on_upload(image, lambda picture: paged(page, image=picture))

    @app.post("/api/search/composed")
    async def search_composed(
        image: Annotated[UploadFile, File()], modify: Annotated[str, Form(min_length=1, max_length=500)], page: Annotated[ResultsPage, Form()]
    ) -> dict:
        """Composed search from an uploaded reference image and a modification (only where the index
        answers composed search, else 409)."""
        require_composed()
        return await on_upload(image, lambda picture: paged(page, image=picture, modify=modify))

    @app.post("/api/caption")
    async def caption(image: Annotated[UploadFile, File()]) -> dict:
        return {"caption": await on_upload(image, lambda picture: model.caption([picture])[0])}

    @app.post("/api/classify")
    async def classify(
        image: Annotated[UploadFile, File()], text: Annotated[str, Form(max_length=2000)] = "", top: Annotated[int, Form(ge=1, le=50)] = 5
    ) -> dict:
        subcategories = await on_upload(image, lambda picture: model.classify([picture], [text], top=top)[0])
        return {"subcategories": [p._asdict() for p in subcategories]}

    @app.get("/api/thumbnails/{item}")
    def thumbnail(item: int) -> Response:
        require_item(item)
        return Response(index.thumbnail(item), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
