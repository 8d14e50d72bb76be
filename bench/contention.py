"""A fair share of a busy CPU (issue 22 item 6): one training run timed alone and beside a busy process,
with every CPU (torch's own default), one fewer, OpenMP's passive wait policy, and multibox's default (the
CPUs less those busy when it starts, multibox.threads.default_threads).

    PYTHONPATH=src python bench/contention.py [--steps 120] [--repeats 1]

The workload is `multibox train --steps N` on 16 of the embedded synthetic scenes with the default
model (frozen EfficientNet-Lite0, cached features), in a fresh process each time; the busy process is a pure
Python loop (`while True: pass`), one core's worth of someone else's work. Each condition's wall time
is printed side by side from one run of this script; docs/threads.md keeps a table and the choice.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from multibox.threads import available_cpus


@contextmanager
def busy(on: bool):
    """A process spinning on one core while the block runs (nothing when ``on`` is False)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def timed_run(steps: int, threads: int | None, passive: bool, tmp: str, n: int) -> float:
    """Seconds of one `multibox train` run in a fresh process."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    config = f"{tmp}/small.yaml"
    with open(config, "w") as f:
        f.write("data: {synthetic_sizes: {train: 16, val: 4, test: 4}}\n")
    command = [sys.executable, "-m", "multibox", "train", "--config", config, "--steps", str(steps), "--out", f"{tmp}/run{n}"]
    if threads is not None:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cpus = available_cpus()
    fewer = max(1, cpus - 1)
    conditions = [(where, load, threads, passive) for where, load in (("alone", False), ("beside a busy process", True))
                  for threads, passive in ((cpus, False), (fewer, False), (cpus, True), (None, False))]
    print(f"{cpus} CPUs in this process's affinity; {args.steps} steps; best of {args.repeats}\n")
    print("| machine | threads | OpenMP wait | seconds |\n|---|---|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (where, load, threads, passive) in enumerate(conditions):
            with busy(load):
                best = min(timed_run(args.steps, threads, passive, tmp, n * 10 + r) for r in range(args.repeats))
            print(f"| {where} | {threads or 'multibox default (CPUs less busy ones)'} | {'passive' if passive else 'active (default)'} | "
                  f"{best:.1f} |", flush=True)


if __name__ == "__main__":
    main()
