"""`multibox serve --model model.onnx`: the exported graph served through ONNX Runtime (threads not
spinning between requests) answers as the checkpoint does, within export's tolerance; /v1/model says
what runs; a classifier beside an .onnx is a one-line error."""

from __future__ import annotations

import pytest
import torch
from serve_helpers import Client, image_bytes

from multibox.errors import UserError
from multibox.jobs.export import export_job
from multibox.serving.predictor import Predictor
from tests.inference.test_onnx_localizer import assert_same_detections

pytest.importorskip("onnxruntime")
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def onnx_model(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-onnx") / "loc.onnx"
    export_job(checkpoints[0], "onnx", out)
    return out


@pytest.fixture(scope="module")
def onnx_predictor(onnx_model):
    return Predictor.from_checkpoints(onnx_model, device="cpu")


def test_onnx_served_without_spinning_and_described(onnx_predictor, onnx_model):
    options = onnx_predictor.localizer.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with Client(onnx_predictor) as client:
        info = client.get("/v1/model").json()
    loc = info["localizer"]
    assert (loc["file"], loc["format"], loc["backbone"], loc["image_size"], loc["num_boxes"]) == (
        onnx_model.name, "onnx", "tiny", 64, 16)
    assert loc["class_names"][0] == "rectangle" and info["device"] == "onnxruntime CPUExecutionProvider"


@pytest.mark.parametrize("query", ["", "?windows=multiscale", "?tile=50"])
def test_onnx_served_boxes_are_the_checkpoints(onnx_predictor, predictor, query):
    data = image_bytes(130, 90, seed=1)
    replies = []
    for served in (onnx_predictor, predictor):
        with Client(served) as client:
            reply = client.post(f"/v1/detect{query or '?'}&top_k=16", content=data, headers=PNG)
        assert reply.status_code == 200, reply.text
        replies.append((torch.tensor(reply.json()["boxes"]), torch.tensor(reply.json()["scores"])))
    assert_same_detections(replies[:1], replies[1:], 130)


def test_a_classifier_beside_an_onnx_is_refused(onnx_model, checkpoints):
    with pytest.raises(UserError, match="an .onnx localizer runs without a classifier"):
        Predictor.from_checkpoints(onnx_model, checkpoints[1], device="cpu")


def test_serve_picks_onnx_runtime_on_the_cpu_by_default(checkpoints, tmp_path):
    """`serve` without --backend: on the CPU the checkpoint is exported at start-up and ONNX Runtime serves
    it; torch when asked, with a classifier, or when the model already is an .onnx."""
    from multibox.jobs.serve import serving_model

    from importlib.util import find_spec

    loc, cls = checkpoints
    auto, runtime = serving_model(loc, None, "cpu", "auto", tmp_path)
    assert auto == tmp_path / "model.onnx" and auto.is_file()
    assert runtime == ("openvino" if find_spec("openvino") else "onnxruntime")  # the fastest installed
    assert Predictor.from_checkpoints(auto, device="cpu", runtime=runtime).info["device"].startswith(runtime)
    assert serving_model(loc, None, "cpu", "onnx", tmp_path / "r") == (tmp_path / "r" / "model.onnx", "onnxruntime")
    assert serving_model(loc, None, "cpu", "torch", tmp_path / "t")[0] == loc
    assert serving_model(loc, cls, "cpu", "auto", tmp_path / "c")[0] == loc  # a classifier needs the torch localizer
    assert serving_model(auto, None, "cpu", "auto", tmp_path / "o")[0] == auto
    with pytest.raises(UserError, match="--classifier"):
        serving_model(loc, cls, "cpu", "onnx", tmp_path / "x")
