"""`multibox export`: write a trained localizer as ONNX or TorchScript (:mod:`multibox.inference.export`),
check the file against the eager model on what users consume (pixel boxes, probabilities), and describe
its contract in FILE.json beside it. The file appears only once it passed the check (atomic write)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from multibox.atomic import atomic_path, write_text_atomic
from multibox.config import EXPORT_FORMATS
from multibox.data.build import load_split
from multibox.data.transforms import to_pil
from multibox.data.yolo import IMAGE_SUFFIXES
from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint
from multibox.engine.nms_rule import configured_nms_iou
from multibox.errors import JobFailed, UserError
from multibox.inference.export import (
    BOX_TOLERANCE_PX,
    CONTRACT,
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
from multibox.inference.quantize import quantize_int8
from multibox.inference.windows import image_windows, window_inputs

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


def export_job(model_path: str | Path, fmt: str, out: str | Path | None = None, opset: int = 17, int8: bool = False,
               calib: str | Path | None = None) -> dict:
    """`multibox export`: write OUT (default: beside the checkpoint) and OUT.json, checked against the
    eager model; returns the summary (with "file": the path written). ``int8``: also OUT's INT8 version
    beside it (best.onnx -> best.int8.onnx), calibrated on ``calib`` (a folder of images; default: the
    checkpoint's training split): :func:`export_int8`."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if int8 and fmt != "onnx":
        raise UserError(f"int8: quantization writes ONNX; format {fmt!r} has none (use format onnx)")
    out = export_path(model_path, fmt, out)
    state = load_checkpoint(model_path)
    model, cfg = model_from_checkpoint(state)
    net, size = DecodedLocalizer(model).eval(), cfg.model.image_size
    calibration = calibration_images(cfg, calib) if int8 else []  # a bad source fails before anything is written
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
    info = {"format": fmt, "file": out.name, "image_size": size, "num_boxes": model.num_boxes, "nms_iou": configured_nms_iou(cfg),
            "windows": export_windows(cfg.model.windows), "backbone": cfg.model.backbone,
            "max_box_diff_px": diffs["boxes_px"], "max_score_diff": diffs["scores"], **CONTRACT}
    write_text_atomic(f"{out}.json", json.dumps(info, indent=1))
    if int8:
        meta, source = run_metadata(state, model, cfg), str(calib) if calib else f"{cfg.data.data} {cfg.data.split}"
        info["int8"] = export_int8(out, net, cfg, calibration, source, meta) | {"path": str(int8_path(out))}
    return info | {"path": str(out)}


CALIBRATION_IMAGES = 16  # ONNX Runtime's examples calibrate on tens of images; min-max ranges settle by then


def int8_path(fp32: Path) -> Path:
    """Where the INT8 version of ``fp32`` goes: RUN/best.onnx -> RUN/best.int8.onnx."""
    return fp32.with_name(f"{fp32.stem}.int8{fp32.suffix}")


def calibration_images(cfg, calib: str | Path | None, count: int = CALIBRATION_IMAGES) -> list[Image.Image]:
    """The first ``count`` images of the folder ``calib``, else of the checkpoint's training split."""
    if calib is not None:
        folder = Path(calib)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise UserError(f"{calib}: not a folder of images ({', '.join(sorted(IMAGE_SUFFIXES))}) to calibrate on")
        return [to_pil(path) for path in files[:count]]
    try:
        dataset = load_split(cfg, cfg.data.split)
    except UserError as exc:
        raise UserError(f"int8: the training data of the checkpoint cannot be read ({exc}); give calibration "
                        "images with calib DIR") from None
    return [dataset.load_image(i) for i in range(min(count, len(dataset)))]


def export_int8(fp32: Path, net, cfg, images: list[Image.Image], source: str, metadata: dict) -> dict:
    """Write int8_path(fp32) (:func:`multibox.inference.quantize.quantize_int8`), calibrated on ``images``
    (from ``source``), with ``metadata`` and its FILE.json. Its differences from the eager model are measured on the calibration images and
    reported, not checked: quantization is lossy by design, and what it costs is the detection rate
    `multibox evaluate --model MODEL.int8.onnx` reports."""
    size, windows = cfg.model.image_size, export_windows(cfg.model.windows)
    inputs = [window_inputs(im, image_windows(im.width, im.height, windows), size).float() / 255
              for im in images]  # per image Tensor[1, 3, S, S] as the localizer cuts it
    out = int8_path(fp32)
    with atomic_path(out) as tmp:
        quantize_int8(fp32, tmp, (x.numpy() for x in inputs))
        embed_metadata(tmp, metadata)
        diffs = output_differences(net, load_exported(tmp, "onnx"), size, images=torch.cat(inputs))
    info = {"format": "onnx int8", "file": out.name, "image_size": size, "num_boxes": metadata["num_boxes"],
            "nms_iou": metadata["nms_iou"], "windows": windows, "calibration_images": len(inputs),
            "calibration": source,
            "max_box_diff_px": diffs["boxes_px"], "max_score_diff": diffs["scores"], **CONTRACT}
    write_text_atomic(f"{out}.json", json.dumps(info, indent=1))
    return info


def run_metadata(state: dict, model, cfg) -> dict:
    """The metadata an .onnx carries (:func:`multibox.inference.export.export_metadata`) for this checkpoint."""
    counts = state.get("prior_match_counts", torch.zeros(model.num_boxes, dtype=torch.int64))
    return export_metadata(cfg.model.image_size, model.num_boxes, cfg.model.windows, cfg.to_dict(),
                           model.priors, counts, configured_nms_iou(cfg)) | {"class_names": state.get("class_names")}  # for `serve`'s /v1/model


def check_differences(out: Path, diffs: dict[str, float]) -> None:
    """The exported graph must give the eager model's boxes within BOX_TOLERANCE_PX input pixels and its
    probabilities within SCORE_TOLERANCE; otherwise nothing is written and the job fails in one line."""
    if not (diffs["boxes_px"] <= BOX_TOLERANCE_PX and diffs["scores"] <= SCORE_TOLERANCE):
        raise JobFailed(f"{out}: the exported graph differs from the eager model by {diffs['boxes_px']:.3g} px in "
                        f"boxes (tolerance {BOX_TOLERANCE_PX}) and {diffs['scores']:.3g} in scores (tolerance "
                        f"{SCORE_TOLERANCE}); not written")
