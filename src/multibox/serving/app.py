"""The FastAPI application of `multibox serve` (:func:`create_app`).

Routes (OpenAPI at /openapi.json, FastAPI's page at /docs):

* ``POST /v1/detect``: one image, as a multipart field ``image`` or a raw ``image/jpeg|png|webp`` body;
  options in the query string. Reply: :func:`multibox.inference.entries.detection_entry` (the schema of
  one entry of `multibox detect`'s detections.json) + ``timing``.
* ``GET /v1/health``: 200 once the model is loaded, 503 before (or if loading failed).
* ``GET /v1/model``: the checkpoints' backbone, K, input size, class names, training data and step.
* ``GET /``: the page (``static/``: choose or drop an image, boxes drawn, top-k and score sliders).

Every error is ``{"detail": "one line"}`` with its status (400, 401, 413, 415, 422, 503), never a
stack trace. With a token, the API (all of /v1 but health) needs ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile

from multibox.config import WINDOW_MODES
from multibox.data.images import DEFAULT_MAX_PIXELS
from multibox.serving.batcher import Batcher
from multibox.serving.options import MAX_TOP_K, DetectOptions
from multibox.serving.predictor import Predictor
from multibox.serving.upload import (
    DEFAULT_MAX_BYTES,
    FORM_TYPE,
    IMAGE_TYPES,
    Rejected,
    check_length,
    check_type,
    decode_image,
    read_limited,
)

STATIC = Path(__file__).parent / "static"
OPTION_NAMES = {"top_k", "min_score", "windows", "tile", "overlap", "classifier"}
DECODERS = 4  # images decoded at once: bounds the memory of concurrent large uploads

# The two ways to send an image, for the OpenAPI page (the body is read by hand, within the byte limit).
DETECT_BODY = {"requestBody": {"required": True, "content": {
    FORM_TYPE: {"schema": {"type": "object", "required": ["image"],
                           "properties": {"image": {"type": "string", "format": "binary"}}}},
    **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES}}}}


@dataclass
class ServerState:
    """What the routes share: the model once loaded (or why it failed), the batcher, the limits."""

    max_bytes: int
    max_pixels: int
    predictor: Predictor | None = None
    load_error: str | None = None
    batcher: Batcher | None = None
    decoders: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DECODERS))

    def ready(self) -> Predictor:
        """The loaded predictor, or 503."""
        if self.predictor is None:
            raise Rejected(503, f"the model failed to load: {self.load_error}" if self.load_error
                           else "the model is still loading")
        return self.predictor

    def run_batch(self, items: list[tuple[Image.Image, DetectOptions]]) -> list[dict]:
        """The batcher's work, in its worker thread."""
        return self.ready().run([image for image, _ in items], [opt for _, opt in items])


def one_line(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line: "top_k: Input should be ..."."""
    parts = [f"{err['loc'][-1]}: {err['msg']}" for err in exc.errors()]
    return "; ".join(parts) or "invalid request"


def add_error_handlers(app: FastAPI) -> None:
    """Every error a JSON {"detail": one line}; an unexpected one a 500 without its traceback."""

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_line(exc)}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server goes on"}, 500)


def token_check(token: str | None) -> Callable:
    """A dependency: with a token, 401 unless ``Authorization: Bearer TOKEN``."""

    def check(authorization: str | None = Header(None, description="Bearer TOKEN when the server has --token")):
        if token is not None and not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def detect_options(request: Request,
                   top_k: int = Query(10, ge=1, le=MAX_TOP_K, description="boxes kept (with a classifier: classified)"),
                   min_score: float = Query(0.0, ge=0, le=1, description="drop boxes scoring lower"),
                   windows: Literal[WINDOW_MODES] | None = Query(None, description="default: the model's"),
                   tile: float | None = Query(None, gt=0, description="tile side in pixels (implies windows=tiles)"),
                   overlap: float = Query(0.2, ge=0, lt=1, description="tiles' overlap, a share of their side"),
                   classifier: bool | None = Query(None, description="label the boxes (default: when one is loaded)"),
                   ) -> DetectOptions:
    """The query string -> DetectOptions; unknown names and inconsistent options are a 422."""
    unknown = sorted(set(request.query_params) - OPTION_NAMES)
    if unknown:
        raise Rejected(422, f"unknown option {unknown[0]!r}: expected {', '.join(sorted(OPTION_NAMES))}")
    windows = windows or ("tiles" if tile else None)
    if windows == "tiles" and not tile:
        raise Rejected(422, "windows=tiles needs tile (the tile side in pixels)")
    state: ServerState = request.app.state.serving
    has_classifier = state.ready().detector is not None
    if classifier and not has_classifier:
        raise Rejected(422, "classifier=true, but the server has no classifier loaded")
    return DetectOptions(top_k, min_score, windows, tile, overlap, has_classifier if classifier is None else classifier)


async def read_image(request: Request, state: ServerState) -> Image.Image:
    """The request's image: Content-Length and the body checked against the byte limit before any
    decoding, then decoded (in a thread, a few at a time) within the pixel limit."""
    kind = check_type(request.headers.get("content-type"))
    check_length(request.headers.get("content-length"), state.max_bytes)
    body = await read_limited(request.stream(), state.max_bytes)
    if kind == FORM_TYPE:
        body = await form_image(request, body)
    async with state.decoders:
        return await asyncio.to_thread(decode_image, body, state.max_pixels)


async def form_image(request: Request, body: bytes) -> bytes:
    """The file in a multipart body's ``image`` field, parsed from memory (the body is already limited)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1, max_fields=len(OPTION_NAMES)) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise Rejected(422, "the multipart body has no file field 'image'")
        part_type = upload.content_type or "application/octet-stream"
        if part_type != "application/octet-stream":
            check_type(part_type, form_allowed=False)
        return await upload.read()


def ms(seconds: float) -> float:
    """Seconds -> milliseconds with 2 decimals, for the reply's timing."""
    return round(seconds * 1000, 2)


def add_api(app: FastAPI, token: str | None) -> None:
    """The /v1 routes."""
    auth = [Depends(token_check(token))]

    @app.get("/v1/health", summary="ready (200) once the model is loaded, else 503")
    async def health(request: Request) -> JSONResponse:
        state: ServerState = request.app.state.serving
        if state.predictor is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "detail": state.load_error}, 503)
        return JSONResponse({"status": "ready", "batches": len(state.batcher.batch_sizes)})

    @app.get("/v1/model", dependencies=auth, summary="the served checkpoints and the server's limits")
    async def model(request: Request) -> dict:
        state: ServerState = request.app.state.serving
        limits = {"max_batch": state.batcher.max_batch, "max_wait_ms": state.batcher.max_wait * 1000,
                  "max_bytes": state.max_bytes, "max_pixels": state.max_pixels, "max_top_k": MAX_TOP_K}
        return state.ready().info | {"limits": limits}

    @app.post("/v1/detect", dependencies=auth, openapi_extra=DETECT_BODY,
              summary="boxes of one image: the schema of one entry of `multibox detect`'s detections.json")
    async def detect(request: Request, options: Annotated[DetectOptions, Depends(detect_options)]) -> dict:
        state: ServerState = request.app.state.serving
        start = time.perf_counter()
        image = await read_image(request, state)
        decoded = time.perf_counter()
        entry, waited, batch_size = await state.batcher.submit((image, options))
        done = time.perf_counter()
        return entry | {"timing": {"decode_ms": ms(decoded - start), "wait_ms": ms(waited),
                                   "inference_ms": ms(done - decoded - waited), "total_ms": ms(done - start),
                                   "batch_size": batch_size}}


def add_page(app: FastAPI) -> None:
    """The page at / and its files at /static (shipped in the package, nothing from the internet)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def create_app(load: Callable[[], Predictor], max_batch: int = 8, max_wait_ms: float = 5.0,
               token: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """The application. ``load`` builds the Predictor; it runs in a thread once the server starts, and
    /v1/health says ready when it has returned. max_batch / max_wait_ms: the batching (1 / 0: one
    request at a time); token: required as ``Authorization: Bearer TOKEN`` on the API when given;
    max_bytes / max_pixels: the request body and decoded image limits."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServerState(max_bytes, max_pixels)
        state.batcher = Batcher(state.run_batch, max_batch, max_wait_ms)
        app.state.serving = state
        state.batcher.start()
        loading = asyncio.create_task(load_in_background(state, load))
        yield
        loading.cancel()
        await state.batcher.stop()

    app = FastAPI(title="multibox serve", version="1", lifespan=lifespan, redoc_url=None,
                  description="DeepMultiBox boxes (Erhan et al., CVPR 2014) of uploaded images.")
    add_error_handlers(app)
    add_api(app, token)
    add_page(app)
    return app


async def load_in_background(state: ServerState, load: Callable[[], Predictor]) -> None:
    """Load the model without blocking the server; a failure is kept for /v1/health (one line)."""
    try:
        state.predictor = await asyncio.to_thread(load)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported, not raised into the server
        state.load_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
