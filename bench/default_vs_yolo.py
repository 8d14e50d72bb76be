"""Issue 19's acceptance comparison: trained localizers against YOLO11n, one image at a time, same run.

Each tool with its defaults, through its Python API, on the same photos (default: trees-dev's 400 px
tiles), 2 threads, images/s of the fastest of 3 passes: ours at the input size the checkpoint was trained
with (``Localizer.predict``, top 100, NMS included), YOLO11n (built from its YAML: random weights, speed
only; Ultralytics' default imgsz 640, its pre- and post-processing included). Not a timed test: the
numbers move with the machine; the ratio within one run is what counts.

    PYTHONPATH=.bench-deps:src python bench/default_vs_yolo.py RUN/best.pt [OTHER/best.pt ...] [--onnx fp32|int8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from measure import interleaved_rates, yolo11n

from multibox.data.images import open_image
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint
from multibox.inference.loading import load_localizer
from multibox.jobs.export import export_job

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev" / "JPEGImages"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="multibox checkpoints (best.pt)")
    parser.add_argument("--images", default=str(TILES), help="folder of photos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", choices=["fp32", "int8"], help="also export each model and time ONNX Runtime (int8: both)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [open_image(p) for p in sorted(Path(args.images).glob("*.jpg"))]
    yolo = yolo11n(args.threads)
    if yolo is not None:
        reference = interleaved_rates({"YOLO11n": lambda im: yolo.predict(im, imgsz=640, verbose=False)}, images)["YOLO11n"]
        print(f"YOLO11n, imgsz 640: {reference:.1f} images/s")
    else:
        reference = None
        print("YOLO11n: ultralytics not installed (make bench installs it into .bench-deps)")
    for path in args.models:
        m = checkpoint_config(load_checkpoint(path)).model
        about = f"{m.image_size} px, stride {m.stride}, {m.conv_head} head"
        with tempfile.TemporaryDirectory() as tmp:
            backends = [("eager", path)]
            if args.onnx:  # what `multibox export` writes, run by `detect --model model.onnx`
                onnx = Path(tmp) / "model.onnx"
                export_job(path, "onnx", onnx, int8=args.onnx == "int8")
                backends.append(("ONNX Runtime", onnx))
                if args.onnx == "int8":
                    backends.append(("ONNX Runtime int8", onnx.with_suffix(".int8.onnx")))
            for name, model in backends:
                loc = load_localizer(model, "cpu")
                ours = interleaved_rates({name: lambda im: loc.predict(im, top_k=100)}, images)[name]
                ratio = f", {ours / reference:.2f}x YOLO11n" if reference else ""
                print(f"{path} {name} ({about}): {ours:.1f} images/s{ratio}", flush=True)


if __name__ == "__main__":
    main()
