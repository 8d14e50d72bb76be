"""Localizer inference speed against torchvision's mobile detectors, on this machine's CPU.

Ours: MultiBox with the mobilenet_v3_large backbone, K = 100, hidden 1024, at 320 px (the input
size of both references) and at 220 px (the paper's §4.2.2 and our default), run eagerly in PyTorch
and in ONNX Runtime (exported with `multibox export`'s code). References: torchvision's
``ssdlite320_mobilenet_v3_large`` and ``fasterrcnn_mobilenet_v3_large_320_fpn`` (weights=None,
weights_backbone=None: speed does not depend on the weights), eager PyTorch (their ONNX export
needs model-specific work and is not measured).

Eager models run in both memory layouts, contiguous (NCHW) and channels_last (NHWC, which oneDNN's
CPU convolutions prefer), and each side is credited with its faster layout (named in the table).
Every side is timed end to end from a batch of preprocessed float images [B, 3, 320, 320] (ours
at 220 px gets [B, 3, 220, 220]) to per-image boxes: ours includes the sigmoid, NMS at 0.5 and
the top 10; the references include their own transform (resize, normalise) and post-processing as
torchvision ships them.

The default model (the separable conv head on EfficientNet-Lite0's fused stride-8/16 features, at stride 16,
whole image, NMS 0.5, top 100) is timed at batch 1 and 320 px against SSDlite320 (target: at least its speed), Ultralytics'
YOLO11n built from its YAML (random weights: speed only; measured when the bench-only ``ultralytics``
package is installed) and OpenCV's selective search (fast mode).

    PYTHONPATH=src python bench/inference_speed.py [--threads N]
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

from measure import Result, fastest
from measure import yolo11n as ready_yolo11n
from measure import main as bench_main

from multibox.config import ModelConfig
from multibox.inference import export
from multibox.modeling.localizer import build_grid_model, build_model
from multibox.inference.postprocess import postprocess

BATCHES = (1, 32)
K = 100


def ours_model(size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    xy = torch.rand(K, 2) * 0.6
    return build_model("mobilenet_v3_large", torch.cat([xy, xy + 0.1 + torch.rand(K, 2) * 0.3], 1), None, 1024, 4).eval()


def in_layout(model: torch.nn.Module, layout: str) -> tuple[torch.nn.Module, torch.memory_format]:
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return model.to(memory_format=memory_format), memory_format


def eager_ours(model: torch.nn.Module, size: int, layout: str) -> Callable[[torch.Tensor], list]:
    """images Tensor[B, 3, S, S] -> B (boxes, scores) after NMS and top-10, in PyTorch."""
    model, memory_format = in_layout(model, layout)

    def run(images: torch.Tensor) -> list:
        b = len(images)
        images = images.contiguous(memory_format=memory_format)
        crops = torch.tensor([[0.0, 0.0, size, size]]).expand(b, 4)
        return postprocess(model(images), crops, torch.tensor([[size, size]], dtype=torch.float32).expand(b, 2), 0.5, 10)

    return run


def onnx_ours(model: torch.nn.Module, size: int, threads: int, folder: Path) -> Callable[[torch.Tensor], list]:
    """The same through ONNX Runtime, with the numpy post-processing shipped in multibox.export."""
    import onnxruntime as ort

    path = folder / f"ours{size}.onnx"
    export.export_onnx(export.DecodedLocalizer(model), size, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    crop = np.array([0, 0, size, size], np.float32)

    def run(images: torch.Tensor) -> list:
        boxes, scores = session.run(["boxes", "scores"], {"images": images.numpy()})
        return [export.detections(b, s, crop, (size, size), 0.5, 10) for b, s in zip(boxes, scores)]

    return run


def torchvision_detector(name: str, layout: str) -> Callable[[torch.Tensor], list]:
    """The detector as shipped (its transform resizes, normalises and batches the list of images);
    channels_last applies to its weights, and the convolutions carry it to their outputs."""
    model, _ = in_layout(torchvision.models.get_model(name, weights=None, weights_backbone=None).eval(), layout)
    return lambda images: model(list(images))


def images_per_s(run: Callable[[torch.Tensor], list], batch: int, size: int) -> float:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    repeats = 10 if batch == 1 else 3  # fastest of many: the machine may be shared; a batch of 32 takes seconds
    with torch.inference_mode():
        return batch / fastest(lambda: run(images), repeats=repeats)


def best_layout(make: Callable[[str], Callable], batch: int, size: int) -> tuple[float, str]:
    """(images/s, layout) of the faster memory layout of an eager model."""
    return max((images_per_s(make(layout), batch, size), layout) for layout in LAYOUTS)


LAYOUTS = ("contiguous", "channels_last")
REFERENCES = {"SSDlite320": "ssdlite320_mobilenet_v3_large", "Faster R-CNN 320": "fasterrcnn_mobilenet_v3_large_320_fpn"}


def measure(threads: int) -> dict[tuple[str, int], tuple[float, str]]:
    """(images/s, how) of every (side, batch)."""
    rates: dict[tuple[str, int], tuple[float, str]] = {}

    def note(key: tuple[str, int], value: tuple[float, str]) -> None:
        rates[key] = value
        print(f"  {key[0]:24s} batch {key[1]:2d}: {value[0]:8.2f} images/s ({value[1]})", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for size in (320, 220):
            model = ours_model(size)
            for b in BATCHES:
                note((f"ours {size}px eager", b), best_layout(lambda layout: eager_ours(model, size, layout), b, size))
            run = onnx_ours(model.to(memory_format=torch.contiguous_format), size, threads, Path(tmp))
            for b in BATCHES:
                note((f"ours {size}px ONNX Runtime", b), (images_per_s(run, b, size), "ORT"))
    for short, name in REFERENCES.items():
        for b in BATCHES:
            note((short, b), best_layout(lambda layout: torchvision_detector(name, layout), b, 320))
    return rates


def default_model(size: int) -> torch.nn.Module:
    """The default localizer as `train` builds it (model config's defaults: the separable conv head, 256
    channels, 3 layers, on EfficientNet-Lite0's fused stride-8/16 features), random head, at stride 16:
    what the data rule gives where objects are large enough for ``size`` (stride 8, for small objects
    such as trees-dev's crowns, is default_model.py's row of the model trained there)."""
    cfg = ModelConfig()
    torch.manual_seed(0)
    return build_grid_model(cfg.backbone, torch.tensor([[24.0, 24], [48, 48], [80, 72], [120, 128]]), size,
                            levels=cfg.levels, stride=16, hidden=cfg.conv_hidden, depth=cfg.conv_depth,
                            head=cfg.conv_head).eval()


def eager_default(model: torch.nn.Module, size: int, layout: str) -> Callable[[torch.Tensor], list]:
    """images -> boxes of the default localizer, whole image, NMS 0.5, top 100."""
    model, memory_format = in_layout(model, layout)

    def run(images: torch.Tensor) -> list:
        b = len(images)
        crops = torch.tensor([[0.0, 0.0, size, size]]).expand(b, 4)
        return postprocess(model(images.contiguous(memory_format=memory_format)), crops,
                           torch.tensor([[size, size]], dtype=torch.float32).expand(b, 2), 0.5, 100)

    return run


def yolo11n(size: int) -> Callable[[torch.Tensor], list] | None:
    """Ultralytics' YOLO11n (measure.yolo11n: random weights, at this process's torch threads), its own
    NMS; None when the bench-only dependency is missing (pip install ultralytics)."""
    model = ready_yolo11n(torch.get_num_threads())
    if model is None:
        print("  YOLO11n: skipped (pip install ultralytics to measure it)", flush=True)
        return None
    return lambda images: model.predict(images, imgsz=size, verbose=False, device="cpu")


def selective_search(size: int) -> Callable[[torch.Tensor], list] | None:
    """OpenCV's selective search (fast mode) on each image; None without opencv-contrib."""
    try:
        import cv2
    except ImportError:
        return None

    def run(images: torch.Tensor) -> list:
        out = []
        for image in images:  # one segmentation per image
            ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
            ss.setBaseImage(np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)))
            ss.switchToSelectiveSearchFast()
            out.append(ss.process()[:100])
        return out

    return run


def default_rows(size: int = 320) -> list[Result]:
    """The default model at batch 1 against SSDlite320 (target: at least its speed), YOLO11n and selective search."""
    ours, how = best_layout(lambda layout: eager_default(default_model(size), size, layout), 1, size)
    ssd, ssd_how = best_layout(lambda layout: torchvision_detector(REFERENCES["SSDlite320"], layout), 1, size)
    rows = [Result(f"inference, default model (stride 16) {size}px ({how}) vs SSDlite320 ({ssd_how}), batch 1", ours, ssd, "images/s", 1.0)]
    for name, make in (("YOLO11n", yolo11n), ("selective search (fast)", selective_search)):
        run = make(size)
        if run is not None:
            rate = images_per_s(run, 1, size)
            rows.append(Result(f"inference, default model (stride 16) {size}px vs {name}, batch 1", ours, rate, "images/s"))
    return rows


def run(threads: int) -> list[Result]:
    """Table rows: each of our variants against SSDlite (target 3x) and Faster R-CNN, per batch size,
    and the default model against SSDlite320, YOLO11n and selective search."""
    rates = measure(threads)
    rows = default_rows(320) + default_rows(640)  # the default architecture at both of YOLO's usual inputs
    for (name, b), (rate, how) in rates.items():
        if not name.startswith("ours"):
            continue
        for short, target in (("SSDlite320", 3.0), ("Faster R-CNN 320", None)):
            ref, ref_how = rates[short, b]
            rows.append(Result(f"inference, {name} ({how}) vs {short} ({ref_how}), batch {b}", rate, ref, "images/s",
                               target))
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__, ".2f", "{:.2f}x")
