"""GPU check: training speed and utilisation of the localizer on one CUDA GPU, and the CUDA tests.

One short script (under 4 minutes on one H100 or H200 with 16 CPU cores) for a machine whose python3
has torch and torchvision (2.11 / 0.26 or newer) and this repository's dependencies; nothing is
installed:

    PYTHONPATH=src python3 bench/gpu_check.py [--steps 60] [--no-compile] [--no-tests]

Setting: mobilenet_v3_large at 220 px, K = 200, batch 128, Adagrad, prior matching, AMP "auto"
(bf16 on these GPUs) and channels_last (the CUDA defaults), synthetic data rendered by the workers.

1. model: train_step on one batch already on the GPU (what the GPU can consume), eager; the
   loss's share of the step; host synchronisations per step (CUDA sync debug mode; expect 0);
2. data pipeline alone: DataLoader images/s with the worker count training uses here, rendering the
   synthetic images in the workers and with them preloaded (data.synthetic_preload);
3. end to end: train for --steps steps (loader, step, logging) on preloaded data, images/s
   from its log after the first window, GPU utilisation sampled with nvidia-smi (torch.cuda.utilization
   as fallback);
4. tests/test_gpu_path.py (its CUDA tests run here);
5. model throughput with torch.compile (inductor), in a child process with a time limit.

Prints a Markdown table at the end; every number is from this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

from multibox.engine.trainer import Run, loader_workers, make_loader, setup_run, to_float, train, train_step
from multibox.config import Config
from multibox.modeling.losses import weighted_total

BATCH, K, SIZE, BACKBONE = 128, 200, 220, "mobilenet_v3_large"
BUDGET_S = 230  # stop starting optional parts (compile) past this


def config(out_steps: int, compile_model: bool = False, preload: bool = False) -> Config:
    """The check's setting; ``preload`` renders the synthetic images once up front (1,024 of them, to
    keep that serial rendering short) so the workers only crop, resize and match."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes = BACKBONE, SIZE, K
    cfg.data.synthetic_sizes = {"train": 1024 if preload else 2048, "val": 8, "test": 8}
    cfg.data.synthetic_preload = preload
    cfg.train.batch_size, cfg.train.device, cfg.train.steps = BATCH, "cuda", out_steps
    cfg.train.amp, cfg.train.compile, cfg.train.log_every = "auto", compile_model, 20
    cfg.train.checkpoint_every = 10**6
    cfg.train.cuda_workers = max(1, (os.cpu_count() or 2) - 2)  # all but the training loop's cores
    return cfg


class Utilisation:
    """Samples the GPU's utilisation (percent) in a thread: nvidia-smi, else torch.cuda.utilization; no
    samples without a GPU (bench/gpu_default.py's CPU test runs through here too)."""

    def __init__(self, period: float = 0.2) -> None:
        self.period, self.samples, self.stop = period, [], threading.Event()
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        self.command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)]

    def read(self) -> float | None:
        try:
            return float(subprocess.run(self.command, capture_output=True, text=True, timeout=5).stdout.split()[0])
        except Exception:
            try:
                return float(torch.cuda.utilization())
            except Exception:
                return None

    def loop(self) -> None:
        while not self.stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self.stop.wait(self.period)

    def __enter__(self) -> Utilisation:
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def mean_since(self, start: float) -> float:
        values = [v for t, v in self.samples if t >= start]
        return sum(values) / len(values) if values else float("nan")


def cuda_seconds(fn, repeats: int) -> float:
    """Mean seconds per call of ``fn`` over ``repeats`` calls, the device drained before and after."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def host_syncs(run: Run, images: torch.Tensor, targets: dict, steps: int = 3) -> float:
    """Synchronising CUDA calls made by ``steps`` training steps (CUDA sync debug mode warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                train_step(run, images, targets)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # "called a synchronizing CUDA operation"; the mode's own "prototype feature" notice is no sync
    return sum("called a synchronizing" in str(w.message) for w in caught) / steps


def model_only(compile_model: bool, tmp: str) -> dict:
    """images/s of train_step on a batch resident on the GPU, the loss's share and syncs per step."""
    run, dataset = setup_run(config(1, compile_model), f"{tmp}/model{int(compile_model)}", resume=False)
    loader = iter(make_loader(run, dataset))
    images, targets, _ = next(loader)
    del loader  # stop the workers: they would compete with the timed steps for the CPU
    images, targets = images.to(run.device), {k: v.to(run.device) for k, v in targets.items()}
    step = lambda: train_step(run, images, targets)  # noqa: E731
    cuda_seconds(step, 5)  # warm-up: cuDNN autotuning, compilation
    with Utilisation() as util:
        start = time.monotonic()
        seconds = cuda_seconds(step, 30)
    result = {"images_per_s": BATCH / seconds, "step_ms": seconds * 1e3, "gpu_util": util.mean_since(start),
              "precision": str(run.precision.dtype), "channels_last": run.precision.channels_last}
    if not compile_model:
        result["loss_ms"] = loss_seconds(run, images, targets) * 1e3
        result["syncs_per_step"] = host_syncs(run, images, targets)
    return result


def loss_seconds(run: Run, images: torch.Tensor, targets: dict) -> float:
    """Loss forward + backward alone, on the network's outputs as leaves."""
    with torch.no_grad(), run.precision.autocast(run.device):
        outputs = to_float(run.model(images.contiguous(memory_format=torch.channels_last)))
    leaves = {k: v.detach().requires_grad_() for k, v in outputs.items()}
    return cuda_seconds(lambda: weighted_total(run.task.loss(leaves, targets), run.task.loss.weights()).backward(), 20)


def pipeline_only(tmp: str, preload: bool) -> dict:
    """The DataLoader alone. W workers deliver batches in bursts of W (each worker makes one batch at a
    time), so the rate is timed from the end of the first burst over the next two."""
    run, dataset = setup_run(config(1, preload=preload), f"{tmp}/pipeline{int(preload)}", resume=False)
    workers = loader_workers(run)
    loader = iter(make_loader(run, dataset))
    for _ in range(workers):
        next(loader)
    start = time.perf_counter()
    for _ in range(2 * workers):
        next(loader)
    return {"images_per_s": 2 * workers * BATCH / (time.perf_counter() - start), "workers": workers}


def end_to_end(tmp: str, steps: int) -> dict:
    """train as a user runs it (preloaded synthetic data); the rate and utilisation after the
    first log window."""
    out = Path(tmp) / "e2e"
    with Utilisation() as util:
        train(config(steps, preload=True), out)
        end = time.monotonic()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steady = log[1:] or log
    window_s = sum(20 * BATCH / r["images_per_s"] for r in steady)
    rate = sum(r["images_per_s"] for r in steady) / len(steady)
    return {"images_per_s": rate, "gpu_util": util.mean_since(end - window_s), "final_loss": log[-1]["loss"]}


def run_tests() -> str:
    """pytest's summary line (pyproject's -q keeps it; a second -q would drop it), and its log on failure."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "tests/test_gpu_path.py"],
                          capture_output=True, text=True, timeout=300)
    return (done.stdout.strip().splitlines() or ["(no output)"])[-1] + ("" if done.returncode == 0 else f"\n{done.stdout[-3000:]}")


def compiled_child(timeout: float) -> dict | None:
    """model_only(compile=True) in a child process, so that a slow compilation can be cut off."""
    try:
        done = subprocess.run([sys.executable, __file__, "--compile-child"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": done.stderr[-1500:]}


def table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| measurement | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="end-to-end training steps")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-tests", action="store_true")
    parser.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    with tempfile.TemporaryDirectory() as tmp:
        if args.compile_child:
            print(json.dumps(model_only(True, tmp)))
            return
        run_all(args, tmp)


def run_all(args: argparse.Namespace, tmp: str) -> None:
    start = time.monotonic()
    name = torch.cuda.get_device_name()
    print(f"{name}, {os.cpu_count()} CPU cores, torch {torch.__version__}", flush=True)
    eager = model_only(False, tmp)
    print("model, eager:", eager, flush=True)
    pipe = pipeline_only(tmp, preload=False)
    print("data pipeline, rendering:", pipe, flush=True)
    loaded = pipeline_only(tmp, preload=True)
    print("data pipeline, preloaded:", loaded, flush=True)
    e2e = end_to_end(tmp, args.steps)
    print("end to end:", e2e, flush=True)
    tests = "skipped" if args.no_tests else run_tests()
    print("tests/test_gpu_path.py:", tests, flush=True)
    compiled = None
    if not args.no_compile and time.monotonic() - start < BUDGET_S - 60:
        compiled = compiled_child(BUDGET_S - (time.monotonic() - start))
    print("model, compiled:", compiled, flush=True)
    rows = [("machine", f"{name}, {os.cpu_count()} CPU cores, torch {torch.__version__}"),
            ("setting", f"{BACKBONE} {SIZE}px, K={K}, batch {BATCH}, {eager['precision']} autocast, "
                        f"channels_last={eager['channels_last']}"),
            ("model only, eager: images/s (ms/step, GPU util)",
             f"{eager['images_per_s']:.0f} ({eager['step_ms']:.1f} ms, {eager['gpu_util']:.0f} %)"),
            ("loss fwd+bwd / step (matching: in the workers)",
             f"{eager['loss_ms']:.2f} ms / {eager['step_ms']:.1f} ms = {100 * eager['loss_ms'] / eager['step_ms']:.2f} %"),
            ("host syncs per training step (CUDA sync debug mode)", f"{eager['syncs_per_step']:g}"),
            ("data pipeline alone, rendering synthetic images: images/s (workers)",
             f"{pipe['images_per_s']:.0f} ({pipe['workers']})"),
            ("data pipeline alone, preloaded synthetic images: images/s (workers)",
             f"{loaded['images_per_s']:.0f} ({loaded['workers']})"),
            ("data pipeline / model consumption (rendering, preloaded)",
             f"{pipe['images_per_s'] / eager['images_per_s']:.2f}x, {loaded['images_per_s'] / eager['images_per_s']:.2f}x"),
            ("end to end (train, preloaded): images/s, GPU util",
             f"{e2e['images_per_s']:.0f}, {e2e['gpu_util']:.0f} %"),
            ("model only, torch.compile: images/s", "not run" if compiled is None else
             f"{compiled['images_per_s']:.0f} ({compiled['step_ms']:.1f} ms)" if "images_per_s" in compiled else
             f"failed: {compiled['error'][-300:]}"),
            ("tests/test_gpu_path.py", tests.splitlines()[0]),
            ("whole check", f"{time.monotonic() - start:.0f} s")]
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
