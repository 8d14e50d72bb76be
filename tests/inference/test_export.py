"""`multibox export`: ONNX (run in ONNX Runtime) and TorchScript agree with the eager model within 1e-4
at batch sizes 1 and 3, and the numpy pre/post-processing shipped for deployments matches the library's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import nms as torchvision_nms

from multibox.inference import export
from multibox.jobs.export import export_job
from multibox.engine.checkpoint import save_checkpoint
from multibox.cli import main
from multibox.config import Config
from multibox.modeling.localizer import build_model
from multibox.inference.postprocess import postprocess
from multibox.data.transforms import crop_resize

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine two spin-waiting OpenMP threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def checkpoint(tmp_path, backbone: str = "tiny", size: int = 64, k: int = 16) -> tuple:
    """A checkpoint with a randomised head (a fresh head outputs the priors for every image)."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = backbone, size, k, 64
    torch.manual_seed(0)
    xy = torch.rand(k, 2) * 0.5
    model = build_model(backbone, torch.cat([xy, xy + 0.1 + torch.rand(k, 2) * 0.4], 1), None, 64, cfg.model.grid)
    torch.nn.init.normal_(model.head.loc.weight, std=0.2)
    torch.nn.init.normal_(model.head.conf.weight, std=0.5)
    calibrate_batchnorm(model, size)
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return path, model.eval(), size


def calibrate_batchnorm(model: torch.nn.Module, size: int) -> None:
    """Batch-norm statistics from a few random batches: with the initial ones (mean 0, variance 1)
    activations shrink layer by layer and every image gives nearly the same output."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(seed)))
    for m in norms:
        m.momentum = 0.1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_outputs_match_eager_at_batch_1_and_3(tmp_path, fmt):
    path, model, size = checkpoint(tmp_path)
    out = tmp_path / f"localizer.{fmt}"
    info = export_job(path, fmt, out)
    run = export.load_exported(out, fmt)
    for batch in (1, 3):
        noise = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        images = 0.2 * noise + torch.linspace(0, 0.8, batch).view(-1, 1, 1, 1)  # distinct images
        with torch.no_grad():
            eager = model(images)
        boxes, scores = run(images.numpy())
        assert boxes.shape == (batch, 16, 4) and scores.shape == (batch, 16)
        np.testing.assert_allclose(boxes, eager["pred_boxes"].numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(scores, eager["pred_logits"].sigmoid().numpy(), atol=TOLERANCE, rtol=0)
        assert np.ptp(boxes[:, :, 0], axis=0).max() > 1e-3 or batch == 1  # images give different boxes
    sidecar = json.loads((tmp_path / f"localizer.{fmt}.json").read_text())
    assert sidecar["image_size"] == size and sidecar["num_boxes"] == 16 and info["max_box_diff_px"] <= 0.5 and info["max_score_diff"] <= 1e-3


def test_onnx_export_of_a_torchvision_backbone_with_uneven_pooling(tmp_path):
    """mobilenet_v3_small at 96 px ends in a 3 x 3 map pooled to 4 x 4: the matrix pooling must be exact."""
    path, model, size = checkpoint(tmp_path, "mobilenet_v3_small", 96)
    out = tmp_path / "m.onnx"
    export_job(path, "onnx", out)
    images = torch.rand(3, 3, size, size)
    with torch.no_grad():
        eager = model(images)["pred_boxes"].numpy()
    np.testing.assert_allclose(export.load_exported(out, "onnx")(images.numpy())[0], eager, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("size_in,size_out", [((3, 3), (4, 4)), ((10, 7), (4, 4)), ((6, 6), (6, 6)), ((1, 5), (2, 3))])
def test_matrix_pooling_equals_adaptive_pooling(size_in, size_out):
    x = torch.randn(2, 5, *size_in)
    torch.testing.assert_close(export.MatrixAdaptivePool(size_in, size_out)(x),
                               torch.nn.functional.adaptive_avg_pool2d(x, size_out))


def test_nms_is_torchvisions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.uniform(0, 80, (60, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2))], 1).astype(np.float32)
        scores = rng.choice(np.linspace(0, 1, 15), 60).astype(np.float32)  # ties too
        expected = torchvision_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
        np.testing.assert_array_equal(export.nms(boxes, scores, 0.5), expected)


def test_numpy_pre_and_post_processing_match_the_library():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    pixels, crop = export.preprocess(image, 64, "center")
    np.testing.assert_array_equal(crop, [30, 0, 120, 90])
    np.testing.assert_allclose(pixels, crop_resize(image, crop, 64).numpy() / 255, atol=1e-7)
    whole, square = export.preprocess(image, 64)  # the default: padded to a square, as `detect` does
    np.testing.assert_array_equal(square, [0, 0, 150, 150])
    np.testing.assert_allclose(whole, crop_resize(image, square, 64).numpy() / 255, atol=1e-7)
    assert whole[:, 40:].max() == 0  # black below the 90-pixel-high image (rows >= 90 * 64 / 150)

    gen = torch.Generator().manual_seed(2)
    xy = torch.rand(1, 30, 2, generator=gen)
    outputs = {"pred_boxes": torch.cat([xy - 0.1, xy + torch.rand(1, 30, 2, generator=gen) * 0.5], -1),
               "pred_logits": torch.randn(1, 30, generator=gen)}
    expected = postprocess(outputs, torch.from_numpy(crop)[None], torch.tensor([[150.0, 90.0]]), 0.5, 10)[0]
    boxes, scores = export.detections(outputs["pred_boxes"][0].numpy(), outputs["pred_logits"][0].sigmoid().numpy(),
                                      crop, (150, 90), 0.5, 10)
    np.testing.assert_allclose(boxes, expected["boxes"].numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected["scores"].numpy(), atol=1e-6)
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 150 and boxes[:, [1, 3]].max() <= 90


def test_cli_export_and_its_mistakes(tmp_path, capsys):
    path, _, _ = checkpoint(tmp_path)
    assert main(["export", "--model", str(path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "vs the eager model: boxes within" in capsys.readouterr().out and (tmp_path / "m.pt").is_file()
    assert main(["export", "--model", str(path), "--format", "torchscript"]) == 0  # default: beside the checkpoint
    assert (tmp_path / "model.torchscript").is_file() and (tmp_path / "model.torchscript.json").is_file()
    capsys.readouterr()
    assert main(["export", "--model", str(path), "--format", "torchscript", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {tmp_path}: is a folder" in err[0]
    assert main(["export", "--model", str(tmp_path / "none.pt"), "--format", "onnx", "--out", "x.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such checkpoint" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["export", "--model", str(path), "--format", "tflite", "--out", "x"])
    assert exc.value.code == 2
