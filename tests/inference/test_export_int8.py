"""`multibox export --int8`: an INT8 graph beside the float one (best.onnx -> best.int8.onnx), calibrated
on the checkpoint's training images or --calib DIR, that the ONNX localizer runs with boxes close to
the float graph's; its mistakes are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from torchvision.ops import box_iou

from multibox.cli import main
from multibox.inference.loading import load_localizer
from multibox.jobs.export import export_job
from tests.inference.test_onnx_localizer import conv_checkpoint, fc_checkpoint, images

pytest.importorskip("onnxruntime.quantization")

# Loose on purpose: int8 rounds every activation to 1/255 of its calibrated range, so a box moves by up
# to a pixel or two of the input and a confidence by a few thousandths (the float export's 0.5 px /
# 1e-3 bound is for float rounding only). What int8 costs a trained model is its detection rate, which
# `multibox evaluate --model best.int8.onnx` measures; here: the same objects are found.
MIN_IOU, SCORE_TOLERANCE = 0.9, 0.01


@pytest.mark.parametrize("make", [conv_checkpoint, fc_checkpoint], ids=["conv", "fc"])
def test_int8_export_runs_with_boxes_close_to_the_float_graphs(tmp_path, make):
    checkpoint, onnx = make(tmp_path)
    info = export_job(checkpoint, "onnx", onnx, int8=True)  # calibrated on the training split (synthetic)
    int8 = tmp_path / f"{onnx.stem}.int8.onnx"
    assert info["int8"]["path"] == str(int8) and int8.stat().st_size < onnx.stat().st_size
    sidecar = json.loads((tmp_path / f"{int8.name}.json").read_text())
    assert sidecar["calibration_images"] == 4 and sidecar["calibration"] == "synthetic train"
    floats, ints = load_localizer(onnx, "cpu"), load_localizer(int8, "cpu")
    assert ints.image_size == floats.image_size and ints.num_boxes == floats.num_boxes
    for (boxes, scores), (got, got_scores) in zip(floats.predict_batch(images(), 10), ints.predict_batch(images(), 10)):
        assert len(got) == len(boxes) == 10
        best = box_iou(boxes, got).max(1)  # each float box's closest int8 box
        assert best.values.min() >= MIN_IOU
        assert (got_scores[best.indices] - scores).abs().max() <= SCORE_TOLERANCE


def test_cli_int8_with_calibration_folder_and_its_mistakes(tmp_path, capsys):
    checkpoint, onnx = fc_checkpoint(tmp_path)
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    capsys.readouterr()
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(checkpoint), "--format", "onnx", "--out", str(out), "--int8",
                 "--calib", str(calib)]) == 0
    printed = capsys.readouterr().out
    assert f"int8: {tmp_path / 'm.int8.onnx'} (calibrated on 2 images of {calib}" in printed
    assert json.loads((tmp_path / "m.int8.onnx.json").read_text())["calibration_images"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, expected in (([f"--calib={empty}"], f"--calib {empty}: not a folder of images"),
                           (["--format", "torchscript"], "--int8: quantization writes ONNX")):
        argv = ["export", "--model", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "x.onnx"), "--int8"]
        assert main(argv + args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0]
