"""The feature cache at scale (issue 21): ranks cache and train on their own shard of the images, and maps
past a memory budget spill to a memory-mapped file on disk.

What "2 ranks on shards match 1 rank on all the images" means here: the union of the ranks' cached maps
is the single process's cache, map for map and bit for bit (every map is seeded by its image, size and
transform, never by the rank), and the feature statistics the head is normalized with, summed over the
ranks, equal the single process's to float rounding. The steps themselves then follow
tests/engine/test_distributed.py's DDP equivalence; the windows each rank draws differ from a single
process's draw by design (each rank permutes its own shard), so the trajectories are not compared.
Spilling is exact: the maps are fp16 in memory and on disk alike, so a run from disk has bit-identical
weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from multibox.config import Config
from multibox.data.build import training_split
from multibox.data.pipeline import EpochBatchSampler
from multibox.engine import feature_cache, trainer
from multibox.engine.checkpoint import load_checkpoint
from multibox.engine.map_store import MapStore
from multibox.engine.tasks import grid_localizer_task
from multibox.engine.trainer import train
from multibox.errors import Interrupted
from tests.engine.test_distributed import free_port

STEPS = 4


def cached_cfg(budget_gb: float = 3.0) -> Config:
    """The default conv-head localizer with cached features, shrunk: tiny backbone, 64 px, 6 images."""
    cfg = Config()
    cfg.model.backbone, cfg.model.image_size, cfg.model.stride, cfg.model.levels = "tiny", 64, 16, [16]
    cfg.model.conv_hidden, cfg.model.shapes_per_cell = 16, 2
    cfg.data.synthetic_sizes = {"train": 6, "val": 2, "test": 2}
    cfg.data.synthetic_image_size, cfg.data.num_workers, cfg.data.cache_scales = 64, 0, [1.0, 1.5]
    cfg.train.batch_size, cfg.train.device, cfg.train.log_every, cfg.train.steps = 2, "cpu", 1, STEPS
    cfg.train.window_cells, cfg.train.cache_memory_gb, cfg.train.optimizer = 4, budget_gb, "sgd"
    return cfg


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_a_map_store_past_its_budget_reads_back_from_disk(tmp_path):
    maps = [torch.randn(3, 4, 4).half() for _ in range(5)]
    store = MapStore(budget=2 * maps[0].numel() * 2, parent=tmp_path)  # room for two maps
    handles = [store.add(m) for m in maps]
    store.finish()
    assert store.in_memory == 2 * 96 and store.spilled_bytes == 3 * 96
    assert (store.folder / "maps.f16").stat().st_size == 3 * 96
    for h, m in zip(handles, maps):
        assert torch.equal(store.get(h), m)
    assert store.get(handles[4]).float().sum().item() == pytest.approx(maps[4].float().sum().item())
    folder = store.folder
    del store
    assert not folder.exists()  # the spill file goes with the store


def test_training_from_disk_equals_training_from_memory(tmp_path):
    """A memory budget of 0 puts every map on disk; the weights are identical to the in-memory run."""
    train(cached_cfg(3.0), tmp_path / "memory")
    disk_cfg = cached_cfg(0.0)
    disk_cfg.train.cache_dir = str(tmp_path / "spill")
    train(disk_cfg, tmp_path / "disk")
    a, b = weights(tmp_path / "memory"), weights(tmp_path / "disk")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any((tmp_path / "spill").iterdir())  # the spill folder is gone after the run


def test_no_room_in_memory_or_on_disk_says_why_in_one_line(monkeypatch, capsys, tmp_path):
    cfg = cached_cfg(0.0)
    monkeypatch.setattr(feature_cache, "disk_room", lambda folder: 1000)
    task = grid_localizer_task(cfg, training_split(cfg), None)
    assert task.net is None  # end to end on image crops
    lines = [line for line in capsys.readouterr().err.splitlines() if "feature cache" in line]
    assert len(lines) == 1 and "train.cache_memory_gb" in lines[0] and "end to end" in lines[0]


@pytest.mark.parametrize("items,batch", [(7, 2), (12, 3)])
def test_sharded_ranks_draw_their_own_items_at_distinct_positions(items, batch):
    ranks = [iter(EpochBatchSampler(items, batch, seed=1, rank=r, world_size=2, sharded=True)) for r in range(2)]
    seen = [set(), set()]
    for step in range(3 * items):
        keys = [next(it) for it in ranks]
        positions = [p for batch_keys in keys for _, _, p in batch_keys]
        assert len(set(positions)) == len(positions)  # no two windows share a random stream
        for r in range(2):
            assert all(0 <= i < items for i, _, _ in keys[r])
            seen[r] |= {i for i, _, _ in keys[r]}
    assert seen[0] == seen[1] == set(range(items))  # each rank goes through all of its shard
    resumed = iter(EpochBatchSampler(items, batch, seed=1, rank=1, world_size=2, sharded=True, start_step=5))
    fresh = iter(EpochBatchSampler(items, batch, seed=1, rank=1, world_size=2, sharded=True))
    for _ in range(5):
        next(fresh)
    assert next(resumed) == next(fresh)


def shard_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """One rank: its cached shard saved for the parent, a straight run, and a stopped-then-resumed run."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        cfg = cached_cfg()
        cfg.train.steps = None  # cache every map, not only a short run's need
        torch.manual_seed(cfg.train.seed)  # the backbone's initial weights, as train() seeds them
        task = grid_localizer_task(cfg, training_split(cfg), None)
        maps = [(m.features, m.boxes) for m in task.samples.maps]
        torch.save({"maps": maps, "mean": task.model.feature_mean, "std": task.model.feature_std},
                   Path(root) / f"shard{rank}.pt")
        cfg = cached_cfg()
        cfg.train.checkpoint_every = STEPS // 2  # distributed ranks resume the last periodic checkpoint
        train(cfg, Path(root) / "straight")
        real_step = trainer.train_step

        def interrupted_step(run, images, targets):  # every rank is stopped after step 2, as Ctrl-C / SIGTERM does
            if run.step == STEPS // 2:
                raise KeyboardInterrupt
            return real_step(run, images, targets)

        trainer.train_step = interrupted_step
        with pytest.raises(Interrupted):
            train(cfg, Path(root) / "resumed")
        trainer.train_step = real_step
        train(cfg, Path(root) / "resumed", resume=True)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    mp.spawn(shard_worker, args=(2, free_port(), str(root)), nprocs=2, join=True)
    return root


def test_the_shards_together_are_the_single_process_cache(shards):
    cfg = cached_cfg()
    cfg.train.steps = None
    torch.manual_seed(cfg.train.seed)
    single = grid_localizer_task(cfg, training_split(cfg), None)
    parts = [torch.load(shards / f"shard{r}.pt", weights_only=False) for r in range(2)]
    union = parts[0]["maps"] + parts[1]["maps"]
    assert len(parts[0]["maps"]) and len(parts[1]["maps"])  # both ranks hold a share
    assert len(union) == len(single.samples.maps)

    def key(features, boxes):
        return features.float().sum().item(), features.shape, np.round(boxes, 3).tobytes()

    remaining = {key(m.features, m.boxes): m for m in single.samples.maps}
    for features, boxes in union:
        match = remaining.pop(key(features, boxes))
        assert torch.equal(match.features, features) and np.array_equal(match.boxes, boxes)
    for part in parts:  # every rank normalizes with the statistics of all the images
        torch.testing.assert_close(part["mean"], single.model.feature_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(part["std"], single.model.feature_std, rtol=1e-5, atol=1e-6)


def test_a_sharded_run_resumes_exactly(shards):
    """A stopped run resumes last.pt with the sampler at its step and recomputes the same shard (a
    restarted rank under torchrun takes the same path: tests/engine/test_elastic.py)."""
    straight, resumed = weights(shards / "straight"), weights(shards / "resumed")
    assert load_checkpoint(shards / "resumed" / "last.pt")["step"] == STEPS
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
