"""The model users get, against YOLO11n (issue 19's acceptance): the default trained on trees-dev's `train`
split (its data-chosen input), one 400 px tile at a time through the Python APIs, eager, ONNX Runtime and
ONNX Runtime int8 (what `multibox export --int8` writes and `detect --model model.onnx` runs), beside YOLO11n
(built from its YAML: speed only) at Ultralytics' default imgsz 640, all in this one process.

Training the model is part of the run (a few minutes on 2 cores), so the row is always the current
default. Skipped, with a line, when trees-dev or ultralytics is missing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from default_vs_yolo import TILES, rate
from measure import Result

from multibox.config import Config
from multibox.data.images import open_image
from multibox.engine.trainer import train
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
    try:
        from ultralytics import YOLO
    except ImportError:
        print("  default model vs YOLO11n: skipped (ultralytics not installed; make bench installs it)")
        return []
    if not TILES.is_dir():
        print(f"  default model vs YOLO11n: skipped ({TREES} not found)")
        return []
    images = [open_image(p) for p in sorted(TILES.glob("*.jpg"))]
    yolo = YOLO("yolo11n.yaml")
    reference = rate(lambda im: yolo.predict(im, imgsz=640, verbose=False), images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = trained_default(Path(tmp) / "run")
        export_job(model, "onnx", Path(tmp) / "model.onnx", int8=True)
        size = Config.from_yaml(Path(tmp) / "run" / "config.yaml").model.image_size
        for name, path, target in (("eager", model, 1.5), ("ONNX Runtime", Path(tmp) / "model.onnx", 3.0),
                                   ("ONNX Runtime int8", Path(tmp) / "model.int8.onnx", None)):
            loc = load_localizer(path, "cpu")
            ours = rate(lambda im: loc.predict(im, top_k=100), images)
            rows.append(Result(f"default on trees-dev ({size} px), {name}, 1 image at a time vs YOLO11n at 640",
                               ours, reference, "images/s", target))
            print(f"  {rows[-1].name}: {ours:.1f} vs {reference:.1f} images/s", flush=True)
    return rows
