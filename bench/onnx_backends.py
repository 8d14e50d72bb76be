"""One trained localizer through each backend, one image at a time, same run: eager PyTorch (the
checkpoint), ONNX Runtime (FILE.onnx) and ONNX Runtime INT8 (FILE.int8.onnx), all through
:func:`multibox.inference.loading.load_localizer` and ``predict(top_k=100)`` (pre-processing, windows
and NMS included). Images/s of the fastest of 3 passes over ``--count`` images (trees-dev's tiles,
cycled; the backends take turns within a pass), after one warm-up call; torch and ONNX Runtime both
get ``--threads`` threads. Not a timed test: the numbers move with the machine and its load; the
ratios within one run are what counts. A second column times the network call alone on one window
(Localizer.network), which is all a backend changes.

    python bench/onnx_backends.py RUN/best.pt RUN/best.onnx RUN/best.int8.onnx [--count 20 --threads 2]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from measure import interleaved_rates

from multibox.data.images import open_image
from multibox.inference.loading import load_localizer
from multibox.inference.onnx_localizer import OnnxLocalizer, session_options

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trees-dev" / "JPEGImages"


def rates(predictors: list, images: list, passes: int = 3) -> list[float]:
    """Images/s of each predictor over ``images``, one at a time (:func:`measure.interleaved_rates`: the
    fastest of ``passes`` passes, the predictors taking turns within each pass)."""
    speeds = interleaved_rates(dict(enumerate(predictors)), images, passes)
    return [speeds[i] for i in range(len(predictors))]


def load(path: str, threads: int):
    """The localizer of ``path`` with ``threads`` threads for its network."""
    loc = load_localizer(path, "cpu")
    if isinstance(loc, OnnxLocalizer):  # the same session with the asked-for thread count
        import onnxruntime as ort

        loc.session = ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
    return loc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="checkpoint, .onnx, .int8.onnx (any of them)")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--images", default=str(TILES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(Path(args.images).glob("*.jpg"))
    images = [open_image(f) for f in itertools.islice(itertools.cycle(files), args.count)]
    print(f"{len(images)} images ({len(files)} files of {args.images}, cycled), {args.threads} threads, top 100")
    locs = [load(path, args.threads) for path in args.models]
    speeds = rates([lambda im, loc=loc: loc.predict(im, top_k=100) for loc in locs], images, args.passes)
    # the network alone on one prepared window: what the backends change, without decoding and NMS
    size = locs[0].image_size
    window = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        alone = rates([lambda x, loc=loc: loc.network(x) for loc in locs], [window] * len(images), args.passes)
    print(f"{'':>24}  {'':>13}  {'':>6}  predict (images/s)  network only (images/s)")
    for path, loc, speed, net in zip(args.models, locs, speeds, alone):
        print(f"{Path(path).name:>24}  {type(loc).__name__:>13}  S={loc.image_size}  {speed:6.2f} = {speed / speeds[0]:4.2f}x"
              f"       {net:6.2f} = {net / alone[0]:4.2f}x")

if __name__ == "__main__":
    main()
