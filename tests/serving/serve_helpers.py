"""Helpers of the server tests: images as bytes, a ready TestClient, uvicorn on a free loopback port."""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import contextmanager

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="multibox[serve] is not installed")
from fastapi.testclient import TestClient

from multibox.serving.app import create_app

READY_TIMEOUT_S = 60  # a bound on waiting for the model to load, not a timed assertion


def image_bytes(width: int, height: int, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A width x height image with a few coloured rectangles, encoded as ``fmt``."""
    image = Image.new("RGB", (width, height), (90 + 20 * seed % 100, 120, 140))
    for i in range(3):
        x, y = (17 * (i + 1) * (seed + 1)) % max(1, width - 20), (23 * (i + 1)) % max(1, height - 20)
        image.paste((250, 40 * i, 30 * seed % 255), (x, y, x + 20, y + 15))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def wait_ready(get) -> None:
    """Poll GET /v1/health until it says ready."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if get("/v1/health").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the server never became ready")


@contextmanager
def Client(predictor, **options):
    """A ready TestClient of ``create_app(lambda: predictor, **options)``; server errors come back as 500s."""
    with TestClient(create_app(lambda: predictor, **options), raise_server_exceptions=False) as client:
        wait_ready(client.get)
        yield client


@contextmanager
def live_server(app):
    """uvicorn serving ``app`` in a thread on a free 127.0.0.1 port; yields the base URL."""
    import urllib.request

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def get(path: str):
        try:
            with urllib.request.urlopen(url + path, timeout=5) as reply:
                return type("Reply", (), {"status_code": reply.status})
        except OSError:
            return type("Reply", (), {"status_code": 0})

    try:
        wait_ready(get)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
