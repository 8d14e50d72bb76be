"""The GPU code paths of training, exercised on the CPU: autocast (bf16, and fp16 with a GradScaler),
channels_last, torch.compile's wiring, DataLoader workers on CUDA, and loss values reaching the host
only on log steps. Tests marked ``cuda`` run the same paths on a GPU where there is one
(bench/gpu_check.py runs them).
"""

from __future__ import annotations

import json
import types

import pytest
import torch

from multibox.engine import distributed, trainer
from multibox.data.build import load_split
from multibox.engine.precision import resolve_precision
from multibox.engine.trainer import Run, loader_workers, make_loader, setup_run, train, train_step
from multibox.modeling.losses import MultiBoxLoss
from multibox.config import Config
from multibox.errors import TrainingDiverged, UserError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def setup(cfg: Config, tmp_path, name: str = "run") -> Run:
    run, _ = setup_run(cfg, tmp_path / name, resume=False)
    return run


def first_batch(run: Run) -> tuple[torch.Tensor, dict]:
    images, targets, _ = next(iter(make_loader(run, load_split(run.cfg, "train"))))
    return images, targets


def conv_inputs(run: Run) -> list[torch.Tensor]:
    """Records the input of the backbone's first convolution on every forward pass."""
    seen: list[torch.Tensor] = []
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda mod, args, out: seen.append(out))
    return seen


def test_precision_modes_on_cpu(tiny_cfg):
    t, cpu = tiny_cfg.train, torch.device("cpu")
    auto = resolve_precision(t, cpu)
    assert auto.dtype is None and not auto.scaler.is_enabled() and not auto.channels_last
    t.amp, t.channels_last = "bf16", True
    bf16 = resolve_precision(t, cpu)
    assert bf16.dtype == torch.bfloat16 and not bf16.scaler.is_enabled() and bf16.channels_last
    t.amp = "fp16"
    fp16 = resolve_precision(t, cpu)
    assert fp16.dtype == torch.float16 and fp16.scaler.is_enabled()
    t.amp = "fp8"
    with pytest.raises(UserError, match="fp8"):
        resolve_precision(t, cpu)


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
@pytest.mark.parametrize("bf16_supported,dtype", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_precision_on_cuda_picks_bf16_where_supported(tiny_cfg, monkeypatch, bf16_supported, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    precision = resolve_precision(tiny_cfg.train, torch.device("cuda"))
    assert precision.dtype == dtype and precision.channels_last


def test_bf16_autocast_and_channels_last_train_on_cpu(tiny_cfg, tmp_path):
    tiny_cfg.train.amp, tiny_cfg.train.channels_last = "bf16", True
    run = setup(tiny_cfg, tmp_path)
    seen = conv_inputs(run)
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images, targets = first_batch(run)
    before = conv.weight.detach().clone()
    terms = train_step(run, images, targets)
    assert seen[0].dtype == torch.bfloat16 and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())  # loss in fp32
    assert not torch.equal(before, conv.weight)

    tiny_cfg.train.amp, tiny_cfg.train.channels_last = "off", False
    fp32 = setup(tiny_cfg, tmp_path, "fp32")
    reference = train_step(fp32, images, targets)
    torch.testing.assert_close(terms["loss"], reference["loss"], rtol=0.05, atol=0)  # bf16 keeps ~3 digits


def test_fp16_with_grad_scaler_on_cpu(tiny_cfg, tmp_path):
    tiny_cfg.train.amp, tiny_cfg.train.steps = "fp16", 2
    path = train(tiny_cfg, tmp_path / "run")
    state = torch.load(path, weights_only=False)
    assert state["grad_scaler"]["scale"] > 0  # the scaler ran and was saved for resume
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_channels_last_changes_layout_not_results(tiny_cfg, tmp_path):
    images, targets = None, None
    results = []
    for channels_last in (False, True):
        tiny_cfg.train.channels_last = channels_last
        run = setup(tiny_cfg, tmp_path, f"cl{channels_last}")
        if images is None:
            images, targets = first_batch(run)
        seen = conv_inputs(run)
        results.append(train_step(run, images, targets)["loss"])
        assert seen[0].is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_compile_wraps_the_model_and_trains_alike(tiny_cfg, tmp_path, monkeypatch):
    """train.compile goes through torch.compile (the eager backend here: the inductor's C++ build
    takes minutes on two cores; bench/gpu_check.py compiles for real on a GPU)."""
    monkeypatch.setattr(trainer, "COMPILE_OPTIONS", {"backend": "eager"})
    tiny_cfg.train.compile = True
    run = setup(tiny_cfg, tmp_path, "compiled")
    assert isinstance(run.net, torch._dynamo.eval_frame.OptimizedModule) and run.net is not run.model
    images, targets = first_batch(run)
    compiled = train_step(run, images, targets)["loss"]
    tiny_cfg.train.compile = False
    eager = setup(tiny_cfg, tmp_path, "eager")
    assert eager.net is eager.model
    torch.testing.assert_close(compiled, train_step(eager, images, targets)["loss"])


def test_loss_values_reach_the_host_on_log_steps_only(tiny_cfg, tmp_path, monkeypatch):
    copies = []
    original = distributed.mean_over_ranks
    monkeypatch.setattr(distributed, "mean_over_ranks", lambda t: copies.append(len(t)) or original(t))
    tiny_cfg.train.steps, tiny_cfg.train.log_every = 6, 3
    train(tiny_cfg, tmp_path / "run")
    assert copies == [3, 3]  # two flushes of three steps each, nothing per step
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [3, 6]


def test_divergence_between_log_steps_names_its_step(tiny_cfg, tmp_path, monkeypatch):
    original = MultiBoxLoss.forward
    calls = []

    def poisoned(self, outputs, targets):
        calls.append(1)
        terms = original(self, outputs, targets)
        return terms | {"conf": terms["conf"] * float("inf")} if len(calls) == 2 else terms

    monkeypatch.setattr(MultiBoxLoss, "forward", poisoned)
    tiny_cfg.train.steps, tiny_cfg.train.log_every = 6, 4
    with pytest.raises(TrainingDiverged, match=r"step 2: loss term 'conf' is inf"):
        train(tiny_cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing diverged was saved


@pytest.mark.parametrize("cores,local_world,workers", [(16, 1, 8), (16, 4, 3), (2, 1, 2)])
def test_cuda_gets_enough_loader_workers(tiny_cfg, monkeypatch, cores, local_world, workers):
    monkeypatch.setattr(trainer.os, "sched_getaffinity", lambda pid: set(range(cores)))
    tiny_cfg.data.num_workers = 2
    run = types.SimpleNamespace(cfg=tiny_cfg, device=torch.device("cuda"), task=types.SimpleNamespace(workers=None),
                                world=distributed.World(local_world_size=local_world))
    assert loader_workers(run) == workers
    run.device = torch.device("cpu")
    assert loader_workers(run) == 2  # the CPU keeps data.num_workers


# ------------------------------------------------------------------------------------------- on a GPU


@cuda
@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_cuda_training_with_amp_and_channels_last(tiny_cfg, tmp_path, amp):
    tiny_cfg.train.device, tiny_cfg.train.amp, tiny_cfg.train.steps = "cuda", amp, 3
    tiny_cfg.train.cuda_workers = 0
    run = setup(tiny_cfg, tmp_path)
    assert run.precision.channels_last and run.precision.scaler.is_enabled() == (run.precision.dtype == torch.float16)
    seen = conv_inputs(run)
    images, targets = first_batch(run)
    terms = train_step(run, images, targets)
    assert seen[0].dtype == run.precision.dtype and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert seen[0].device.type == "cuda" and all(torch.isfinite(v) for v in terms.values())


@cuda
def test_cuda_compile_with_inductor(tiny_cfg, tmp_path):
    tiny_cfg.train.device, tiny_cfg.train.compile, tiny_cfg.train.amp = "cuda", True, "off"
    tiny_cfg.train.cuda_workers = 0
    run = setup(tiny_cfg, tmp_path, "compiled")
    images, targets = first_batch(run)
    compiled = train_step(run, images, targets)["loss"]
    tiny_cfg.train.compile = False
    eager = train_step(setup(tiny_cfg, tmp_path, "eager"), images, targets)["loss"]
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)


@cuda
def test_cuda_training_step_does_not_wait_for_the_device(tiny_cfg, tmp_path):
    """No host-device synchronisation inside a step (bf16 needs no loss-scale check; prior matching ran
    in the loader; the loss values stay on the device until a log step)."""
    tiny_cfg.train.device, tiny_cfg.train.amp, tiny_cfg.train.cuda_workers = "cuda", "auto", 0
    run = setup(tiny_cfg, tmp_path)
    if run.precision.dtype != torch.bfloat16:
        pytest.skip("fp16 loss scaling checks for overflow on the host")
    images, targets = first_batch(run)
    images = images.pin_memory()
    targets = {k: v.pin_memory() for k, v in targets.items()}
    train_step(run, images, targets)  # warm-up: cuDNN picks its algorithms
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_step(run, images, targets)
    finally:
        torch.cuda.set_sync_debug_mode("default")
