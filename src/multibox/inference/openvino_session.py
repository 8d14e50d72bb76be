"""OpenVINO behind the part of ONNX Runtime's session that :class:`~multibox.inference.onnx_localizer.OnnxLocalizer`
uses, so the file `multibox export` writes runs in either with the same windows, merging and NMS.

OpenVINO (`pip install "multibox[openvino]"`) ran the default's exported network 1.83x faster than ONNX
Runtime on this project's 2-core AMD EPYC (bench/openvino_vs_ort.py: 292.7 against 159.8 windows/s at
352 px, 2 threads), so `serve` prefers it on the CPU when it is installed. It reads the .onnx directly;
the multibox metadata embedded in the file is read with the onnx package. Compiled for latency (one
stream, ``threads`` inference threads).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from multibox.errors import UserError
from multibox.inference.export import file_props

INSTALL_HINT = 'running an .onnx model in OpenVINO needs it: pip install "multibox[openvino]"'


class OpenVinoSession:
    """``run(output_names, {"images": array})``, ``get_modelmeta()`` and ``get_providers()`` of an
    onnxruntime.InferenceSession, computed by an OpenVINO model compiled for the CPU."""

    def __init__(self, path: str | Path, threads: int) -> None:
        try:
            import onnx  # noqa: F401 - file_props needs it; missing is the install hint's case
            import openvino as ov
        except ImportError:
            raise UserError(INSTALL_HINT) from None
        if not Path(path).is_file():
            raise UserError(f"{path}: no such ONNX model")
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                               {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
            self.metadata = file_props(path)
        except Exception as exc:  # noqa: BLE001 - RuntimeError (OpenVINO), DecodeError (protobuf): a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: not an ONNX model OpenVINO can load ({first})") from None
        self.request = self.compiled.create_infer_request()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(feeds)
        return [np.asarray(results[self.compiled.output(name)]) for name in names]

    def get_modelmeta(self) -> Any:
        return SimpleNamespace(custom_metadata_map=self.metadata)

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]
