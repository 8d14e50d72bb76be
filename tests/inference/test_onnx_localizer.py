"""`--model model.onnx`: the exported graph run by ONNX Runtime behind the Localizer API gives the
checkpoint's detections within export's tolerance (conv head and the paper's fc head; whole, tiles,
multiscale, tta), `evaluate` scores an .onnx through the CLI as it scores the checkpoint, and the
loader picks the backend by suffix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from multibox.cli import main
from multibox.config import Config
from multibox.engine.checkpoint import save_checkpoint
from multibox.errors import UserError
from multibox.inference.export import BOX_TOLERANCE_PX, SCORE_TOLERANCE
from multibox.inference.loading import load_localizer, load_with_record, refuse_onnx_classifier
from multibox.inference.localizer import Localizer
from multibox.inference.onnx_localizer import OnnxLocalizer, session_options
from multibox.jobs.export import export_job
from multibox.modeling.localizer import build_grid_model, build_model

pytest.importorskip("onnxruntime")
SIZE = 64


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine two spin-waiting OpenMP threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_data(cfg: Config) -> Config:
    """Synthetic data of a few 96 px images, read in the main process."""
    cfg.data.synthetic_sizes, cfg.data.synthetic_image_size, cfg.data.num_workers = {"train": 4, "val": 3, "test": 3}, 96, 0
    return cfg


def warm_batchnorm(model: torch.nn.Module) -> None:
    """Batch-norm statistics from random batches, so different images give different outputs."""
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))
    model.eval()


def fc_checkpoint(tmp_path) -> tuple:
    """The paper preset (fc head) on the tiny backbone with a randomised head, K = 16."""
    cfg = small_data(Config.preset("paper"))
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", SIZE, 16, 64
    torch.manual_seed(0)
    xy = torch.rand(16, 2) * 0.5
    model = build_model("tiny", torch.cat([xy, xy + 0.1 + torch.rand(16, 2) * 0.4], 1), None, 64, cfg.model.grid)
    torch.nn.init.normal_(model.head.loc.weight, std=0.2)
    torch.nn.init.normal_(model.head.conf.weight, std=0.5)
    return save(tmp_path / "fc.pt", model, cfg)


def conv_checkpoint(tmp_path) -> tuple:
    """The default conv head (separable) on the tiny backbone with a randomised head."""
    cfg = small_data(Config.preset("default"))
    cfg.model.backbone, cfg.model.image_size, cfg.model.stride, cfg.model.weights = "tiny", SIZE, 16, None
    cfg.model.nms_iou = 0.35  # as resolved from objects that never overlap (engine.nms_rule); the fc's is §4.1's 0.5
    m = cfg.model
    torch.manual_seed(0)
    shapes = torch.tensor([[8.0, 8.0], [20.0, 14.0], [14.0, 24.0]])
    model = build_grid_model("tiny", shapes, SIZE, None, m.levels, m.stride, m.conv_hidden, m.conv_depth,
                             m.conv_head, m.feature_norm)
    for p in model.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return save(tmp_path / "conv.pt", model, cfg)


def save(path, model, cfg) -> tuple:
    warm_batchnorm(model)
    counts = torch.arange(model.num_boxes, dtype=torch.int64)
    save_checkpoint(path, {"task": "localizer", "model": model.state_dict(), "config": cfg.to_dict(),
                           "prior_match_counts": counts})
    onnx = path.with_suffix(".onnx")
    export_job(path, "onnx", onnx)
    return path, onnx


def images() -> list[Image.Image]:
    """A wide, a tall and a square image of smooth random colour (so boxes differ between windows)."""
    rng = np.random.default_rng(0)
    out = []
    for w, h in ((150, 90), (80, 130), (100, 100)):
        low = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        out.append(Image.fromarray(low).resize((w, h), Image.BILINEAR))
    return out


def assert_same_detections(got: list, want: list, window_side: float) -> None:
    """Per image the same detections: each box of one list has a box in the other within
    BOX_TOLERANCE_PX of the S x S input (scaled to the window's pixels) whose score is within
    SCORE_TOLERANCE. Matched as sets: many windows of a smooth image score alike, and an order swap of
    two scores equal within float error is no difference."""
    box_tol = BOX_TOLERANCE_PX * window_side / SIZE
    for (boxes, scores), (ref_boxes, ref_scores) in zip(got, want, strict=True):
        assert len(ref_scores) > 0 and boxes.shape == ref_boxes.shape
        near = ((boxes[:, None] - ref_boxes[None]).abs().amax(-1) <= box_tol) & (
            (scores[:, None] - ref_scores[None]).abs() <= SCORE_TOLERANCE)  # [N, N]
        assert near.any(0).all() and near.any(1).all()


@pytest.fixture(scope="module", params=["fc", "conv"])
def exported(request, tmp_path_factory):
    make = fc_checkpoint if request.param == "fc" else conv_checkpoint
    return make(tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("windows,tile,tta", [("whole", None, None), ("tiles", 48, None), ("multiscale", None, None),
                                              ("whole", None, "flip")])
def test_onnx_localizer_gives_the_checkpoints_detections(exported, windows, tile, tta):
    checkpoint, onnx = exported
    torch_loc = Localizer.from_checkpoint(checkpoint, windows=windows, tile=tile, tta=tta)
    onnx_loc = load_localizer(onnx, "cpu", windows=windows, tile=tile, tta=tta)
    assert isinstance(onnx_loc, OnnxLocalizer) and onnx_loc.num_boxes == torch_loc.num_boxes
    ims = images()
    want = torch_loc.predict_batch(ims, top_k=None)  # every box NMS keeps: no cut at a tie of the k-th score
    assert_same_detections(onnx_loc.predict_batch(ims, top_k=None), want, max(max(im.size) for im in ims))
    one = onnx_loc.predict(ims[0], top_k=20)  # predict is predict_batch of one
    assert torch.equal(one[0], onnx_loc.predict_batch(ims[:1], top_k=20)[0][0])


def test_the_onnx_file_alone_says_what_running_it_needs(exported, tmp_path):
    checkpoint, onnx = exported
    loc, record = load_with_record(onnx, "cpu")
    torch_loc, torch_record = load_with_record(checkpoint, "cpu")
    trained_nms = 0.5 if record.config.model.head == "fc" else 0.35  # the model's own threshold travels with it
    assert (loc.image_size, loc.windows, loc.nms_iou) == (SIZE, torch_loc.windows, trained_nms) == (SIZE, torch_loc.windows, torch_loc.nms_iou)
    assert record.config.to_dict() == torch_record.config.to_dict()
    assert torch.equal(record.priors, torch_record.priors) and torch.equal(record.match_counts, torch_record.match_counts)
    alone = tmp_path / "moved.onnx"  # without FILE.json beside it
    alone.write_bytes(onnx.read_bytes())
    assert load_localizer(alone, "cpu").image_size == SIZE


def test_an_export_without_metadata_runs_from_its_json_and_evaluate_says_what_it_lacks(tmp_path, capsys):
    import onnx

    checkpoint, exported = fc_checkpoint(tmp_path)
    old = tmp_path / "old.onnx"  # as exports were written before the metadata: FILE.json beside only
    model = onnx.load(str(exported))
    del model.metadata_props[:]
    onnx.save(model, str(old))
    with pytest.raises(UserError, match="no multibox metadata in the file and no readable old.onnx.json"):
        load_localizer(old, "cpu")
    (tmp_path / "old.onnx.json").write_text((tmp_path / "fc.onnx.json").read_text())
    loc, record = load_with_record(old, "cpu")
    assert (loc.image_size, loc.num_boxes, loc.windows) == (SIZE, 16, "center") and record.config is None  # paper preset
    capsys.readouterr()
    assert main(["evaluate", "--model", str(old), "--split", "val", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without its training config" in err[0] and "export it again" in err[0]


def test_onnx_mistakes_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such ONNX model"):
        load_localizer(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(UserError, match="not an ONNX model ONNX Runtime can load"):
        load_localizer(tmp_path / "junk.onnx")
    with pytest.raises(UserError, match="runs without a classifier"):
        refuse_onnx_classifier(tmp_path / "m.onnx", tmp_path / "cls.pt")
    refuse_onnx_classifier(tmp_path / "m.pt", tmp_path / "cls.pt")  # a checkpoint may have one


def test_session_threads_follow_the_cores_and_spinning_can_be_turned_off():
    import os

    options = session_options(spinning=False)
    assert options.intra_op_num_threads == len(os.sched_getaffinity(0)) and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(threads=3).get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_evaluate_an_onnx_through_the_cli_as_its_checkpoint(tmp_path):
    checkpoint, onnx = fc_checkpoint(tmp_path)
    metrics, found = {}, {}
    for name, model in (("pt", checkpoint), ("onnx", onnx)):
        out = tmp_path / f"eval_{name}"
        assert main(["evaluate", "--model", str(model), "--split", "val", "--out", str(out), "--device", "cpu"]) == 0
        metrics[name] = json.loads((out / "metrics.json").read_text())
        found[name] = json.loads((out / "detections.json").read_text())
    pt, ox = metrics["pt"], metrics["onnx"]
    assert ox["model"] == str(onnx) and ox["max_boxes"] == pt["max_boxes"] == 16 and ox["num_images"] == 3
    assert set(ox["baselines"]) == set(pt["baselines"]) == {"priors"}  # the priors baseline from the .onnx's metadata
    want = [(torch.tensor(e["boxes"]), torch.tensor(e["scores"])) for e in found["pt"]]
    got = [(torch.tensor(e["boxes"]), torch.tensor(e["scores"])) for e in found["onnx"]]
    assert [e["image_id"] for e in found["onnx"]] == [e["image_id"] for e in found["pt"]]
    assert_same_detections(got, want, 96)  # the synthetic images are 96 px squares
