"""`multibox baseline NAME`: one proposal baseline's boxes on a split, scored and reported like a model's."""

from __future__ import annotations

from pathlib import Path

from multibox.config import Config
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.engine.run_dir import output_dir
from multibox.errors import UserError
from multibox.evaluation.baselines import BaselineInputs, baseline_detections
from multibox.jobs.evaluate import report_run, scored_split


def run_baseline(name: str, out_dir: str | Path | None = None, data: str | None = None, split: str | None = None, *,
                 num_boxes: int = 100, model_path: str | Path | None = None, seed: int = 0,
                 cfg: Config | None = None) -> dict:
    """`multibox baseline NAME`: one proposal baseline's detections.json and report on a split.

    With ``model_path`` the data options come from the checkpoint (and ``priors`` uses its priors).
    ``out_dir``: default runs/baseline (numbered); ``split``: default test, else val.
    """
    inputs = BaselineInputs(num_boxes, seed)
    if model_path is not None:
        state = load_checkpoint(model_path)
        model, cfg = model_from_checkpoint(state)
        inputs.priors = model.priors.cpu()
        inputs.match_counts = state.get("prior_match_counts")
    elif name == "priors":
        raise UserError("the priors baseline needs a model (its checkpoint's priors)")
    dataset = scored_split(cfg or Config(), split, data)
    out_dir = output_dir(out_dir, "baseline")
    detections = baseline_detections(name, dataset, inputs)
    max_k = min(num_boxes, len(inputs.priors)) if name == "priors" else num_boxes
    source = {"method": f"{name} baseline", "baseline": name, "seed": seed}
    return report_run(dataset, detections, max_k, source, out_dir, [], inputs)
