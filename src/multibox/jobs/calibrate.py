"""After `train`: fit the score calibration of RUN/best.pt on the validation images (docs/quality.md).

The localizer that best.pt holds runs over the run's validation images (the val split, or the images
held out of the training split, at most data.val_images: :func:`multibox.data.build.validation_images`); each of its top 100
boxes per image is right or wrong by VOC's rule, and :func:`multibox.evaluation.calibration.fit_platt`
finds the z -> a z + b that makes its scores mean the share of right boxes. best.pt is rewritten
(atomically) with the fit inside the model, so `detect --conf 0.25`, the server and exported files
all use it; the ranking, and with it every detection rate and AP, is unchanged. Without validation
images the scores stay as trained, and a line says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from multibox.data.build import validation_images
from multibox.engine.checkpoint import (checkpoint_config, checkpoint_kind, load_checkpoint, model_from_checkpoint,
                                       save_checkpoint)
from multibox.evaluation.calibration import expected_calibration_error, fit_platt, outcomes, platt
from multibox.evaluation.scoring import dataset_targets, drop_unreadable
from multibox.inference.localizer import Localizer
from multibox.inference.predict import predict_dataset

MAX_DET = 100  # the boxes per image the fit sees: those users look at (AR@100, `--max-det`'s scale)


def calibrate_checkpoint(path: str | Path) -> dict | None:
    """Fit and store the calibration of the localizer in ``path`` (best.pt) on its run's validation
    images; returns {"scale", "bias", "ece_before", "ece_after", "boxes"}, or None when there is nothing
    to fit (no validation images; not a DeepMultiBox localizer)."""
    state = load_checkpoint(path)
    if checkpoint_kind(state) != "localizer" or checkpoint_config(state).model.kind != "localizer":
        return None
    model, run_cfg = model_from_checkpoint(state)
    dataset = validation_images(run_cfg)  # the images best.pt was chosen on
    if dataset is None or not len(dataset):
        print("calibration: no validation images, the scores stay as trained", file=sys.stderr)
        return None
    model.calibration.set(1.0, 0.0)  # fit on the raw logits (a resumed run's best.pt may hold an older fit)
    localizer = Localizer.for_config(model, run_cfg, "cpu")
    detections = predict_dataset(localizer, dataset, num_workers=0)
    _, detections, targets = drop_unreadable(dataset, detections, dataset_targets(dataset))
    scores, right = outcomes(detections, targets, MAX_DET)
    scale, bias = fit_platt(scores, right)
    model.calibration.set(scale, bias)
    state["model"] = model.state_dict()
    save_checkpoint(path, dict(state))
    after = platt(scores, scale, bias)
    report = {"scale": scale, "bias": bias, "boxes": int(len(scores)),
              "ece_before": expected_calibration_error(scores, right), "ece_after": expected_calibration_error(after, right)}
    print(f"calibration on {dataset.name} ({len(scores)} boxes): scores z -> {scale:.3g} z {bias:+.3g}; "
          f"expected calibration error {report['ece_before']:.3f} -> {report['ece_after']:.3f}", file=sys.stderr)
    return report
