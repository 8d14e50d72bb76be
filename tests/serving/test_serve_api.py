"""POST /v1/detect, /v1/health, /v1/model through FastAPI's TestClient: the schema, the options, every
bad input (a JSON one-line error, and the next request served), the token, and the same boxes as
`multibox detect`."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from PIL import Image
from serve_helpers import Client, image_bytes

from multibox.cli import main
from multibox.serving.app import create_app

PNG = {"content-type": "image/png"}


def post(client, data: bytes, query: str = "", headers: dict | None = None):
    return client.post(f"/v1/detect{query}", content=data, headers=headers or PNG)


def assert_entry(entry: dict, width: int, height: int, max_boxes: int, labelled: bool = False) -> None:
    """The detections.json entry schema: parallel per-box lists, pixel boxes inside the image."""
    per_box = {"boxes", "scores"} | ({"labels", "label_ids", "label_scores"} if labelled else set())
    keys = per_box | {"width", "height", "timing"}
    assert set(entry) == keys
    assert (entry["width"], entry["height"]) == (width, height)
    boxes = torch.tensor(entry["boxes"]).reshape(-1, 4)
    assert 0 < len(boxes) <= max_boxes and all(len(entry[k]) == len(boxes) for k in per_box)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 3] <= height).all() and (boxes[:, :2] <= boxes[:, 2:]).all()
    assert entry["scores"] == sorted(entry["scores"], reverse=True)
    assert entry["timing"]["total_ms"] >= entry["timing"]["inference_ms"] >= 0 and entry["timing"]["batch_size"] >= 1


def without_timing(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "timing"}


def test_health_model_and_page(client, checkpoints):
    assert client.get("/v1/health").json()["status"] == "ready"
    info = client.get("/v1/model").json()
    loc = info["localizer"]
    assert (loc["backbone"], loc["num_boxes"], loc["image_size"], loc["step"]) == ("tiny", 16, 64, 2)
    assert loc["training_data"] == "synthetic" and loc["class_names"][0] == "rectangle"
    assert loc["file"] == checkpoints[0].name and info["classifier"] is None
    assert str(checkpoints[0].parent) not in json.dumps(info)  # no server paths in the reply
    assert "multibox" in client.get("/").text and client.get("/static/app.js").status_code == 200
    assert "/v1/detect" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("path", ["/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/errors.py",
                                  "/static//etc/passwd", "/v1/detect/../../app.py"])
def test_no_request_reads_a_file_outside_the_page(client, path):
    reply = client.get(path)
    assert reply.status_code in (404, 405) and "import" not in reply.text and "root:" not in reply.text


def test_raw_body_and_multipart_give_the_same_entry(client):
    data = image_bytes(120, 80)
    raw = post(client, data, "?top_k=5")
    form = client.post("/v1/detect?top_k=5", files={"image": ("a.png", data, "image/png")})
    assert raw.status_code == form.status_code == 200
    assert_entry(raw.json(), 120, 80, 5)
    assert without_timing(raw.json()) == without_timing(form.json())
    jpeg = post(client, image_bytes(50, 90, "JPEG"), headers={"content-type": "image/jpeg"})
    webp = post(client, image_bytes(64, 64, "WEBP"), headers={"content-type": "image/webp"})
    assert_entry(jpeg.json(), 50, 90, 10)
    assert_entry(webp.json(), 64, 64, 10)


def test_top_k_and_min_score_select_a_prefix(client):
    data = image_bytes(100, 70)
    full = post(client, data, "?top_k=16").json()
    three = post(client, data, "?top_k=3").json()
    assert three["boxes"] == full["boxes"][:3] and three["scores"] == full["scores"][:3]
    cut = full["scores"][4]
    high = post(client, data, f"?top_k=16&min_score={cut}").json()
    assert min(high["scores"]) >= cut and high["boxes"] == full["boxes"][: len(high["boxes"])]
    none = post(client, data, "?min_score=1").json()
    assert none["boxes"] == [] and none["scores"] == []


@pytest.mark.parametrize("query", ["?windows=whole", "?windows=center", "?windows=multiscale",
                                   "?tile=40&overlap=0.25", "?windows=tiles&tile=50"])
def test_window_modes(client, query):
    reply = post(client, image_bytes(130, 90), query + "&top_k=8")
    assert reply.status_code == 200, reply.text
    assert_entry(reply.json(), 130, 90, 8)


def test_same_boxes_as_multibox_detect(client, checkpoints, tmp_path):
    """The server and `multibox detect` run the same Localizer: boxes agree to 1e-3 px."""
    cases = [((150, 100), "", []), ((90, 140), "?windows=multiscale", ["--multiscale"]),
             ((200, 120), "?tile=80", ["--tile", "80"])]
    for i, (size, query, flags) in enumerate(cases):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(image_bytes(*size, seed=i))
        out = tmp_path / f"det{i}"
        assert main(["detect", "--model", str(checkpoints[0]), "--out", str(out), "--top-k", "7", "--device", "cpu",
                     *flags, str(path)]) == 0
        [expected] = json.loads((out / "detections.json").read_text())
        served = post(client, path.read_bytes(), (query or "?") + "&top_k=7").json()
        assert (served["width"], served["height"]) == (expected["width"], expected["height"])
        assert len(served["boxes"]) == len(expected["boxes"]) > 0
        assert torch.allclose(torch.tensor(served["boxes"]), torch.tensor(expected["boxes"]), atol=1e-3, rtol=0)
        assert torch.allclose(torch.tensor(served["scores"]), torch.tensor(expected["scores"]), atol=1e-4, rtol=0)


def test_same_labelled_boxes_as_multibox_detect_with_a_classifier(labelling_predictor, checkpoints, tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(image_bytes(140, 100, seed=3))
    assert main(["detect", "--model", str(checkpoints[0]), "--classifier", str(checkpoints[1]), "--out",
                 str(tmp_path / "det"), "--top-k", "5", "--device", "cpu", str(path)]) == 0
    [expected] = json.loads((tmp_path / "det" / "detections.json").read_text())
    with Client(labelling_predictor) as client:
        served = post(client, path.read_bytes(), "?top_k=5").json()
    assert served["labels"] == expected["labels"] and served["label_ids"] == expected["label_ids"]
    assert len(served["boxes"]) == len(expected["boxes"]) > 0
    assert torch.allclose(torch.tensor(served["boxes"]), torch.tensor(expected["boxes"]), atol=1e-3, rtol=0)
    for key in ("scores", "label_scores"):
        assert torch.allclose(torch.tensor(served[key]), torch.tensor(expected[key]), rtol=1e-3, atol=0)


def test_classifier_on_and_off(labelling_predictor):
    with Client(labelling_predictor) as client:
        info = client.get("/v1/model").json()
        assert info["classifier"]["class_names"] == ["rectangle", "ellipse", "triangle", "diamond", "cross"]
        labelled = post(client, image_bytes(96, 64), "?top_k=4").json()
        assert_entry(labelled, 96, 64, 4, labelled=True)
        names = info["classifier"]["class_names"]
        assert all(names[i] == n for i, n in zip(labelled["label_ids"], labelled["labels"]))
        assert all(0 <= p <= 1 for p in labelled["label_scores"])
        # one row per box: the localizer's boxes, each once (never a box repeated per class)
        plain = post(client, image_bytes(96, 64), "?top_k=4&classifier=false").json()
        assert_entry(plain, 96, 64, 4)
        assert sorted(map(tuple, labelled["boxes"])) == sorted(map(tuple, plain["boxes"]))


def truncated_jpeg() -> bytes:
    data = image_bytes(200, 150, "JPEG")
    return data[: len(data) // 2]


def gif() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, "GIF")
    return buf.getvalue()


BAD_INPUTS = [  # (what, body, query, headers, status, words in the message)
    ("not an image", b"hello, not an image", "", PNG, 400, "not a readable image"),
    ("empty body", b"", "", PNG, 400, "empty"),
    ("truncated", truncated_jpeg(), "", {"content-type": "image/jpeg"}, 400, "truncated"),
    ("unsupported type", b"x", "", {"content-type": "text/plain"}, 415, "text/plain"),
    ("no type", b"x", "", {"content-type": ""}, 415, "not supported"),
    ("gif sent as png", gif(), "", PNG, 415, "GIF"),
    ("top_k 0", image_bytes(40, 40), "?top_k=0", PNG, 422, "top_k"),
    ("top_k text", image_bytes(40, 40), "?top_k=many", PNG, 422, "top_k"),
    ("min_score > 1", image_bytes(40, 40), "?min_score=2", PNG, 422, "min_score"),
    ("unknown windows", image_bytes(40, 40), "?windows=zoom", PNG, 422, "windows"),
    ("tiles without a size", image_bytes(40, 40), "?windows=tiles", PNG, 422, "tile"),
    ("unknown option", image_bytes(40, 40), "?topk=3", PNG, 422, "'topk'"),
    ("classifier without one", image_bytes(40, 40), "?classifier=true", PNG, 422, "no classifier"),
    ("form without image", None, "", None, 422, "'image'"),
    ("form part of another type", b"abc", "", None, 415, "text/csv"),
]


@pytest.mark.parametrize("what,body,query,headers,status,words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_one_line_json_error_and_the_server_goes_on(client, what, body, query, headers, status, words):
    if what == "form without image":
        reply = client.post("/v1/detect", files={"other": ("a.png", image_bytes(30, 30), "image/png")})
    elif what == "form part of another type":
        reply = client.post("/v1/detect", files={"image": ("a.csv", body, "text/csv")})
    else:
        reply = post(client, body, query, headers)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail and words in detail
    assert post(client, image_bytes(60, 40)).status_code == 200  # the next request is served normally


def test_pixel_and_byte_limits(predictor):
    with Client(predictor, max_pixels=100 * 100, max_bytes=5000) as client:
        big = post(client, image_bytes(120, 100))  # 12,000 pixels: refused from the header
        assert big.status_code == 413 and "12,000" in big.json()["detail"] and "decompression" in big.json()["detail"]
        noise = Image.effect_noise((90, 90), 80).convert("RGB")
        import io

        buf = io.BytesIO()
        noise.save(buf, "PNG")
        assert len(buf.getvalue()) > 5000
        declared = post(client, buf.getvalue())  # Content-Length over the limit: refused before reading
        assert declared.status_code == 413 and "5,000 bytes" in declared.json()["detail"]
        chunks = (buf.getvalue()[i : i + 1000] for i in range(0, len(buf.getvalue()), 1000))
        streamed = client.post("/v1/detect", content=chunks, headers=PNG)  # chunked: no Content-Length
        assert streamed.status_code == 413 and "over the limit" in streamed.json()["detail"]
        assert post(client, image_bytes(60, 40)).status_code == 200


def test_token_is_required_on_the_api_when_set(predictor):
    with Client(predictor, token="s3cret") as client:
        assert client.get("/v1/health").status_code == 200  # for probes; says nothing about the model
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert client.get("/v1/model", headers=headers).status_code == 401
            reply = post(client, image_bytes(40, 40), headers=PNG | headers)
            assert reply.status_code == 401 and "Bearer" in reply.json()["detail"]
        good = PNG | {"Authorization": "Bearer s3cret"}
        assert post(client, image_bytes(40, 40), headers=good).status_code == 200
        assert client.get("/v1/model", headers=good).status_code == 200
    with Client(predictor) as client:  # no token: open
        assert client.get("/v1/model").status_code == 200


def test_health_is_503_until_the_model_is_loaded(predictor):
    from fastapi.testclient import TestClient

    release = threading.Event()

    def slow_load():
        release.wait(30)
        return predictor

    with TestClient(create_app(slow_load)) as client:
        assert client.get("/v1/health").status_code == 503
        assert client.get("/v1/health").json()["status"] == "loading"
        assert post(client, image_bytes(40, 40)).status_code == 503
        release.set()
        from serve_helpers import wait_ready

        wait_ready(client.get)
        assert post(client, image_bytes(40, 40)).status_code == 200


def test_a_failed_load_is_reported_by_health():
    def broken():
        raise ValueError("runs/x/best.pt: not a multibox checkpoint")

    from fastapi.testclient import TestClient

    with TestClient(create_app(broken)) as client:
        for _ in range(200):
            body = client.get("/v1/health").json()
            if body["status"] != "loading":
                break
            threading.Event().wait(0.02)
        assert body == {"status": "failed", "detail": "runs/x/best.pt: not a multibox checkpoint"}
        assert "failed to load" in post(client, image_bytes(40, 40)).json()["detail"]
