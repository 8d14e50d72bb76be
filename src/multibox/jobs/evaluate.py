"""`multibox evaluate`: a localizer (or boxes from a file) on a split, scored against the proposal
baselines on the same images, with every report file written."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from multibox.config import Config
from multibox.data import DetectionDataset
from multibox.data.build import load_split
from multibox.data.splits import scoring_split_name
from multibox.data.unseen import class_ids, only_classes
from multibox.engine.run_dir import output_dir
from multibox.errors import UserError
from multibox.evaluation.baselines import BaselineInputs, baseline_detections, resolve_baselines
from multibox.evaluation.detection_files import read_detections, write_detections
from multibox.evaluation.calibration import calibration_metrics
from multibox.evaluation.scoring import dataset_targets, drop_unreadable, method_summary, score
from multibox.evaluation.voc import ClassAgnosticPR
from multibox.inference.loading import load_with_record
from multibox.inference.predict import predict_dataset
from multibox.reports.evaluation import write_report
from multibox.reports.prediction_grid import write_prediction_grid


def scored_split(cfg: Config, split: str | None, data: str | None = None) -> DetectionDataset:
    """The split to score: ``split``, or without one the test split when the data has it, else val, else
    the split training takes (data with one split: :mod:`multibox.data.splits`; the summary names it:
    dataset.name holds the split). An empty split is an error, not a report of zeros."""
    if split is None:
        split = scoring_split_name(data or cfg.data.data)
        dataset = load_split(cfg, split, data)
    else:
        dataset = load_split(cfg, split, data)
    if len(dataset) == 0:
        raise UserError(f"{dataset.name}: the {split} split has no images to score")
    return dataset


def evaluate(model_path: str | Path, out_dir: str | Path | None = None, data: str | None = None,
             split: str | None = None,
             device: str = "auto", batch_size: int = 32, *, baselines: str = "priors", num_boxes: int | None = None,
             seed: int = 0, multiscale: bool = False, classes: list[str] | None = None, windows: str | None = None,
             tile: float | None = None, overlap: float = 0.2, tta: str | None = None) -> dict:
    """`multibox evaluate --model`: the localizer on a split against proposal baselines.

    ``baselines``: "all", "none" or a comma list of :data:`multibox.evaluation.baselines.BASELINES`,
    given ``num_boxes`` boxes per image (default: the model's K) and ``seed`` (random baseline).
    windows / tile / overlap: what the localizer looks at (default: the checkpoint's, see
    :mod:`multibox.inference.windows`; tta: test-time flips / rotations, :mod:`multibox.inference.tta`); multiscale: windows="multiscale" (§4.3). classes: only objects of these classes count, the others
    are marked ignore (§4.4.2, :mod:`multibox.data.unseen`), and their class-agnostic PR is added.
    Writes OUT_DIR (default runs/evaluate, numbered) metrics.json, report.md, detection_rate.png,
    pr_curve.{json,png} and the model's detections.json; returns the metrics dict. ``split``: default
    test when the data has it, else val (:func:`scored_split`).
    """
    localizer, record = load_with_record(model_path, device, windows="multiscale" if multiscale else windows,
                                         tile=tile, overlap=overlap, tta=tta)  # a checkpoint, run folder or .onnx
    if record.config is None:
        raise UserError(f"{model_path}: an export without its training config (written before it was embedded); "
                        "export it again with `multibox export`")
    cfg, windows, k = record.config, localizer.windows, localizer.num_boxes
    dataset = scored_split(cfg, split, data)
    out_dir = output_dir(out_dir, "evaluate")
    detections = predict_dataset(localizer, dataset, batch_size, cfg.data.num_workers, progress=f"{dataset.name}")
    inputs = BaselineInputs(num_boxes or k, seed, record.priors, record.match_counts)
    source = {"method": "DeepMultiBox", "model": str(model_path), "nms_iou": localizer.nms_iou}  # the numbers depend on it
    targets = restrict_targets(dataset_targets(dataset), dataset, classes)
    return report_run(dataset, detections, k, source, out_dir, resolve_baselines(baselines, True), inputs,
                      targets=targets, extra=lambda dets, tgts: subset_metrics(dets, tgts, classes, windows))


def report_run(dataset: DetectionDataset, detections: list, max_k: int, source: dict, out_dir: str | Path,
               baseline_names: list[str], inputs, write_boxes: bool = True, targets: list[dict] | None = None,
               extra: Callable[[list, list], dict] | None = None) -> dict:
    """Score one method's per-image detections (None: unreadable image) and the named baselines on the
    same images; write the report files (and with ``write_boxes`` detections.json) to ``out_dir``.
    targets: the ground truth to score against (default: the dataset's); extra: more metrics entries
    from the readable images' (detections, targets)."""
    if write_boxes:
        write_detections(Path(out_dir) / "detections.json", dataset, detections)
    write_prediction_grid(dataset, detections, out_dir)  # OUT/val_pred.jpg: ground truth | prediction
    others = {name: baseline_detections(name, dataset, inputs) for name in baseline_names}
    targets = dataset_targets(dataset) if targets is None else targets
    skipped, detections, targets, *rest = drop_unreadable(dataset, detections, targets, *others.values())
    main = score(detections, targets, max_k, dataset.class_names)
    metrics = {"dataset": dataset.name, **source, "skipped_images": skipped, "max_boxes": max_k} | main.metrics
    scored = {name: score(dets, targets, inputs.num_boxes) for name, dets in zip(others, rest)}
    metrics["baselines"] = {name: method_summary(s) for name, s in scored.items()}
    metrics |= extra(detections, targets) if extra else {}
    metrics["calibration"] = calibration_metrics(detections, targets)
    curves = {metrics["method"]: main.pr_curve} | {f"{name} baseline": s.pr_curve for name, s in scored.items()}
    write_report(metrics, out_dir, curves)
    return metrics


def evaluate_detections(detections_path: str | Path, out_dir: str | Path | None = None, data: str | None = None,
                        split: str | None = None, *, cfg: Config | None = None, baselines: str = "none",
                        num_boxes: int | None = None, seed: int = 0) -> dict:
    """`multibox evaluate --detections`: boxes from any source (COCO results JSON or our
    detections.json) scored like a model's; no model, so no priors baseline.

    ``num_boxes``: the most boxes per image counted (default: the most any image has in the file);
    ``cfg``: the data options (synthetic sizes) when not the defaults.
    """
    dataset = scored_split(cfg or Config(), split, data)
    out_dir = output_dir(out_dir, "evaluate")
    loaded = read_detections(detections_path, dataset)
    say_unmatched(detections_path, loaded, dataset)
    max_k = num_boxes or max(len(d["scores"]) for d in loaded.detections) or 1
    source = {"method": Path(detections_path).name, "detections": str(detections_path),
              "unmatched_detections": loaded.unmatched,
              "images_without_detections": loaded.images_without_detections}
    names = resolve_baselines(baselines, have_model=False)
    # The boxes are the input file's: not written again (OUT_DIR may be where that file lives).
    return report_run(dataset, loaded.detections, max_k, source, out_dir, names, BaselineInputs(num_boxes or 100, seed),
                      write_boxes=False)


def say_unmatched(detections_path: str | Path, loaded, dataset: DetectionDataset) -> None:
    """On stderr: the file's entries that named no image, and the images the file has no entry for."""
    if loaded.unmatched:
        print(f"{detections_path}: {loaded.unmatched} entries name no image of {dataset.name} "
              f"(e.g. {', '.join(map(repr, loaded.unmatched_examples))}); left out of the evaluation", file=sys.stderr)
    if loaded.images_without_detections:
        print(f"{detections_path}: {loaded.images_without_detections} of {len(dataset)} images have "
              "no detections in the file (their objects count as missed)", file=sys.stderr)


def restrict_targets(targets: list[dict], dataset: DetectionDataset, classes: list[str] | None) -> list[dict]:
    """With ``classes`` (`evaluate --classes`), every object of another class is marked ignore (§4.4.2)."""
    if not classes:
        return targets
    return only_classes(targets, class_ids(list(dataset.class_names), classes, "classes"))


def subset_metrics(detections: list[dict], targets: list[dict], classes: list[str] | None, windows: str) -> dict:
    """The extra `evaluate` entries: "multiscale" (§4.3) or "windows": "tiles" when used;
    with ``classes``, the class-agnostic precision-recall on those classes' objects (Fig. 5)."""
    out: dict = {"multiscale": True} if windows == "multiscale" else {"windows": windows} if windows == "tiles" else {}
    if classes:
        pr = ClassAgnosticPR()
        pr.update(detections, targets)
        out |= {"classes": list(classes), "class_agnostic_pr": pr.compute()}
    return out
