"""`multibox export`: write a trained localizer as ONNX or TorchScript (:mod:`multibox.inference.export`),
check the file against the eager model, and describe its contract in FILE.json beside it."""

from __future__ import annotations

import json
from pathlib import Path

from multibox.config import EXPORT_FORMATS
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.errors import UserError
from multibox.inference.export import (CONTRACT, NMS_IOU, VERIFY_TOLERANCE, DecodedLocalizer, export_onnx,
                                       export_torchscript, load_exported, max_difference)


def export_job(model_path: str | Path, fmt: str, out: str | Path, opset: int = 17) -> dict:
    """`multibox export`: write OUT (and OUT.json), check it against the eager model, return the summary."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    model, cfg = model_from_checkpoint(load_checkpoint(model_path))
    net, size, out = DecodedLocalizer(model).eval(), cfg.model.image_size, Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (export_onnx(net, size, out, opset) if fmt == "onnx" else export_torchscript(net, size, out))
    diff = max_difference(net, load_exported(out, fmt), size)
    if not diff <= VERIFY_TOLERANCE:
        raise RuntimeError(f"{out}: exported outputs differ from the eager model by {diff:.2e} (> {VERIFY_TOLERANCE})")
    info = {"format": fmt, "file": out.name, "image_size": size, "num_boxes": model.num_boxes, "nms_iou": NMS_IOU,
            "backbone": cfg.model.backbone, "max_abs_diff_vs_eager": diff, **CONTRACT}
    Path(f"{out}.json").write_text(json.dumps(info, indent=1))
    return info
