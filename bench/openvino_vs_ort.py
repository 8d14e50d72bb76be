"""OpenVINO against ONNX Runtime on the file `multibox export` writes (issue 19 item 3: a second backend
"where it is faster on Intel CPUs, measured"): the network alone, one window a time, both on the CPU with
the same thread count, taking turns within each pass. Prints both rates and their ratio.

    pip install openvino
    python bench/openvino_vs_ort.py RUN/best.onnx [--threads 2] [--count 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(run, x: np.ndarray, count: int) -> float:
    """Windows/s of ``run(x)`` over ``count`` calls, after 3 warm-up calls."""
    for _ in range(3):
        run(x)
    start = time.perf_counter()
    for _ in range(count):
        run(x)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    x = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8 if "uint8" in feed.type else np.float32)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(args.model), "CPU",
                                  {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    rates = {"ONNX Runtime": [], "OpenVINO": []}
    for _ in range(args.passes):  # taking turns: a change of load hits both alike
        rates["ONNX Runtime"].append(timed(lambda a: session.run(None, {feed.name: a}), x, args.count))
        rates["OpenVINO"].append(timed(lambda a: request.infer({0: a}), x, args.count))
    best = {k: max(v) for k, v in rates.items()}
    print(f"input {shape} {x.dtype}, {args.threads} threads, best of {args.passes} x {args.count} calls")
    for name, rate in best.items():
        print(f"{name}: {rate:.1f} windows/s")
    print(f"OpenVINO / ONNX Runtime: {best['OpenVINO'] / best['ONNX Runtime']:.2f}x")


if __name__ == "__main__":
    main()
