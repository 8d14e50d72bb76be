"""Data-parallel training on the CPU (Gloo): 2 processes x batch b train like 1 process x batch 2b.

Tolerance: the two runs differ only in floating-point summation order (per-rank sums all-reduced
instead of one sum over the batch), so every logged loss must agree to a relative 1e-5 and every
weight to an absolute 1e-5 after 4 steps (seen here: 1.5e-7 and 2.4e-7); with per-rank batch norm
(sync_bn off) the losses differ by about 4e-4, which the test checks too, so the tolerance tells the
two apart. The runs use SGD: Adagrad's first step is lr * g / |g| per weight, so 1e-8 summation
noise in a near-zero gradient component becomes a full step of either sign, and the trajectories of
any two runs that sum in different orders drift apart (about 5e-4 after 4 steps, seen once),
distributed or not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import multibox
import torch.distributed as dist
import torch.multiprocessing as mp

from multibox.engine import distributed
from multibox.engine.trainer import train
from multibox.engine.checkpoint import load_checkpoint
from multibox.config import Config
from multibox.data.pipeline import EpochBatchSampler

STEPS = 4
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir: Path) -> np.ndarray:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return np.array([r["loss"] for r in map(json.loads, lines) if "loss" in r])  # not the validation lines


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def worker(rank: int, world_size: int, port: int, cfg_dict: dict, root: str) -> None:
    """One rank: a straight run, the same run stopped and resumed, and a run with per-rank batch norm."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        cfg = Config.from_dict(cfg_dict)
        train(cfg, Path(root) / "ddp")
        cfg.train.steps = STEPS // 2
        train(cfg, Path(root) / "resumed")
        cfg.train.steps = STEPS
        train(cfg, Path(root) / "resumed", resume=True)
        cfg.train.sync_bn = False
        train(cfg, Path(root) / "local_bn")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three 2-rank runs (batch 2 each) and the 1-process reference (batch 4), same seed."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", 64, 16, 64
    cfg.data.synthetic_sizes = {"train": 16, "val": 4, "test": 4}
    cfg.data.synthetic_image_size = 64
    cfg.data.num_workers = 0
    cfg.train.device, cfg.train.log_every, cfg.train.steps, cfg.train.optimizer = "cpu", 1, STEPS, "sgd"
    cfg.train.batch_size = 2
    mp.spawn(worker, args=(2, free_port(), cfg.to_dict(), str(root)), nprocs=2, join=True)
    cfg.train.batch_size = 4
    train(cfg, root / "single")
    return root


def test_two_ranks_follow_the_single_process_loss_trajectory(runs):
    single, ddp = losses(runs / "single"), losses(runs / "ddp")
    assert len(single) == len(ddp) == STEPS
    assert single[-1] != single[0]  # training moved, so agreement below is not trivial
    np.testing.assert_allclose(ddp, single, rtol=LOSS_RTOL)
    assert max_weight_diff(weights(runs / "ddp"), weights(runs / "single")) < WEIGHT_ATOL


def test_per_rank_batch_norm_departs_from_the_single_process_run(runs):
    """The tolerance above is tight enough to see per-rank batch statistics."""
    single, local = losses(runs / "single"), losses(runs / "local_bn")
    assert np.abs(local / single - 1).max() > 10 * LOSS_RTOL


def test_distributed_resume_matches_the_uninterrupted_run(runs):
    straight, resumed = load_checkpoint(runs / "ddp" / "last.pt"), load_checkpoint(runs / "resumed" / "last.pt")
    assert resumed["step"] == straight["step"] == STEPS and resumed["world_size"] == 2
    assert len(resumed["torch_rng_ranks"]) == 2
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    assert len(losses(runs / "resumed")) == STEPS  # rank 0 alone writes the log


@pytest.mark.parametrize("num_items,batch", [(16, 2), (17, 3), (40, 5)])
def test_ranks_together_draw_the_single_process_batch(num_items, batch):
    """At every step the union of the ranks' sample keys is the 1-process batch of world_size * b."""
    world = 2
    single = iter(EpochBatchSampler(num_items, world * batch, seed=3))
    ranks = [iter(EpochBatchSampler(num_items, batch, seed=3, rank=r, world_size=world)) for r in range(world)]
    for _ in range(3 * max(1, num_items // (world * batch))):  # a few epochs
        union = sorted(key for it in ranks for key in next(it))
        assert union == sorted(next(single))


def test_world_comes_from_the_torchrun_variables():
    world = distributed.from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert (world.rank, world.world_size, world.local_rank, world.local_world_size) == (3, 8, 1, 4)
    assert world.distributed and not world.is_main
    assert distributed.from_env({}) == distributed.World()
    with pytest.raises(Exception, match="RANK"):
        distributed.from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_global_batch_norm_without_a_group_is_batch_norm():
    bn = torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    converted = distributed.convert_batchnorm(torch.nn.Sequential(bn), torch.device("cpu"))
    assert isinstance(converted[0], distributed.GlobalBatchNorm) and converted[0].weight is bn.weight
    reference = torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(converted(x), reference(x))
    torch.testing.assert_close(converted[0].running_var, reference.running_var)


def test_torchrun_launches_the_cli(tmp_path):
    """`torchrun --nproc-per-node 2 -m multibox train`: one log, one checkpoint, from rank 0."""
    config = tmp_path / "tiny.yaml"
    config.write_text("model: {backbone: tiny, image_size: 64, num_boxes: 16, hidden_dim: 64}\n"
                      "data: {synthetic_sizes: {train: 8, val: 4, test: 4}, synthetic_image_size: 64, num_workers: 0}\n"
                      "train: {batch_size: 2, log_every: 1}\n")
    out = tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(multibox.__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "multibox", "train", "--preset", "paper", "--config", str(config), "--out", str(out), "--steps", "2",
           "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder") == 1
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 2 and state["world_size"] == 2
    assert len(losses(out)) == 2
