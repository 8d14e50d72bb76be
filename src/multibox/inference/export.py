"""A trained localizer as an ONNX or TorchScript graph for deployment (`multibox export`, :mod:`multibox.jobs.export`).

The exported graph::

    input   "images"  float32 [B, 3, S, S]  RGB in [0, 1]; B is dynamic, S is the checkpoint's image_size
    output  "boxes"   float32 [B, K, 4]     xyxy in [0, 1] of the input square (may reach past it)
    output  "scores"  float32 [B, K]        confidences, sigmoid of the logits (decoded in the graph)

ImageNet mean/std normalisation is inside the graph. What stays outside, in plain numpy and PIL so a
deployment needs no torch:

* pre-processing, :func:`preprocess`: the whole image padded to a square (the default conv head's
  window) or the maximal square at the image's centre (§4.2.2; the FILE.json says which), resized to
  S x S (PIL bilinear, antialiased), divided by 255, as float32 CHW; its pixel crop box is kept to
  map the boxes back;
* post-processing, :func:`detections`: boxes from the crop square to image pixels, truncated to the
  image (§4.1), non-maximum suppression at Jaccard 0.5 (§4.1), the top k by score.

NMS is outside the graph on purpose: its output is ragged (a different count per image), and ONNX's
NonMaxSuppression leaves tie order and batching to the runtime, while :func:`nms` here is the exact
rule of torchvision.ops.nms that `multibox detect` uses. A JSON file beside the export (FILE.json)
records S, K, the NMS threshold and this contract.

The ONNX exporter cannot express adaptive average pooling whose output does not divide its input
(MultiBox pools the backbone's grid, e.g. 10 x 10 -> 4 x 4 at S = 320), so for ONNX each such layer
becomes the same average written as two constant matrix products (:class:`MatrixAdaptivePool`).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from multibox.data.transforms import resize_crop
from multibox.engine.nms_rule import PAPER_NMS_IOU
from multibox.errors import UserError
from multibox.modeling.localizer import MultiBox

NMS_IOU = PAPER_NMS_IOU  # §4.1 (an export carries its model's own, engine.nms_rule)
# What an export may differ from the eager model by, on what users consume: boxes in pixels of the S x S
# input (fused BN and reordered float sums in the runtime move a box by far less than a pixel) and
# probabilities (sigmoid of the logits). Absolute differences of the raw [0, 1] outputs said nothing about
# their scale: 1.5e-3 of S = 704 is a pixel.
BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3


class DecodedLocalizer(nn.Module):
    """MultiBox with the confidence decoded: images Tensor[B, 3, S, S] in [0, 1] ->
    (boxes Tensor[B, K, 4] xyxy in [0, 1], scores Tensor[B, K] in (0, 1))."""

    def __init__(self, model: MultiBox) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        return out["pred_boxes"], out["pred_logits"].sigmoid()


def pooling_matrix(size_in: int, size_out: int) -> Tensor:
    """Tensor[size_out, size_in]: row i averages the window adaptive pooling uses for output i,
    [floor(i * in / out), ceil((i + 1) * in / out))."""
    matrix = torch.zeros(size_out, size_in)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, math.ceil((i + 1) * size_in / size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class MatrixAdaptivePool(nn.Module):
    """AdaptiveAvgPool2d for one fixed input size as rows @ x @ cols^T: Tensor[B, C, H, W] -> [B, C, h, w]."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", pooling_matrix(size_in[0], size_out[0]))  # [h, H]
        self.register_buffer("cols", pooling_matrix(size_in[1], size_out[1]).t().contiguous())  # [W, w]

    def forward(self, x: Tensor) -> Tensor:
        return self.rows @ (x @ self.cols)  # [B, C, H, w] -> [B, C, h, w]


def pool_input_sizes(model: nn.Module, image_size: int) -> dict[str, tuple[int, int]]:
    """The (H, W) each AdaptiveAvgPool2d of ``model`` sees for S x S input (one dry forward pass)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
             for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return sizes


def with_matrix_pools(model: nn.Module, image_size: int) -> nn.Module:
    """A copy of ``model`` whose adaptive average pools are :class:`MatrixAdaptivePool` for S x S input."""
    model = copy.deepcopy(model)
    for name, size_in in pool_input_sizes(model, image_size).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        pool = getattr(parent, child)
        size_out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        size_out = tuple(s_in if s is None else s for s, s_in in zip(size_out, size_in))
        setattr(parent, child, MatrixAdaptivePool(size_in, size_out))
    return model


def export_onnx(net: nn.Module, image_size: int, out: Path, opset: int = 17) -> None:
    """The ONNX graph of ``net`` (a DecodedLocalizer) with a dynamic batch dimension."""
    net = with_matrix_pools(net, image_size)
    example = torch.rand(2, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(net, (example,), str(out), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["boxes", "scores"],
                          dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}})


METADATA_KEY = "multibox"  # the .onnx metadata_props entry holding :func:`export_metadata` as JSON


def export_metadata(image_size: int, num_boxes: int, windows: str, config: dict, priors: Tensor,
                    match_counts: Tensor, nms_iou: float = NMS_IOU) -> dict[str, Any]:
    """What running an export needs besides the graph (:class:`multibox.inference.onnx_localizer.OnnxLocalizer`):
    S, K, the NMS threshold (the model's, ``nms_iou``), the window mode trained with, the training config, and for `evaluate`'s
    priors baseline the priors Tensor[K, 4] and their match counts Tensor[K] (as base64 float32 /
    int64 bytes: a conv head has K in the ten thousands)."""
    return {"image_size": image_size, "num_boxes": num_boxes, "nms_iou": nms_iou, "windows": windows,
            "config": config, "priors": encode_array(priors.detach().cpu().float().numpy()),
            "prior_match_counts": encode_array(match_counts.detach().cpu().to(torch.int64).numpy())}


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as JSON: dtype, shape and its little-endian bytes in base64."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": little.dtype.name, "shape": list(array.shape), "data": base64.b64encode(little.tobytes()).decode()}


def decode_array(entry: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    raw = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.dtype(entry["dtype"]).newbyteorder("<"))
    return raw.reshape(entry["shape"]).astype(entry["dtype"])


def embed_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Write ``metadata`` into the .onnx at ``path`` (its metadata_props), so the file alone can be run."""
    import onnx

    model = onnx.load(str(path))
    entries = {p.key: p.value for p in model.metadata_props} | {METADATA_KEY: json.dumps(metadata)}
    onnx.helper.set_model_props(model, entries)
    onnx.save(model, str(path))


def file_props(path: str | Path) -> dict[str, str]:
    """The metadata map of the .onnx at ``path`` (its metadata_props), read without its weights' external data."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def read_metadata(props: dict[str, str]) -> dict[str, Any] | None:
    """The embedded :func:`export_metadata` from an ONNX model's metadata map, None when it has none."""
    return json.loads(props[METADATA_KEY]) if METADATA_KEY in props else None


def export_torchscript(net: nn.Module, image_size: int, out: Path) -> None:
    """A traced TorchScript module of ``net``; tracing at batch 2 keeps the batch dimension symbolic."""
    example = torch.rand(2, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(net, (example,), check_inputs=[(torch.rand(3, 3, image_size, image_size),)])
    traced.save(str(out))


def load_exported(path: str | Path, fmt: str) -> Any:
    """A callable images np.ndarray float32 [B, 3, S, S] -> (boxes [B, K, 4], scores [B, K]) as numpy."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("checking an ONNX export needs ONNX Runtime: pip install 'multibox[export]'") from None

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: tuple(session.run(["boxes", "scores"], {"images": images}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu")

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            return tuple(t.numpy() for t in module(torch.from_numpy(images)))

    return run


def output_differences(net: nn.Module, exported: Any, image_size: int, batch: int = 3, seed: int = 0,
                       images: Tensor | None = None) -> dict[str, float]:
    """max |exported - eager| on ``images`` Tensor[B, 3, S, S] in [0, 1] (default: ``batch`` random
    ones): "boxes_px" in pixels of the S x S input, "scores" in probability."""
    if images is None:
        images = torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        boxes, scores = net(images)
    got_boxes, got_scores = exported(images.numpy())
    return {"boxes_px": float(np.abs(got_boxes - boxes.numpy()).max()) * image_size,
            "scores": float(np.abs(got_scores - scores.numpy()).max())}


def export_windows(windows: str) -> str:
    """The one window per image an export pre-processes: the model's "center", else "whole" (multiscale
    and tiles are several windows; the deployment can cut them with :func:`preprocess` of each)."""
    return "center" if windows == "center" else "whole"


CONTRACT = {
    "input": "images float32 [B, 3, S, S], RGB in [0, 1]: the image's window ('windows': whole = padded to a "
             "square at the top-left, center = maximal centre square) resized to S x S (bilinear, antialiased), /255; "
             "ImageNet normalisation is inside the graph",
    "outputs": "boxes float32 [B, K, 4] xyxy in [0, 1] of the input square; scores float32 [B, K] = sigmoid(logits)",
    "postprocessing": "map boxes to image pixels (crop origin + box * crop side), clip to the image, NMS at "
                      "IoU > nms_iou suppressed, top-k by score: multibox.inference.export.detections",
}


# ------------------------------------------------------------------------- pre- and post-processing


def preprocess(image: Image.Image, size: int, windows: str = "whole") -> tuple[np.ndarray, np.ndarray]:
    """Network input for one image: (float32 [3, S, S] in [0, 1], its crop float32 [4] pixel xyxy), as
    `multibox detect` makes it: ``windows`` "whole" (the default: the image padded to a square, black
    below or right of it) or "center" (the maximal centred square, §4.2.2), resized in one antialiased
    bilinear pass (:func:`multibox.data.transforms.resize_crop`)."""
    width, height = image.size
    if windows == "center":
        side = min(width, height)
        x0, y0 = (width - side) / 2, (height - side) / 2
    elif windows == "whole":
        side, x0, y0 = max(width, height), 0.0, 0.0
    else:
        raise UserError(f"windows {windows!r}: an export pre-processes one window per image, 'whole' or 'center'")
    crop = np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32)
    pixels = resize_crop(image.convert("RGB"), crop, size)
    return np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1) / 255, crop  # [S, S, 3] -> [3, S, S]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy NMS as torchvision.ops.nms: boxes float32 [N, 4] xyxy, scores [N] -> kept indices int64 [n],
    by decreasing score; a box is dropped when its Jaccard overlap with a kept one exceeds ``iou``."""
    boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])  # [n, 2]
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.maximum(hi - lo, np.float32(0)), axis=1, dtype=np.float32)
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.array(keep, dtype=np.int64)


def detections(boxes: np.ndarray, scores: np.ndarray, crop: np.ndarray, image_size: tuple[int, int],
               iou: float | None = NMS_IOU, top_k: int | None = 10) -> tuple[np.ndarray, np.ndarray]:
    """One image's detections from the exported outputs: (boxes float32 [N, 4] pixel xyxy, scores [N]).

    boxes [K, 4] xyxy in [0, 1] of the crop, scores [K] (one row of the graph's outputs); crop [4],
    the pixel xyxy square :func:`preprocess` returned; image_size (width, height).
    """
    crop = np.asarray(crop, np.float32)
    origin, side = crop[[0, 1, 0, 1]], crop[[2, 3, 2, 3]] - crop[[0, 1, 0, 1]]
    boxes = np.asarray(boxes, np.float32)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    pixels = boxes * side + origin  # corners ordered first, as multibox.boxes.order_corners does
    upper = np.array([image_size[0], image_size[1]] * 2, dtype=np.float32)  # (w, h, w, h)
    pixels = np.minimum(np.maximum(pixels, np.float32(0)), upper)
    keep = np.argsort(-np.asarray(scores), kind="stable") if iou is None else nms(pixels, scores, iou)
    keep = keep[:top_k]
    return pixels[keep], np.asarray(scores, np.float32)[keep]
