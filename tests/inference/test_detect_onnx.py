"""`multibox detect --model model.onnx`: the file `export` writes runs through ONNX Runtime or OpenVINO (via
:func:`multibox.inference.loading.load_localizer`) and gives the checkpoint's detections within export's
tolerance; a classifier beside an .onnx is one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures.models import tiny_config
from PIL import Image

from multibox.cli import main
from multibox.engine.trainer import train
from multibox.inference.export import BOX_TOLERANCE_PX, SCORE_TOLERANCE
from multibox.jobs.export import export_job

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, .onnx) of a 2-step tiny localizer (64 px input, K = 16)."""
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = train(tiny_config(), folder / "loc")
    export_job(checkpoint, "onnx", folder / "model.onnx")
    return checkpoint, folder / "model.onnx"


def detections(model, images, out, capsys, *more: str) -> list[dict]:
    code = main(["detect", "--model", str(model), "--out", str(out), "--device", "cpu", "--top-k", "16", "--no-save",
                 *more, *map(str, images)])
    assert code == 0, capsys.readouterr().err
    return json.loads((out / "detections.json").read_text())


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_detect_runs_an_onnx_as_its_checkpoint(exported, tmp_path, capsys, runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    checkpoint, onnx = exported
    images = []
    for i, size in enumerate([(96, 64), (64, 64), (120, 90)]):
        images.append(tmp_path / f"{i}.png")
        Image.effect_noise(size, 40 + 20 * i).convert("RGB").save(images[-1])
    want = detections(checkpoint, images, tmp_path / "pt", capsys)
    got = detections(onnx, images, tmp_path / "onnx", capsys, "--runtime", runtime)
    assert [e["path"] for e in got] == [e["path"] for e in want] == [str(p) for p in images]
    for g, w in zip(got, want):
        boxes, ref = torch.tensor(g["boxes"]), torch.tensor(w["boxes"])
        assert boxes.shape == ref.shape and len(ref) > 0
        tolerance = BOX_TOLERANCE_PX * max(g["width"], g["height"]) / 64 + 0.01  # input pixels, + JSON rounding
        near = ((boxes[:, None] - ref[None]).abs().amax(-1) <= tolerance) & (
            (torch.tensor(g["scores"])[:, None] - torch.tensor(w["scores"])[None]).abs() <= 2 * SCORE_TOLERANCE)
        assert near.any(0).all() and near.any(1).all()  # as sets: equal scores may swap places


def test_a_classifier_beside_an_onnx_is_one_line(exported, tmp_path, capsys):
    _, onnx = exported
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    code = main(["detect", "--model", str(onnx), "--classifier", str(tmp_path / "cls.pt"), "--out", str(tmp_path / "d"),
                 str(tmp_path / "a.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "classifier" in err
    assert not (tmp_path / "d").exists()  # refused before the output folder is touched

