"""`multibox detect`: boxes for image files, as OUT/detections.json and drawn images; with a
classifier, each box labelled and scored (§4.2.2).

Images stream through decoding (between network runs on a CPU, in threads beside a GPU), the network
and a writing thread
(:mod:`multibox.jobs.detect_stream`); each result is kept at once in OUT/detections.jsonl, so an
interrupted run is continued with ``resume`` (:mod:`multibox.jobs.detect_log`). An image that cannot be
read (corrupt, truncated, over the pixel limit) is named in one line on stderr, skipped, and listed in
OUT/skipped.json; the others are processed. Drawings are OUT/images/STEM.jpg (JPEG at quality 90, as
Ultralytics saves its predictions: 1.2 ms to encode a 640 px drawing where PNG took 24 ms, a third of the
bytes); inputs sharing a file stem (a/x.jpg, b/x.png) are told apart by their folder (a_x.jpg, b_x.jpg), then by a number; each
entry's "path" and "drawing" say which input and which picture belong together.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from multibox.engine.precision import resolve_device
from multibox.errors import Interrupted, UserError
from multibox.inference.detector import Detector
from multibox.inference.loading import is_onnx, load_localizer, refuse_onnx_classifier
from multibox.inference.localizer import Localizer
from multibox.inference.postprocess import check_options, fewest
from multibox.jobs import detect_log
from multibox.jobs.detect_log import model_identity
from multibox.jobs.detect_stream import READ_WORKERS, Predict, Sink, Staged, say, stream
from multibox.reports.plots import DRAW_CONF

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (sorted) in named directories; a missing path is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{item}: no such image file or directory")
    if not files:
        raise UserError(f"no images found in {' '.join(inputs)}")
    return files


def drawing_names(files: list[Path]) -> list[str]:
    """A distinct picture name per input: its stem; FOLDER_STEM where stems repeat; then _2, _3, ...
    (compared without case, as some file systems do)."""
    stems = Counter(p.stem for p in files)
    taken: set[str] = set()
    unique = []
    for path in files:  # a loop over files, not boxes
        name = path.stem if stems[path.stem] == 1 else f"{path.parent.name}_{path.stem}"
        candidate, n = name, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique


def detection_predictor(model_path: str | Path, classifier: str | Path | None, device: str, top_k: int,
                        windows: dict, mode: str, region: str | None, options: dict,
                        runtime: str = "onnxruntime") -> tuple[Predict, list[str] | None]:
    """(images -> per-image detection dicts, class names or None) for `detect`; windows: the
    Localizer's windows / tile / overlap / tta; options: min_score, iou, max_det. The localizer comes
    from :func:`multibox.inference.loading.load_localizer` (an .onnx runs in ONNX Runtime); the
    classifier, when given, is a torch checkpoint beside a checkpoint localizer; runtime: what runs an .onnx
    ("onnxruntime" or "openvino")."""
    refuse_onnx_classifier(model_path, classifier)
    staged = is_onnx(model_path) and resolve_device(device).type == "cpu"
    # staged: the network's threads must not spin, or they take the core the other stages run on
    localizer = load_localizer(model_path, device, **windows, runtime=runtime, spinning=not staged)
    if staged:
        return staged_predictor(localizer, top_k, options), None
    if classifier is not None:
        detector = Detector.from_checkpoints(model_path, classifier, resolve_device(device), top_k, mode, region,
                                             located=localizer)
        return lambda images: detector.detect_batch(images, **options), detector.class_names
    return lambda images: [{"boxes": b, "scores": s}
                           for b, s in localizer.predict_batch(images, top_k, **options)], None


def staged_predictor(localizer: Localizer, top_k: int, options: dict) -> Staged:
    """An exported localizer's predict in three stages (:class:`detect_stream.Staged`): the same
    detections as ``localizer.predict_batch(images, top_k, **options)``."""
    limit = fewest(top_k, options["max_det"])

    def finish(state: tuple, outputs: dict) -> list[dict]:
        return localizer.merge(outputs, *state[1:], limit, options["min_score"], options["iou"])

    return Staged(localizer.prepare, lambda state: localizer.forward_windows(state[0]), finish,
                  localizer.torch_threads)


def detect_args(model_path: str | Path, classifier: str | Path | None, top_k: int, spec: dict, mode: str,
                region: str | None, options: dict) -> dict:
    """What OUT/detect_args.json records: the model files and every option that changes the detections."""
    return {"model": model_identity(model_path),
            "classifier": None if classifier is None else model_identity(classifier), "top_k": top_k,
            "mode": mode, "region": region, **spec, **options}


def detect(model_path: str | Path, inputs: list[str], out_dir: str | Path, classifier: str | Path | None = None,
           top_k: int = 10, device: str = "auto", batch_size: int | None = None, draw: bool = True,
           multiscale: bool = False, mode: str = "voc", region: str | None = None, windows: str | None = None,
           tile: float | None = None, overlap: float = 0.2, min_score: float = 0.0, iou: float | None = None,
           max_det: int | None = None, tta: str | None = None, draw_conf: float = DRAW_CONF, resume: bool = False,
           exist_ok: bool = False, writers: list | Callable[[list[str] | None], list] | None = None,
           workers: int | None = None, runtime: str = "onnxruntime") -> Path:
    """`multibox detect`: OUT_DIR/detections.json (entries of :func:`multibox.inference.entries.detection_entry`
    plus "drawing"), built as it goes in OUT_DIR/detections.jsonl (:mod:`multibox.jobs.detect_log`), and
    with ``draw`` OUT_DIR/images/*.jpg (boxes scoring at least ``draw_conf``, small images upscaled).

    top_k: boxes kept per image from the localizer (after NMS at ``iou``, before the classifier);
    max_det: final detections per image (with a classifier: after scoring; alone: the same cap as
    top_k); min_score: the lowest score reported. windows / tile / overlap: what the localizer looks at
    (default: the checkpoint's, :mod:`multibox.inference.windows`); tta: test-time flips / rotations
    (:mod:`multibox.inference.tta`); multiscale: windows="multiscale" (§4.3). resume: continue the run
    in OUT_DIR (its images done are skipped; the options must be the same); exist_ok: start over in a
    folder holding a run. writers: annotation writers (``add(entry, path, width, height)``,
    ``close()``), or a function of the class names returning them; on resume the images already done are
    fed first. Unreadable images are named on stderr, skipped, and listed in OUT_DIR/skipped.json.
    batch_size: images per network run (default :func:`default_batch` of the device); workers: decoding
    threads (default :func:`default_workers` of the device); runtime: what runs an .onnx model,
    "onnxruntime" or "openvino" (faster per image on the CPU, but it compiles the model when it loads:
    0.7 s here, so it pays from a few hundred images on; README, Performance).
    """
    check_options(min_score, iou, top_k, max_det)
    check_draw_conf(draw_conf)
    files = expand_inputs(inputs)
    spec = {"windows": "multiscale" if multiscale else windows, "tile": tile, "overlap": overlap, "tta": tta}
    options = {"min_score": min_score, "iou": iou, "max_det": max_det}
    predict, names = detection_predictor(model_path, classifier, device, top_k, spec, mode, region, options, runtime)
    out = Path(out_dir)  # touched only once the models load
    done = detect_log.claim(out, detect_args(model_path, classifier, top_k, spec, mode, region, options), resume,
                            exist_ok)
    writers = (writers(names) if callable(writers) else list(writers)) if writers is not None else []
    feed_done(out, writers)
    todo = still_to_do(files, done)
    if draw:
        (out / "images").mkdir(exist_ok=True)
    with open(out / detect_log.JSONL, "a", encoding="utf-8") as log:
        sink = Sink(out, log, names, drawing_names(files), draw, draw_conf, writers)
        skipped = run_with_progress(todo, predict, sink, batch_size or default_batch(device),
                                    default_workers(device) if workers is None else workers,
                                    len(files) - len(todo))
    for writer in writers:
        writer.close()
    return finish(out, files, skipped)


def default_batch(device: str) -> int:
    """Images per network run: 16 on a GPU; 1 on a CPU, where a batched forward does not pay (issue 19:
    1.23x when serving on 2 cores) and 16 images at the default input cost 800 MB more (bench/detect_stream.py)."""
    return 16 if resolve_device(device).type == "cuda" else 1


def default_workers(device: str) -> int:
    """Decoding threads: READ_WORKERS beside a GPU; none on a CPU, whose cores the network's threads
    already keep busy, so the images are decoded between network runs: a decoding thread there takes a
    core from one of the network's threads mid-run, which then waits (2 cores, ONNX Runtime, 200 tiles:
    82-85 images/s decoding in turn, 79-81 with two threads)."""
    return READ_WORKERS if resolve_device(device).type == "cuda" else 0


def check_draw_conf(draw_conf: float) -> None:
    """draw_conf must be a score in [0, 1]."""
    if not 0 <= draw_conf <= 1:
        raise UserError(f"draw_conf: {draw_conf} is not a score in [0, 1]")


def feed_done(out: Path, writers: list) -> None:
    """Give the annotation writers the entries a resumed run already has (the JSONL, line by line)."""
    if not writers or not (out / detect_log.JSONL).is_file():
        return
    for _, entry in detect_log.complete_lines(out / detect_log.JSONL):
        for writer in writers:
            writer.add(entry, Path(entry["path"]), int(entry["width"]), int(entry["height"]))


def still_to_do(files: list[Path], done: Counter) -> list[tuple[int, Path]]:
    """(position, path) of the inputs not in ``done`` (an input given twice and done once is done once more)."""
    left, todo = Counter(done), []
    for index, path in enumerate(files):  # a loop over files
        if left[str(path)] > 0:
            left[str(path)] -= 1
        else:
            todo.append((index, path))
    return todo


def run_with_progress(todo: list[tuple[int, Path]], predict: Predict, sink: Sink, batch_size: int, workers: int,
                      already: int) -> list[dict]:
    """:func:`detect_stream.stream` under a progress bar over all inputs (``already`` done before); Ctrl-C
    becomes :class:`Interrupted` naming the JSONL and how many images it holds."""
    with tqdm(total=already + len(todo), initial=already, desc="detect", unit="image", file=sys.stderr,
              disable=None) as bar:
        try:
            return stream(todo, predict, sink, batch_size, workers, bar)
        except KeyboardInterrupt:
            raise Interrupted("Ctrl-C", sink.out / detect_log.JSONL, already + sink.written) from None


def finish(out: Path, files: list[Path], skipped: list[dict]) -> Path:
    """OUT/skipped.json and OUT/detections.json from the JSONL; a one-line note of the skipped files."""
    detect_log.write_skipped(out, skipped)
    count, left_out = detect_log.write_final(out, [str(p) for p in files])
    if left_out:  # a resumed run whose inputs lost files: said, not dropped in silence
        say(f"{left_out} line(s) of {out / detect_log.JSONL} are for files no longer among the inputs: "
            f"not in {detect_log.FINAL}")
    if count == 0:
        (out / detect_log.FINAL).unlink()
        raise UserError(f"none of the {len(files)} image(s) could be read (each is named above)")
    if skipped:
        say(f"{len(skipped)} of {len(files)} image(s) could not be read and were skipped: listed in "
            f"{out / detect_log.SKIPPED}")
    return out / detect_log.FINAL
