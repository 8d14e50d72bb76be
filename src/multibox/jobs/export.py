"""`multibox export`: write a trained localizer as ONNX or TorchScript (:mod:`multibox.inference.export`),
check the file against the eager model on what users consume (pixel boxes, probabilities), and describe
its contract in FILE.json beside it. The file appears only once it passed the check (atomic write)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from multibox.atomic import atomic_path, write_text_atomic
from multibox.config import EXPORT_FORMATS
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.errors import JobFailed, UserError
from multibox.inference.export import (
    BOX_TOLERANCE_PX,
    CONTRACT,
    NMS_IOU,
    SCORE_TOLERANCE,
    DecodedLocalizer,
    embed_metadata,
    export_metadata,
    export_onnx,
    export_torchscript,
    export_windows,
    load_exported,
    output_differences,
)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}


def export_path(model_path: str | Path, fmt: str, out: str | Path | None) -> Path:
    """``out``, or the checkpoint's path with the format's suffix (RUN/best.pt -> RUN/best.onnx, as
    Ultralytics writes beside the weights); a folder is an error (the file to write is asked for)."""
    model_path = Path(model_path)
    if out is None:
        stem = model_path / "best" if model_path.is_dir() else model_path.with_suffix("")
        return Path(f"{stem}{SUFFIXES[fmt]}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; name the file to write (e.g. {out / ('model' + SUFFIXES[fmt])})")
    return out


def export_job(model_path: str | Path, fmt: str, out: str | Path | None = None, opset: int = 17) -> dict:
    """`multibox export`: write OUT (default: beside the checkpoint) and OUT.json, checked against the
    eager model; returns the summary (with "file": the path written)."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    out = export_path(model_path, fmt, out)
    state = load_checkpoint(model_path)
    model, cfg = model_from_checkpoint(state)
    net, size = DecodedLocalizer(model).eval(), cfg.model.image_size
    out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=2, desc=f"export {fmt}", unit="stage", dynamic_ncols=True) as bar, atomic_path(out) as tmp:
        if fmt == "onnx":  # with what running it needs (multibox.inference.onnx_localizer) inside the file
            export_onnx(net, size, tmp, opset)
            embed_metadata(tmp, run_metadata(state, model, cfg))
        else:
            export_torchscript(net, size, tmp)
        bar.update(1)
        diffs = output_differences(net, load_exported(tmp, fmt), size)
        bar.update(1)
        check_differences(out, diffs)
    info = {"format": fmt, "file": out.name, "image_size": size, "num_boxes": model.num_boxes, "nms_iou": NMS_IOU,
            "windows": export_windows(cfg.model.windows), "backbone": cfg.model.backbone,
            "max_box_diff_px": diffs["boxes_px"], "max_score_diff": diffs["scores"], **CONTRACT}
    write_text_atomic(f"{out}.json", json.dumps(info, indent=1))
    return info | {"path": str(out)}


def run_metadata(state: dict, model, cfg) -> dict:
    """The metadata an .onnx carries (:func:`multibox.inference.export.export_metadata`) for this checkpoint."""
    counts = state.get("prior_match_counts", torch.zeros(model.num_boxes, dtype=torch.int64))
    return export_metadata(cfg.model.image_size, model.num_boxes, cfg.model.windows, cfg.to_dict(),
                           model.priors, counts)


def check_differences(out: Path, diffs: dict[str, float]) -> None:
    """The exported graph must give the eager model's boxes within BOX_TOLERANCE_PX input pixels and its
    probabilities within SCORE_TOLERANCE; otherwise nothing is written and the job fails in one line."""
    if not (diffs["boxes_px"] <= BOX_TOLERANCE_PX and diffs["scores"] <= SCORE_TOLERANCE):
        raise JobFailed(f"{out}: the exported graph differs from the eager model by {diffs['boxes_px']:.3g} px in "
                        f"boxes (tolerance {BOX_TOLERANCE_PX}) and {diffs['scores']:.3g} in scores (tolerance "
                        f"{SCORE_TOLERANCE}); not written")
