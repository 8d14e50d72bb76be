"""The file `multibox export` writes, run by ONNX Runtime behind the :class:`~multibox.inference.localizer.Localizer` API.

:class:`OnnxLocalizer` is a Localizer whose network call is an ONNX Runtime session: the windows
(whole, center, multiscale, tiles), test-time augmentation, window merging, NMS and top-k are the
Localizer's own code, so the two paths differ only in the graph's arithmetic (fused batch norm,
reordered float sums: export's BOX_TOLERANCE_PX and SCORE_TOLERANCE bound it).

What the Localizer needs besides the graph (S, K, the NMS threshold, the trained window mode, the
training config and priors for `evaluate`'s baselines) is read from the metadata export embeds in the
.onnx (:func:`multibox.inference.export.read_metadata`); an export without it (written before) falls
back to FILE.json beside it.

Session options follow ONNX Runtime's threading guidance: one session, intra-op threads = the cores
this process may use (os.sched_getaffinity), sequential execution; ``spinning=False`` turns off the
intra-op threads' busy-waiting between runs, for a server whose requests arrive with gaps (spinning
threads would burn the cores the HTTP workers need).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multibox.config import RUNTIMES
from multibox.errors import UserError
from multibox.inference.export import NMS_IOU, read_metadata
from multibox.inference.localizer import Localizer
from multibox.threads import available_cpus

INSTALL_HINT = "running an .onnx model needs ONNX Runtime: pip install 'multibox[export]'"


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """onnxruntime.SessionOptions: ``threads`` intra-op threads (default: :func:`multibox.threads.available_cpus`), one
    inter-op thread (the graph is a chain), all graph optimisations; ``spinning`` False for serving."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device`` ("auto", "cpu", "cuda", "cuda:N"): CUDA when asked
    for (or "auto") and this onnxruntime build has it, else the CPU; "cuda" without it is a UserError."""
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if str(device).startswith("cuda") and not cuda:
        raise UserError(f"device {device!r}: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu), "
                        "or run the .onnx on --device cpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda and device != "cpu" else ["CPUExecutionProvider"]


def open_session(path: str | Path, device: str = "auto", threads: int | None = None, spinning: bool = True) -> Any:
    """An onnxruntime.InferenceSession of ``path``; a missing or damaged file is a one-line UserError."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    if not Path(path).is_file():
        raise UserError(f"{path}: no such ONNX model")
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    load_errors = (state.Fail, state.InvalidProtobuf, state.InvalidGraph, state.InvalidArgument, state.NotImplemented,
                   RuntimeError)  # ORT's own exception types derive from Exception only
    try:
        return ort.InferenceSession(str(path), session_options(threads, spinning), providers=providers(device))
    except load_errors as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not an ONNX model ONNX Runtime can load ({first})") from None


def sidecar_metadata(path: Path) -> dict:
    """What FILE.json beside an export without embedded metadata says (S, K, NMS, windows), else a UserError."""
    sidecar = Path(f"{path}.json")
    try:
        info = json.loads(sidecar.read_text())
        return {k: info[k] for k in ("image_size", "num_boxes", "nms_iou", "windows")}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: no multibox metadata in the file and no readable {sidecar.name} beside it; "
                        "export it again with `multibox export`") from None


class OnnxLocalizer(Localizer):
    """A Localizer (same options, :meth:`predict`, :meth:`predict_batch` and dataset path) running an
    exported graph in ONNX Runtime; the network call is the only difference (module docstring).

    >>> loc = OnnxLocalizer.from_file("runs/trees/best.onnx", windows="tiles", tile=400)
    >>> boxes, scores = loc.predict("orthophoto.tif", top_k=100)   # Tensor[N, 4] pixel xyxy, Tensor[N]
    """

    def __init__(self, session: Any, image_size: int, num_boxes: int, nms_iou: float = NMS_IOU,
                 windows: str = "whole", tile: float | None = None, overlap: float = 0.2, tta: str | None = None,
                 metadata: dict | None = None) -> None:
        self.session, self.model, self.metadata = session, None, metadata or {}
        self._num_boxes = num_boxes
        # post-processing runs on the CPU: the session hands its outputs back as numpy
        self.configure(image_size, "cpu", nms_iou, windows, tile, overlap, tta)
        self.torch_threads = 1  # torch only cuts windows and merges boxes here (multibox.threads.torch_threads)

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto", windows: str | None = None, tile: float | None = None,
                  overlap: float = 0.2, tta: str | None = None, threads: int | None = None,
                  spinning: bool = True, runtime: str = "onnxruntime") -> OnnxLocalizer:
        """The localizer of the .onnx at ``path``; ``windows`` defaults to the mode it was trained with
        (as :meth:`Localizer.from_checkpoint`); threads / spinning: :func:`session_options`; runtime:
        "onnxruntime" or "openvino" (:mod:`multibox.inference.openvino_session`, CPU only)."""
        if runtime not in RUNTIMES:
            raise UserError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        if runtime == "openvino":
            from multibox.inference.openvino_session import OpenVinoSession

            if str(device).startswith("cuda"):
                raise UserError(f"device {device!r}: the OpenVINO runtime runs on the CPU here; use onnxruntime")
            session = OpenVinoSession(path, threads or available_cpus())
        else:
            session = open_session(path, device, threads, spinning)
        meta = read_metadata(session.get_modelmeta().custom_metadata_map) or sidecar_metadata(Path(path))
        return cls(session, int(meta["image_size"]), int(meta["num_boxes"]), float(meta["nms_iou"]),
                   windows or meta["windows"], tile, overlap, tta, meta)

    @property
    def num_boxes(self) -> int:
        return self._num_boxes

    def network(self, inputs: Tensor) -> dict[str, Tensor]:
        """The graph on inputs Tensor[T, 3, S, S] uint8 -> {"pred_boxes": Tensor[T, K, 4], "pred_logits":
        Tensor[T, K]}. /255 in float32 as MultiBox.forward does; the graph outputs probabilities, turned
        back into logits because the shared post-processing takes logits (the round trip moves a
        probability by about one float32 step)."""
        images = inputs.cpu().numpy().astype(np.float32) / np.float32(255)
        boxes, scores = self.session.run(["boxes", "scores"], {"images": images})
        return {"pred_boxes": torch.from_numpy(boxes), "pred_logits": torch.logit(torch.from_numpy(scores))}
