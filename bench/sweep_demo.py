"""Hyper-parameter sweep for the CPU demo: train several configs for the same number of steps, in
parallel processes, and print the test-split detection rate of each next to the priors baseline.

    python bench/sweep_demo.py --steps 1200 --parallel 4 --device cuda

Quality at a fixed step count does not depend on the machine, so a bigger machine can choose the
settings that `multibox demo` then runs on two CPU cores. Results of the run that chose the demo's
settings (one H200 machine, 16 cores, `--parallel 8 --workers 1 --threads 1 --device cuda`) are in
docs/demo_sweep.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GRID = [  # (name, overrides of demo_config as "section.field": value; every swept field explicit)
    ("lr0.01-grid4", {"train.lr": 0.01, "model.grid": 4}),
    ("lr0.005-grid4", {"train.lr": 0.005, "model.grid": 4}),
    ("lr0.01-grid8", {"train.lr": 0.01, "model.grid": 8}),
    ("lr0.005-grid8", {"train.lr": 0.005, "model.grid": 8}),
    ("lr0.003-grid8", {"train.lr": 0.003, "model.grid": 8}),  # the demo's choice
    ("lr0.005-grid8-h1024", {"train.lr": 0.005, "model.grid": 8, "model.hidden_dim": 1024}),
    ("lr0.005-grid8-2400", {"train.lr": 0.005, "model.grid": 8, "train.steps": 2400}),
    ("adam3e-4-grid8", {"train.optimizer": "adam", "train.lr": 3e-4, "model.grid": 8}),
]

CHILD = """
import json, sys
from multibox.engine.trainer import train
from multibox.jobs.paper import Plan, localizer_config
from multibox.jobs.evaluate import evaluate
cfg = localizer_config(Plan(), 1200)  # the fc demo this sweep chose the settings of
cfg.train.steps = {steps}
cfg.train.device = {device!r}
cfg.data.num_workers = {workers}
for k, v in {overrides!r}.items():
    section, name = k.split(".")
    setattr(getattr(cfg, section), name, v)
out = {out!r}
path = train(cfg, out)
m = evaluate(path, out + "/eval", split="test", device={device!r})
print(json.dumps({{"dr": m["detection_rate"], "priors": m["baselines"]["priors"]["detection_rate"]}}))
"""


def run_one(name: str, overrides: dict, args) -> tuple[str, dict | str]:
    code = CHILD.format(steps=args.steps, device=args.device, workers=args.workers, overrides=overrides,
                        out=str(Path(args.out) / name))
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode:
        return name, proc.stderr.strip().splitlines()[-1]
    return name, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--only", nargs="*")
    args = p.parse_args()
    grid = [g for g in GRID if not args.only or g[0] in args.only]
    with ThreadPoolExecutor(args.parallel) as pool:
        for name, result in pool.map(lambda g: run_one(*g, args), grid):
            if isinstance(result, str):
                print(f"{name:<24} FAILED: {result}")
            else:
                row = " ".join(f"@{k}={100 * v:.1f}" for k, v in result["dr"].items())
                print(f"{name:<24} {row}   priors @10={100 * result['priors']['10']:.1f}", flush=True)


if __name__ == "__main__":
    main()
