"""Distributed runs survive a killed worker (torchrun --max-restarts) and span "nodes" (issue 12), on
the CPU with Gloo over loopback: a real torchrun, a real kill -9.

Tolerance: as tests/engine/test_distributed.py states for data-parallel runs, weights agree to an
absolute 1e-5 (SGD, the same global batch): the restarted run resumes last.pt with every rank's RNG
and the sampler at its step, so it retraces the uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import multibox
from multibox.engine.checkpoint import load_checkpoint

WEIGHT_ATOL = 1e-5
STEPS = 60

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("elastic") / "tiny.yaml"
    path.write_text("model: {backbone: tiny, image_size: 64, num_boxes: 16, hidden_dim: 64}\n"
                    "data: {synthetic_sizes: {train: 16, val: 4, test: 4}, synthetic_image_size: 64, num_workers: 0}\n"
                    "train: {batch_size: 2, log_every: 1, checkpoint_every: 5, optimizer: sgd, lr: 0.01, device: cpu}\n")
    return path


def torchrun(*launcher: str, config: Path, out: Path) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(multibox.__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "multibox", "train", "--preset", "paper",
           "--config", str(config), "--out", str(out), "--steps", str(STEPS)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].numel())


def logged_step(run: Path) -> int:
    log = run / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return max([int(line.split('"step": ')[1].split(",")[0].rstrip("}")) for line in lines if '"step": ' in line],
               default=0)


def worker_of_rank(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank (a child of the launcher ``parent``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.fixture(scope="module")
def reference(tiny_yaml) -> Path:
    """An uninterrupted 2-process run on one node."""
    out = tiny_yaml.parent / "reference"
    finish(torchrun("--standalone", "--nproc-per-node", "2", config=tiny_yaml, out=out))
    return out / "last.pt"


def test_a_killed_worker_restarts_from_the_last_checkpoint(tiny_yaml, reference):
    out = tiny_yaml.parent / "killed"
    proc = torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--monitor-interval", "0.2",
                    config=tiny_yaml, out=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((out / "last.pt").is_file() and logged_step(out) >= 7):
        time.sleep(0.05)
    victim = worker_of_rank(proc.pid, 1)
    assert victim is not None and logged_step(out) < STEPS, "the run ended before a worker could be killed"
    os.kill(victim, signal.SIGKILL)
    err = finish(proc)
    assert "torchrun restart 1: resuming" in err
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == STEPS and state["world_size"] == 2
    assert max_weight_diff(out / "last.pt", reference) < WEIGHT_ATOL


def test_two_nodes_on_one_machine_train_like_one_node(tiny_yaml, reference):
    out, port = tiny_yaml.parent / "two-nodes", free_port()
    nodes = [torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                      "--rdzv-endpoint", f"127.0.0.1:{port}", config=tiny_yaml, out=out) for rank in (0, 1)]
    for node in nodes:
        finish(node)
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == STEPS and state["world_size"] == 2
    assert max_weight_diff(out / "last.pt", reference) < WEIGHT_ATOL
