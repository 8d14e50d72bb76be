"""Dynamic batching: items gathered into one call, each request its own result (images of different
sizes and options arriving together), one failing item failing only itself."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from serve_helpers import image_bytes, live_server

from multibox.serving.app import create_app
from multibox.serving.batcher import Batcher
from multibox.serving.options import DetectOptions


def run_batcher(batcher: Batcher, items: list) -> list:
    """Submit every item before gathering starts (so batching is deterministic); results or exceptions."""

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit(item)) for item in items]
        await asyncio.sleep(0)  # every item is queued now
        batcher.start()
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return out

    return asyncio.run(main())


@pytest.mark.parametrize("max_batch,expected", [(8, [5]), (2, [2, 2, 1]), (1, [1, 1, 1, 1, 1])])
def test_waiting_items_are_gathered_up_to_max_batch(max_batch, expected):
    calls = []

    def square(items):
        calls.append(list(items))
        return [x * x for x in items]

    batcher = Batcher(square, max_batch, max_wait_ms=50)
    out = run_batcher(batcher, [1, 2, 3, 4, 5])
    assert [r for r, _, _ in out] == [1, 4, 9, 16, 25]  # each its own result, in its own order
    assert [len(c) for c in calls] == expected == batcher.batch_sizes
    assert [size for _, _, size in out] == [n for n in expected for _ in range(n)]
    assert all(waited >= 0 for _, waited, _ in out)


def test_a_failing_item_fails_only_its_own_request():
    def run(items):
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    out = run_batcher(Batcher(run, 8, 10), ["a", "bad", "c"])
    assert out[0][0] == "A" and out[2][0] == "C"
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad item"


def test_predictor_batch_equals_each_image_alone(predictor):
    """Images of different sizes and options in one run() get exactly their single-image entries."""
    images = [Image.open(io.BytesIO(image_bytes(w, h, seed=i))).convert("RGB")
              for i, (w, h) in enumerate([(120, 80), (50, 90), (200, 200), (64, 64), (300, 60)])]
    options = [DetectOptions(top_k=5), DetectOptions(top_k=2), DetectOptions(top_k=9, min_score=0.01),
               DetectOptions(windows="multiscale", top_k=4), DetectOptions(top_k=5)]
    together = predictor.run(images, options)
    for image, opt, entry in zip(images, options, together):
        [alone] = predictor.run([image], [opt])
        assert entry == alone
        assert (entry["width"], entry["height"]) == image.size and 0 < len(entry["boxes"]) <= opt.top_k


def test_concurrent_requests_of_different_sizes_share_a_pass_and_get_their_own_boxes(predictor):
    sizes = [(120, 80), (50, 90), (200, 200), (64, 64), (300, 60), (77, 133)]
    bodies = [image_bytes(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    expected = [predictor.run([Image.open(io.BytesIO(b)).convert("RGB")], [DetectOptions(top_k=6)])[0] for b in bodies]
    # a long wait, so that requests sent together are batched together however slow the machine is
    app = create_app(lambda: predictor, max_batch=len(sizes), max_wait_ms=2000)
    with live_server(app) as url:

        def send(body: bytes) -> dict:
            request = urllib.request.Request(f"{url}/v1/detect?top_k=6", data=body,
                                             headers={"Content-Type": "image/png"})
            with urllib.request.urlopen(request, timeout=60) as reply:
                return json.loads(reply.read())

        with ThreadPoolExecutor(len(bodies)) as pool:
            replies = list(pool.map(send, bodies))
    for reply, want in zip(replies, expected):
        assert {k: v for k, v in reply.items() if k != "timing"} == want  # its own boxes, not a neighbour's
    assert max(r["timing"]["batch_size"] for r in replies) > 1
