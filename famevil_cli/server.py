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
import io
import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Annotated, TypeVar

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from data_specs.errors import FamevilError
from famevil.api import COMPOSED_SEARCH
from famevil.catalogue_index import Hit
from famevil.data.images import ImageTooLarge, decode_image
from famevil.serving import SearchSession

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a product photo; larger requests get 413
FORM_FIELDS_BYTES = 64 * 1024  # the multipart framing and the text fields sent beside the image
MAX_RESULTS = 200
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


def _hits(hits: list[Hit]) -> list[dict]:
    return [{"rank": h.rank, "item": h.item, "path": h.path, "score": round(h.score, 4), "thumbnail": f"/api/thumbnails/{h.item}"} for h in hits]


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
    slots = UploadSlots(upload_slots)
    page_html = resources.files("famevil_cli").joinpath("static/index.html").read_text(encoding="utf-8")
    app.add_middleware(BodyLimit, limit=MAX_UPLOAD_BYTES + FORM_FIELDS_BYTES)
    app.add_middleware(Guard, hosts=hosts, headers=hardening_headers(page_html))  # added last: the outer one

    def require_item(item: int) -> None:
        if not 0 <= item < len(index):
            raise HTTPException(404, f"no item {item}: the catalogue holds items 0 to {len(index) - 1}")

    def item_image(item: int) -> Image.Image:
        """The catalogue item's own image when its file is still there unchanged, else its thumbnail:
        both are found through the index, never through the request."""
        original = index.original(item)
        if original is not None:
            try:
                return decode_image(original, index.items[item]["path"])
            except FamevilError:  # past the pixel limit, or unreadable: the thumbnail stands in
                pass
        return Image.open(io.BytesIO(index.thumbnail(item))).convert("RGB")

    def composed_hits(image: Image.Image, modify: str, top: int) -> list[dict]:
        return _hits(index.search(COMPOSED_SEARCH, model.compose([image], [modify])[0], top))

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

    @app.get("/api/search")
    def search_text(q: Annotated[str, Query(min_length=1, max_length=500)], top: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 12) -> dict:
        """Text search: the catalogue images nearest to the words."""
        # A plain def, as every route without an upload: FastAPI runs it in its thread pool, off the event loop.
        result = catalogue.search(text=q, top=top)
        return {"query": q, "kind": result.kind, "results": _hits(result.hits)}

    @app.get("/api/items/{item}")
    async def describe(item: int) -> dict:
        """A catalogue item: its path, its caption and its most likely subcategories from the image alone."""
        require_item(item)

        def answer() -> dict:
            image = item_image(item)
            found: dict = {"item": item, "path": index.items[item]["path"], "thumbnail": f"/api/thumbnails/{item}"}
            found["caption"] = model.caption([image])[0] if "caption" in capabilities else None
            found["subcategories"] = [p._asdict() for p in model.classify([image], [""], top=3)[0]] if "classify" in capabilities else []
            return found

        return await slots.run(answer)

    @app.get("/api/items/{item}/similar")
    async def similar(item: int, modify: Annotated[str, Query(min_length=1, max_length=500)], top: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 12) -> dict:
        """Composed search from a catalogue item and how the wanted item differs from it."""
        require_item(item)
        results = await slots.run(lambda: composed_hits(item_image(item), modify, top))
        return {"query": f"item {item} + {modify!r}", "kind": COMPOSED_SEARCH, "results": results}

    @app.post("/api/search/composed")
    async def search_composed(
        image: Annotated[UploadFile, File()], modify: Annotated[str, Form(min_length=1, max_length=500)], top: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 12
    ) -> dict:
        """Composed search from an uploaded reference image and a modification."""
        results = await on_upload(image, lambda picture: composed_hits(picture, modify, top))
        return {"query": f"upload + {modify!r}", "kind": COMPOSED_SEARCH, "results": results}

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
