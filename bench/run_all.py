"""`make bench`: the performance benchmarks in one run, as a Markdown table (printed and written to
bench/results.md).

* bench/inference_speed.py: localizer images/s (eager, ONNX Runtime) against SSDlite320 and
  Faster R-CNN 320 with the same mobilenet_v3_large family of backbones; target >= 3x SSDlite;
* bench/default_model.py: the default as trained on trees-dev against YOLO11n, eager / ONNX Runtime /
  int8 (targets 1.5x eager, 3x ONNX Runtime);
* bench/flops.py: achieved forward GFLOP/s against the fp32 matmul peak measured here; target >= 50 %;
* bench/train_step.py: matching + loss share of a B = 128, K = 200 step (target <= 5 %) and data
  pipeline against model consumption (target >= 2x).

Each number comes from this one run on this machine; both sides of every ratio are measured in the
same process. GPU numbers come from bench/gpu_check.py on a GPU machine.

    PYTHONPATH=src python bench/run_all.py [--threads N] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import default_model  # noqa: E402
import flops  # noqa: E402
import inference_speed  # noqa: E402
import train_step  # noqa: E402
from measure import Result, machine  # noqa: E402

BENCHMARKS = {"inference": inference_speed.run, "default model": default_model.run, "flops": flops.run,
              "train step": train_step.run}


def table(rows: list[Result]) -> str:
    lines = ["| benchmark | ours | reference | unit | ratio | target | met |", "|---|---:|---:|---|---:|---|---|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.name} | {r.ours:.4g} | {r.reference:.4g} | {r.unit} | {r.ratio_text()} | "
                     f"{r.target_text()} | {met} |")
    return "\n".join(lines)


def report(rows: list[Result], header: str, seconds: float, note: str) -> str:
    note = f"{note}\n\n" if note else ""
    return (f"# Performance (`make bench`)\n\nMachine: {header}.\n\n{note}{table(rows)}\n\n"
            f"Whole run: {seconds / 60:.1f} min. Ratio = ours / reference; every pair measured in one process, "
            f"fastest of a few repeats. Method and models: the docstrings of bench/inference_speed.py, "
            f"bench/flops.py and bench/train_step.py.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads for torch and ONNX Runtime (default: torch's, i.e. the cores)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    parser.add_argument("--only", choices=list(BENCHMARKS), action="append", help="run only these")
    parser.add_argument("--note", default="", help="a sentence about the conditions, written above the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header, start, rows = machine(args.threads), time.perf_counter(), []
    print(f"machine: {header}", flush=True)
    for name in args.only or BENCHMARKS:
        print(f"{name}:", flush=True)
        rows += BENCHMARKS[name](args.threads)
    text = report(rows, header, time.perf_counter() - start, args.note)
    print("\n" + text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
