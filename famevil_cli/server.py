"""`famevil serve`: an HTTP JSON API and one web page over a catalogue index, on FastAPI.

Every image the server shows comes from the index (thumbnails by item number); no path taken from a
request reaches the file system. Uploads are size-limited and must decode as images. A bad request
gets a 4xx with a JSON {"error": ...}; anything unexpected a 500 with the same shape, no traceback.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from data_specs.errors import FamevilError
from famevil.api import COMPOSED_SEARCH
from famevil.catalogue_index import Hit, read_image_and_hash
from famevil.serving import SearchSession

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a product photo; larger uploads get 413
MAX_RESULTS = 200


def _hits(hits: list[Hit]) -> list[dict]:
    return [{"rank": h.rank, "item": h.item, "path": h.path, "score": round(h.score, 4), "thumbnail": f"/api/thumbnails/{h.item}"} for h in hits]


async def _upload(image: UploadFile) -> Image.Image:
    """The uploaded file as an RGB image: 413 past the size limit, 415 when it is not an image."""
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise HTTPException(415, f"{image.filename or 'the upload'} is not an image (JPEG, PNG or WebP expected)") from None


def create_app(catalogue: SearchSession) -> FastAPI:
    app = FastAPI(title="famevil", description="Search a fashion catalogue by text or by an image and a change; caption and classify images.")
    index, model = catalogue.index, catalogue.model
    capabilities = model.capabilities()

    def item_image(item: int) -> Image.Image:
        """The catalogue item's own image when its file is still there unchanged, else its thumbnail:
        both are found through the index, never through the request."""
        if not 0 <= item < len(index):
            raise HTTPException(404, f"no item {item}: the catalogue holds items 0 to {len(index) - 1}")
        listed = index.items[item]
        try:
            image, digest = read_image_and_hash(Path(listed["path"]))
            if digest == listed["sha256"]:
                return image
        except (OSError, Image.DecompressionBombError):  # gone or changed: the thumbnail stands in
            pass
        return Image.open(io.BytesIO(index.thumbnail(item))).convert("RGB")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and the router's own 404 and 405
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(FamevilError)
    async def famevil_error(request: Request, error: FamevilError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({error.__class__.__name__})"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("famevil_cli").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/api/search")
    def search_text(q: Annotated[str, Query(min_length=1, max_length=500)], top: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 12) -> dict:
        """Text search: the catalogue images nearest to the words."""
        result = catalogue.search(text=q, top=top)
        return {"query": q, "kind": result.kind, "results": _hits(result.hits)}

    @app.get("/api/items/{item}")
    def describe(item: int) -> dict:
        """A catalogue item: its path, its caption and its most likely subcategories from the image alone."""
        image = item_image(item)
        answer: dict = {"item": item, "path": index.items[item]["path"], "thumbnail": f"/api/thumbnails/{item}"}
        answer["caption"] = model.caption([image])[0] if "caption" in capabilities else None
        answer["subcategories"] = [p._asdict() for p in model.classify([image], [""], top=3)[0]] if "classify" in capabilities else []
        return answer

    @app.get("/api/items/{item}/similar")
    def similar(item: int, modify: Annotated[str, Query(min_length=1, max_length=500)], top: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 12) -> dict:
        """Composed search from a catalogue item and how the wanted item differs from it."""
        query = model.compose([item_image(item)], [modify])[0]
        return {"query": f"item {item} + {modify!r}", "kind": COMPOSED_SEARCH, "results": _hits(index.search(COMPOSED_SEARCH, query, top))}

    @app.post("/api/search/composed")
    async def search_composed(
        image: Annotated[UploadFile, File()], modify: Annotated[str, Form(min_length=1, max_length=500)], top: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 12
    ) -> dict:
        """Composed search from an uploaded reference image and a modification."""
        query = model.compose([await _upload(image)], [modify])[0]
        return {"query": f"upload + {modify!r}", "kind": COMPOSED_SEARCH, "results": _hits(index.search(COMPOSED_SEARCH, query, top))}

    @app.post("/api/caption")
    async def caption(image: Annotated[UploadFile, File()]) -> dict:
        return {"caption": model.caption([await _upload(image)])[0]}

    @app.post("/api/classify")
    async def classify(
        image: Annotated[UploadFile, File()], text: Annotated[str, Form(max_length=2000)] = "", top: Annotated[int, Form(ge=1, le=50)] = 5
    ) -> dict:
        return {"subcategories": [p._asdict() for p in model.classify([await _upload(image)], [text], top=top)[0]]}

    @app.get("/api/thumbnails/{item}")
    def thumbnail(item: int) -> Response:
        if not 0 <= item < len(index):
            raise HTTPException(404, f"no item {item}")
        return Response(index.thumbnail(item), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
