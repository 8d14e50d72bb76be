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
import time
from pathlib import Path

import torch
from measure import yolo11n

from multibox.data.images import open_image
from multibox.engine.checkpoint import checkpoint_config, load_checkpoint
from multibox.inference.loading import load_localizer
from multibox.jobs.export import export_job

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev" / "JPEGImages"


def rate(predict, images: list, passes: int = 3) -> float:
    """Images/s of ``predict`` over ``images``, one at a time (fastest pass, after one warm-up call)."""
    predict(images[0])
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for image in images:
            predict(image)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


PAUSE_S = 0.5  # before each timed pass (interleaved_rates)


def interleaved_rates(predictors: dict, images: list, rounds: int = 3) -> dict:
    """{name: images/s} of each ``predictors[name]`` (image -> anything) over ``images``, measured in
    ``rounds`` rounds that each time one pass of every predictor in turn (after one warm-up call each),
    each credited with its fastest pass: a slower or faster spell of the machine falls on all sides
    alike, where timing one side after the other would give it to one of them. A pause before each pass
    lets the previous side's idle threads stop spinning (torch's OpenMP threads spin for a while after
    their last op and took cores from the ONNX Runtime pass after them)."""
    for predict in predictors.values():
        predict(images[0])
    best = dict.fromkeys(predictors, float("inf"))
    for _ in range(rounds):
        for name, predict in predictors.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            for image in images:
                predict(image)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(images) / seconds for name, seconds in best.items()}


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
        reference = rate(lambda im: yolo.predict(im, imgsz=640, verbose=False), images)
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
                ours = rate(lambda im: loc.predict(im, top_k=100), images)
                ratio = f", {ours / reference:.2f}x YOLO11n" if reference else ""
                print(f"{path} {name} ({about}): {ours:.1f} images/s{ratio}", flush=True)


if __name__ == "__main__":
    main()
