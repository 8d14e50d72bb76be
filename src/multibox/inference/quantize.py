"""INT8 static quantization of an exported localizer (`multibox export --int8`), with ONNX Runtime's
quantization tool (:func:`onnxruntime.quantization.quantize_static`).

Static: the activations' 8-bit ranges are fixed beforehand from a few calibration images run through
the float graph (min-max), so the quantized graph needs no range computation per image. QDQ format,
int8 weights per output channel, uint8 activations ("U8S8"): on the 2-core AMD EPYC (AVX-512 VNNI) the
trees-dev default (S = 352) ran 1.52x (1 thread) / 1.22x (2 threads) the float graph's windows/s with
U8S8 and 1.00x / 1.03x with int8 activations (S8S8), boxes equally close (a loaded machine: ratios of
one run, bench/onnx_backends.py measures end to end).

The layers that write the outputs stay float: the last Conv / Gemm / MatMul on the way to each output
and everything after it (prior + residual, sigmoid). Quantized, the box residuals would be rounded to
1/255 of their range (about a pixel of the input) and near-equal confidences would tie, which reorders
NMS; the cost of keeping them float is a few percent of the compute.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from multibox.errors import UserError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")  # the layers whose int8 kernels are the speed-up


def output_layers(model) -> list[str]:
    """Names of the nodes of an onnx.ModelProto from the last weighted layer before each graph output
    to that output (walking back through single-input-path producers)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    keep: dict[str, None] = {}
    for output in model.graph.output:
        pending = [output.name]
        while pending:
            node = producer.get(pending.pop())
            if node is None or node.name in keep:
                continue
            keep[node.name] = None
            if node.op_type not in WEIGHTED_OPS:  # stop at the layer that computes the output's values
                pending += [name for name in node.input if name in producer]
    return list(keep)


class ImageBatches:
    """onnxruntime.quantization.CalibrationDataReader over inputs float32 [B, 3, S, S] in [0, 1]."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"images": np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(fp32: str | Path, out: str | Path, batches: Iterable[np.ndarray]) -> None:
    """Write the int8 version of the exported graph ``fp32`` to ``out``, calibrated on ``batches``
    (each float32 [B, 3, S, S], RGB in [0, 1] as the graph takes them)."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UserError("--int8 needs ONNX Runtime and onnx: pip install 'multibox[export]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred and graph fused, as the tool asks
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        quantize_static(model, str(out), ImageBatches(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=output_layers(model),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
