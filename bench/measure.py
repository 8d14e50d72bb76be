"""Timing and machine description shared by the benchmarks in bench/ (run by bench/run_all.py).

Every benchmark times both sides of a comparison in one process on one machine, takes the fastest of
a few repeats (the machine may be shared: the fastest run is the one least disturbed by others) and
reports one row per comparison: ``Result(name, ours, reference, unit, target)``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Result:
    """One line of the performance table. ratio = ours / reference (higher is better for rates,
    so benchmarks report shares and times as the quantity whose target is a lower bound)."""

    name: str
    ours: float
    reference: float
    unit: str  # of ours and reference, e.g. "images/s"
    target: float | None = None  # ratio to reach; None: reported only
    note: str = ""
    lower_is_better: bool = False  # e.g. a share of time: the target is an upper bound
    percent: bool = False  # print the ratio as a percentage (shares, fractions of a peak)

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("nan")

    def ratio_text(self) -> str:
        return f"{100 * self.ratio:.3g} %" if self.percent else f"{self.ratio:.2f}x"

    def target_text(self) -> str:
        if self.target is None:
            return ""
        bound = "<=" if self.lower_is_better else ">="
        return f"{bound} {100 * self.target:.3g} %" if self.percent else f"{bound} {self.target:g}x"

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target


def fastest(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> str:
    """One line naming the machine the numbers come from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_name()}, {cores} cores ({threads} torch/ORT threads used), {gpu}; torch {torch.__version__}, "
            f"Python {platform.python_version()}; load average {load:.1f} at the start")


def main(run: Callable[[int], list[Result]], doc: str, value: str, ratio: str) -> None:
    """The command line every benchmark script shares: --threads N, then one line per Result
    (``value``: format of both sides, e.g. ".2f"; ``ratio``: e.g. "{:.2f}x")."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for row in run(args.threads):
        print(f"{row.name}: {row.ours:{value}} vs {row.reference:{value}} {row.unit} = {ratio.format(row.ratio)}")


def yolo11n(threads: int):
    """Ultralytics' YOLO11n built from its YAML (random weights: speed only), set up for CPU prediction and
    running on ``threads`` torch threads; None without the bench-only ``ultralytics`` package.

    Ultralytics sets OMP_NUM_THREADS=1 when imported (where unset) and, when its predictor is set up (the
    first predict), torch's threads to cores - 1: one on a 2-core machine, for the whole process, so
    every model timed after it ran on one thread. The comparison is at ``threads`` on both sides."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        from ultralytics import YOLO
    except ImportError:
        return None
    model = YOLO("yolo11n.yaml")
    model.predict(torch.zeros(1, 3, 64, 64), imgsz=64, verbose=False, device="cpu")  # sets its predictor up
    torch.set_num_threads(threads)
    return model


PAUSE_S = 0.5  # before each timed pass (interleaved_rates)


def interleaved_rates(predictors: dict, images: list, rounds: int = 3) -> dict:
    """{name: images/s} of each ``predictors[name]`` (image -> anything) over ``images``, measured in
    ``rounds`` rounds that each time one pass of every predictor in turn (after one warm-up call each),
    each credited with its fastest pass: a slower or faster spell of the machine falls on all sides
    alike, where timing one side after the other would give it to one of them. A pause before each pass
    lets the previous side's idle threads stop spinning (torch's OpenMP threads spin for a while after
    their last op and took cores from the ONNX Runtime pass after them)."""
    for predict in predictors.values():
        predict(images[0])
    best = dict.fromkeys(predictors, float("inf"))
    for _ in range(rounds):
        for name, predict in predictors.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            for image in images:
                predict(image)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(images) / seconds for name, seconds in best.items()}
