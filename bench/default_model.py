"""The model users get, against YOLO11n (issue 19's acceptance): the default trained on trees-dev's `train`
split (its data-chosen input), one 400 px tile at a time through the Python APIs, eager, ONNX Runtime and
ONNX Runtime int8 (what `multibox export --int8` writes and `detect --model model.onnx` runs), OpenVINO
where installed, and `multibox detect --model model.onnx` end to end on 200 tiles, beside YOLO11n
(built from its YAML: speed only) at Ultralytics' default imgsz 640, all in this one process, timed in
the same rounds after the training (each side's fastest pass), every side at the run's torch threads
(measure.yolo11n: Ultralytics otherwise drops the whole process to one thread on 2 cores, which is how
earlier versions of this table compared ours and YOLO11n at one thread each).

Training the model is part of the run (a few minutes on 2 cores), so the row is always the current
default. Skipped, with a line, when trees-dev or ultralytics is missing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from default_vs_yolo import TILES
from detect_stream import measure, tile_folder
from measure import Result, interleaved_rates, yolo11n

from multibox.config import Config
from multibox.data.images import open_image
from multibox.engine.trainer import train
from multibox.errors import UserError
from multibox.inference.loading import load_localizer
from multibox.jobs.export import export_job

TREES = TILES.parent


def trained_default(out: Path) -> Path:
    """`multibox train --data trees-dev --split train` with every default: its best.pt (or last.pt)."""
    cfg = Config()
    cfg.data.data, cfg.data.split, cfg.train.device = str(TREES), "train", "cpu"
    last = train(cfg, out)
    return out / "best.pt" if (out / "best.pt").is_file() else last


def run(threads: int) -> list[Result]:
    if not TILES.is_dir():
        print(f"  default model vs YOLO11n: skipped ({TREES} not found)")
        return []
    yolo = yolo11n(threads)
    if yolo is None:
        print("  default model vs YOLO11n: skipped (ultralytics not installed; make bench installs it)")
        return []
    images = [open_image(p) for p in sorted(TILES.glob("*.jpg"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = trained_default(Path(tmp) / "run")
        export_job(model, "onnx", Path(tmp) / "model.onnx", int8=True)
        size = Config.from_yaml(Path(tmp) / "run" / "config.yaml").model.image_size
        backends = {"eager": (model, 1.5), "ONNX Runtime": (Path(tmp) / "model.onnx", None),
                    "ONNX Runtime int8": (Path(tmp) / "model.int8.onnx", None)}
        locs = {name: load_localizer(path, "cpu") for name, (path, _) in backends.items()}
        # every side timed in the same rounds, after the training (measure.interleaved_rates)
        rates = interleaved_rates({"YOLO11n": lambda im: yolo.predict(im, imgsz=640, verbose=False)}
                                  | {name: (lambda im, loc=loc: loc.predict(im, top_k=100)) for name, loc in locs.items()},
                                  images)
        reference = rates["YOLO11n"]
        print(f"  YOLO11n at 640: {reference:.1f} images/s", flush=True)
        for name, (_, target) in backends.items():
            rows.append(Result(f"default on trees-dev ({size} px), {name}, 1 image at a time vs YOLO11n at 640",
                               rates[name], reference, "images/s", target))
            print(f"  {rows[-1].name}: {rates[name]:.1f} vs {reference:.1f} images/s", flush=True)
        rows += flops_row(model, size)
        rows += openvino_row(Path(tmp) / "model.onnx", images, yolo, reference, size)
        rows += detect_rows(Path(tmp) / "model.onnx", Path(tmp), reference)
    return rows


def flops_row(model_path: Path, size: int) -> list[Result]:
    """GFLOP of one forward pass at the trained input, and the head's share (torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(model_path))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    total = counter.get_total_flops()
    head = sum(n for name, ops in counter.get_flop_counts().items() if name.endswith(".head") for n in ops.values())
    print(f"  FLOPs: {total / 1e9:.2f} GFLOP per image, head {head / 1e9:.2f} ({100 * head / total:.0f} %)", flush=True)
    return [Result(f"default on trees-dev ({size} px): the head's GFLOP of the whole forward pass", head / 1e9,
                   total / 1e9, "GFLOP", percent=True)]


def openvino_row(onnx: Path, images: list, yolo, reference: float, size: int) -> list[Result]:
    """The same .onnx run by OpenVINO (what `serve` prefers on the CPU), where it is installed, timed in
    rounds with YOLO11n again (``reference``: its rate in the main rounds, kept if faster)."""
    try:
        loc = load_localizer(onnx, "cpu", runtime="openvino")
    except UserError as exc:
        print(f"  OpenVINO row: skipped ({exc})")
        return []
    rates = interleaved_rates({"YOLO11n": lambda im: yolo.predict(im, imgsz=640, verbose=False),
                               "OpenVINO": lambda im: loc.predict(im, top_k=100)}, images)
    ours, reference = rates["OpenVINO"], max(reference, rates["YOLO11n"])
    print(f"  OpenVINO: {ours:.1f} images/s", flush=True)
    return [Result(f"default on trees-dev ({size} px), OpenVINO, 1 image at a time vs YOLO11n at 640", ours, reference,
                   "images/s")]


def detect_rows(onnx: Path, tmp: Path, reference: float) -> list[Result]:
    """`multibox detect --model model.onnx --no-save` on 200 tiles, each run in a fresh process
    (bench/detect_stream.py), model alone and detect alternated twice, each credited with its faster run:
    against the model alone (target 80 %) and against YOLO11n (target 3x)."""
    folder = tile_folder(tmp, 200)
    runs = [measure(kind, str(onnx), folder, tmp / f"{kind}{i}", 1) for i in range(2) for kind in ("model", "detect")]
    alone, detect = (max((r for r in runs if r["kind"] == kind), key=lambda r: r["images_per_s"])
                     for kind in ("model", "detect"))  # each side's faster of two alternated runs
    runtime = detect["runtime"]  # what `detect` ran the .onnx with
    print(f"  detect --model model.onnx ({runtime}): {detect['images_per_s']:.1f} images/s, peak RSS "
          f"{detect['peak_rss_mb']:.0f} MB; model alone {alone['images_per_s']:.1f}", flush=True)
    return [Result(f"multibox detect --model model.onnx --no-save ({runtime}), 200 tiles, vs the model alone",
                   detect["images_per_s"], alone["images_per_s"], "images/s", 0.8, percent=True),
            Result(f"multibox detect --model model.onnx --no-save ({runtime}), 200 tiles, vs YOLO11n at 640",
                   detect["images_per_s"], reference, "images/s", 3.0)]
