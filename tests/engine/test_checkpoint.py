"""Checkpoint loading never runs code, names what a wrong file is, finds a run folder's checkpoint,
and a killed write leaves the previous checkpoint loadable."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from multibox.config import Config
from multibox.engine.checkpoint import load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
from multibox.errors import UserError
from multibox.modeling.classifier import build_classifier
from multibox.modeling.localizer import build_model


def tiny_config() -> Config:
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", 64, 16, 64
    return cfg


def localizer_state(step: int = 0) -> dict:
    cfg = tiny_config()
    priors = torch.rand(16, 2).repeat(1, 2) * torch.tensor([0.5, 0.5, 1.0, 1.0])
    model = build_model("tiny", priors.sort(dim=1).values, None, 64, 4)
    return {"task": "localizer", "model": model.state_dict(), "config": cfg.to_dict(), "step": step,
            "class_names": ["a"], "prior_match_counts": torch.zeros(16, dtype=torch.int64)}


def classifier_state() -> dict:
    model = build_classifier("tiny", 2, None, 64, 4)
    return {"task": "classifier", "model": model.state_dict(), "config": tiny_config().to_dict(), "step": 3,
            "class_names": ["cat", "dog"]}


class Payload:
    """Harmless pickle payload: unpickling it would create the file ``target``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_localizer_round_trip_weights_only(tmp_path):
    state = localizer_state(step=5)
    save_checkpoint(tmp_path / "best.pt", state)
    torch.load(tmp_path / "best.pt", weights_only=True)  # loadable without any allow-listed global
    model, cfg, loaded = load_model(tmp_path / "best.pt")
    assert loaded["step"] == 5 and cfg.model.backbone == "tiny"
    for name, tensor in state["model"].items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "payload-ran"
    torch.save(localizer_state() | {"extra": Payload(target)}, tmp_path / "model.pt")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "model.pt")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'model.pt'}: refused") and "\n" not in message
    assert "the Python global io.open" in message  # names what it refused
    assert not target.exists()


def test_plain_pickle_payload_is_refused(tmp_path):
    import pickle

    target = tmp_path / "payload-ran"
    (tmp_path / "x.pt").write_bytes(pickle.dumps({"model": Payload(target)}))
    with pytest.raises(UserError, match="x.pt: refused"):
        load_checkpoint(tmp_path / "x.pt")
    assert not target.exists()


def test_old_checkpoint_without_task_or_head_loads(tmp_path):
    """A model.pt of an older run: no "task" entry (a localizer), no model.head (the fc head)."""
    state = localizer_state()
    del state["task"], state["class_names"], state["prior_match_counts"]
    del state["config"]["model"]["head"]
    state["optimizer"] = torch.optim.Adagrad([torch.zeros(2, requires_grad=True)]).state_dict()
    save_checkpoint(tmp_path / "model.pt", state)
    model, cfg, _ = load_model(tmp_path)  # a run folder with only model.pt
    assert cfg.model.head == "fc" and model.num_boxes == 16


def test_classifier_where_a_localizer_is_expected(tmp_path):
    save_checkpoint(tmp_path / "cls.pt", classifier_state())
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "cls.pt", kind="localizer")
    assert str(info.value) == f"{tmp_path / 'cls.pt'}: holds a classifier, not a localizer (the network needed here)"
    with pytest.raises(UserError, match=r"cls\.pt: holds a classifier, not a localizer"):
        load_model(tmp_path / "cls.pt", "localizer")
    assert load_model(tmp_path / "cls.pt", "classifier")[0].num_outputs == 3


def test_foreign_state_dict(tmp_path):
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "resnet.pth")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "resnet.pth")) and "bare state_dict of 2 tensors" in message
    assert "expected" in message or "not a multibox checkpoint" in message


@pytest.mark.parametrize("content, what", [
    ({"priors": torch.zeros(4, 4), "config": {}}, "priors"),
    ([1, 2, 3], "holds a list"),
    ({"weights": 1}, "entries weights"),
])
def test_other_files_say_what_they_hold(tmp_path, content, what):
    torch.save(content, tmp_path / "f.pt")
    with pytest.raises(UserError, match=what):
        load_checkpoint(tmp_path / "f.pt")


def test_truncated_and_empty_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", localizer_state())
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "a.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "b.pt").write_bytes(b"")
    for name in ("a.pt", "b.pt"):
        with pytest.raises(UserError, match=rf"{name}: not a multibox checkpoint \(truncated or damaged file\)"):
            load_checkpoint(tmp_path / name)


def test_weights_of_another_network(tmp_path):
    state = localizer_state()
    state["config"]["model"]["hidden_dim"] = 32  # the config no longer describes these weights
    save_checkpoint(tmp_path / "m.pt", state)
    with pytest.raises(UserError, match=r"m\.pt: checkpoint weights do not fit the network its config describes"):
        load_model(tmp_path / "m.pt")


def test_run_folder_order_and_missing(tmp_path):
    for step, name in enumerate(("model.pt", "last.pt", "best.pt")):
        save_checkpoint(tmp_path / name, localizer_state(step))
        assert load_checkpoint(tmp_path)["step"] == step  # best.pt, else last.pt, else model.pt
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as info:
        load_checkpoint(empty)
    assert str(info.value) == f"{empty}: a folder without a checkpoint (looked for best.pt, last.pt, model.pt)"
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_removes_leftovers_and_uses_the_umask(tmp_path):
    (tmp_path / ".last.pt.k1ll3d.tmp").write_bytes(b"x" * 100)
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "last.pt", {"model": {}, "config": {}})
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last.pt", localizer_state(step=1))

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match=r"last\.pt: cannot write \(no space left on the device\)"):
        save_checkpoint(tmp_path / "last.pt", localizer_state(step=2))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


KILLED_WRITER = textwrap.dedent("""
    import sys, time, torch
    from multibox.engine.checkpoint import save_checkpoint
    path = sys.argv[1]
    config = {"model": {"head": "fc"}}  # the least a checkpoint that loads holds (with the priors)
    save_checkpoint(path, {"model": {"w": torch.ones(1000), "priors": torch.zeros(1, 4)}, "config": config, "step": 1})

    def slow_save(obj, f, *args, **kwargs):  # half the bytes written, then stuck until killed
        with open(f, "wb") as out:
            out.write(b"PK" + b"x" * 50_000)
            out.flush()
        print("mid-write", flush=True)
        time.sleep(60)

    torch.save = slow_save
    save_checkpoint(path, {"model": {"w": torch.zeros(1000), "priors": torch.zeros(1, 4)}, "config": config, "step": 2})
""")


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "mid-write"
    finally:
        child.kill()  # SIGKILL: no handler, no cleanup runs
        child.wait(timeout=30)
    assert child.returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # the killed write's temporary file
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(1000))
    save_checkpoint(path, state | {"step": 3})  # the next save removes the killed write's file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_errors_after_loading_name_the_file(tmp_path):
    """model_from_checkpoint(load_checkpoint(p)), as the jobs call it, names the file (a run folder's)."""
    save_checkpoint(tmp_path / "best.pt", classifier_state())
    with pytest.raises(UserError) as info:
        model_from_checkpoint(load_checkpoint(tmp_path), "localizer")
    assert str(info.value) == f"{tmp_path / 'best.pt'}: the checkpoint holds a classifier, not a localizer"
    state = localizer_state()
    state["config"]["train"]["batch_size"] = 0  # a hand-edited config
    save_checkpoint(tmp_path / "bad.pt", state)
    with pytest.raises(UserError, match=r"bad\.pt: config: train\.batch_size: expected a positive integer, got 0"):
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))


def test_a_loaded_checkpoint_saves_as_a_plain_dict(tmp_path):
    save_checkpoint(tmp_path / "a.pt", localizer_state(step=4))
    loaded = load_checkpoint(tmp_path / "a.pt")
    save_checkpoint(tmp_path / "b.pt", loaded | {"step": 5})
    save_checkpoint(tmp_path / "c.pt", loaded)
    assert type(torch.load(tmp_path / "c.pt", weights_only=True)) is dict
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 5


def test_numpy_and_paths_are_stored_as_plain_types(tmp_path):
    import numpy as np

    state = localizer_state() | {"class_names": [np.str_("cat")], "val_score": np.float64(0.5),
                                 "counts": np.arange(3), "source": tmp_path / "data"}
    save_checkpoint(tmp_path / "m.pt", state)
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert loaded["class_names"] == ["cat"] and type(loaded["val_score"]) is float
    assert torch.equal(loaded["counts"], torch.arange(3)) and loaded["source"] == str(tmp_path / "data")
    with pytest.raises(TypeError, match=r"checkpoint\.extra: a object cannot be stored"):
        save_checkpoint(tmp_path / "x.pt", {"model": {}, "config": {}, "extra": object()})
    assert not (tmp_path / "x.pt").exists()
