"""Achieved FLOP/s of the localizer's forward pass against this machine's fp32 matmul peak.

FLOPs come from torch.utils.flop_counter.FlopCounterMode over one forward pass: it counts matrix
products and convolutions (2 FLOPs per multiply-add) and leaves out element-wise work (batch norm,
activations, pooling), so achieved = counted FLOPs / measured time understates the work slightly.
The peak is the fastest fp32 ``torch.mm`` of square matrices (sides 1024, 2048, 3072) in the same
process, same threads, measured before and after the models (the higher counts), as the brief's
"fp32 matmul peak"; a large dense 3x3 convolution is a second reference, because oneDNN's
convolution kernels reach more FLOP/s than torch.mm's GEMM on some CPUs (AlexNet's convolutions and
fully connected layers then exceed "100 %" of the matmul peak). Batch 32, eager PyTorch, inference mode, in the faster of the two memory layouts
(contiguous or channels_last, as in bench/inference_speed.py), for the inference benchmark's model
(mobilenet_v3_large at 320 px) and the paper's network (AlexNet at 220 px, the default config).

    PYTHONPATH=src python bench/flops.py [--threads N]
"""

from __future__ import annotations


import torch
from torch.utils.flop_counter import FlopCounterMode

from measure import Result, fastest
from measure import main as bench_main
from multibox.modeling.localizer import build_model

BATCH, K = 32, 100
MM_SIZES = (1024, 2048, 3072)  # square torch.mm sides tried for the peak
MODELS = (("mobilenet_v3_large", 320), ("alexnet", 220))


def matmul_peak() -> float:
    """FLOP/s of the fastest large fp32 matrix product among a few sizes."""
    best = 0.0
    for n in MM_SIZES:
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n**3 / fastest(lambda: torch.mm(a, b), repeats=3))
    return best


def conv_peak() -> float:
    """FLOP/s of a large dense 3x3 convolution (oneDNN's kernels can outrun torch.mm's GEMM on a CPU)."""
    x, w = torch.randn(8, 256, 56, 56), torch.randn(256, 256, 3, 3)
    flops = 2 * 8 * 56 * 56 * 256 * 256 * 9
    with torch.inference_mode():
        return flops / fastest(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats=3)


def forward_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(images)
    return counter.get_total_flops()


def achieved(backbone: str, size: int) -> tuple[float, int]:
    """(FLOP/s, FLOPs per image) of one batch-32 forward pass."""
    torch.manual_seed(0)
    model = build_model(backbone, torch.rand(K, 4).sort(1).values, None, 1024, 4).eval()
    images = torch.rand(BATCH, 3, size, size)
    flops = forward_flops(model, images)
    seconds = min(forward_seconds(model, images, layout) for layout in (torch.contiguous_format, torch.channels_last))
    return flops / seconds, flops // BATCH


def forward_seconds(model: torch.nn.Module, images: torch.Tensor, layout: torch.memory_format) -> float:
    model, images = model.to(memory_format=layout), images.contiguous(memory_format=layout)
    with torch.inference_mode():
        return fastest(lambda: model(images), repeats=2)


def run(threads: int) -> list[Result]:
    """The peak is measured before and after the models and the higher taken: on a shared machine a
    single measurement can land in a busy moment and flatter the models."""
    peak_before = matmul_peak()
    measured = []
    for backbone, size in MODELS:
        rate, per_image = achieved(backbone, size)
        measured.append((backbone, size, rate, per_image))
        print(f"  {backbone} {size}px: {per_image / 1e9:.2f} GFLOP/image, {rate / 1e9:.1f} GFLOP/s", flush=True)
    mm = max(peak_before, matmul_peak())
    conv = conv_peak()
    print(f"  fp32 torch.mm peak (sides {MM_SIZES}): {peak_before / 1e9:.1f} before, {mm / 1e9:.1f} GFLOP/s best; "
          f"3x3 conv: {conv / 1e9:.1f} GFLOP/s", flush=True)
    return [Result(f"forward GFLOP/s, {backbone} {size}px, batch {BATCH} ({per_image / 1e9:.2f} GFLOP/image) "
                   f"vs fp32 {name} peak", rate / 1e9, peak / 1e9, "GFLOP/s", 0.5, percent=True)
            for backbone, size, rate, per_image in measured
            for name, peak in (("torch.mm", mm), ("3x3 conv", conv))]


if __name__ == "__main__":
    bench_main(run, __doc__, ".1f", "{:.0%}")
