"""Evaluation reports: metrics.json of a tiny model, detection files (COCO results, detections.json)
giving the model's own numbers, report.md's per-class tables only for labelled detections, `compare`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.datasets import basic_spec, write_coco
from fixtures.models import train_tiny

from multibox.data.build import load_split
from multibox.jobs.baseline import run_baseline
from multibox.jobs.compare import compare
from multibox.jobs.evaluate import evaluate, evaluate_detections
from multibox.cli import main
from multibox.config import Config
from multibox.evaluation.coco import STAT_KEYS
from multibox.evaluation.detection_rate import SIZE_RANGES, DetectionRateBySize
from multibox.evaluation.scoring import dataset_targets
from multibox.evaluation.voc import ClassAgnosticPR

# The per-method numbers a detection file must reproduce exactly.
SCORE_KEYS = ["num_images", "num_objects", "max_boxes", "detection_rate", "curve", "detection_rate_by_size",
              "pr_ap50", "coco"]


@pytest.fixture(scope="module")
def model_eval(tmp_path_factory) -> tuple[Path, dict, Config]:
    """A 2-step model evaluated on its 8 training images (21 objects: some are hit, the numbers are not all 0)."""
    root = tmp_path_factory.mktemp("model")
    model, cfg = train_tiny(root / "run")
    metrics = evaluate(model, root / "eval", split="train", device="cpu")
    return root / "eval", metrics, cfg


def test_metrics_json_keys_and_values(model_eval):
    out, metrics, cfg = model_eval
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert {"num_images", "num_objects", "detection_rate", "curve", "baselines", "skipped_images",
            "detection_rate_by_size", "pr_ap50", "coco"} <= set(saved)
    dataset = load_split(cfg, "train")
    assert saved["num_images"] == 8 and saved["skipped_images"] == 0
    assert saved["num_objects"] == dataset.num_objects() > 0
    assert list(saved["detection_rate"]) == ["1", "5", "10"] and len(saved["curve"]) == 16  # K = 16
    assert all(saved["detection_rate"][k] == saved["curve"][int(k) - 1] for k in saved["detection_rate"])
    assert 0 < saved["curve"][-1] <= 1 and np.all(np.diff(saved["curve"]) >= 0)
    assert set(saved["baselines"]) == {"priors"}
    assert {"detection_rate", "curve", "pr_ap50", "coco"} <= set(saved["baselines"]["priors"])
    assert set(saved["coco"]) == set(STAT_KEYS)


def test_rates_by_size_add_up_to_the_overall_rate(model_eval):
    _, metrics, _ = model_eval
    by_size = metrics["detection_rate_by_size"]
    assert set(by_size) == set(SIZE_RANGES)
    assert sum(s["num_objects"] for s in by_size.values()) == metrics["num_objects"]
    for k, rate in metrics["detection_rate"].items():
        hits = sum(s["detection_rate"][k] * s["num_objects"] for s in by_size.values() if s["num_objects"])
        assert hits == pytest.approx(rate * metrics["num_objects"])


def test_rate_by_size_hand_worked():
    """31² px is small, exactly 32² medium, exactly 96² large (COCO's edges); ignored objects not counted."""
    target = {"boxes": torch.tensor([[0.0, 0, 31, 31], [100, 0, 132, 32], [0, 100, 96, 196], [200, 200, 300, 300]]),
              "ignore": torch.tensor([False, False, False, True])}
    boxes = torch.tensor([[100.0, 0, 132, 32], [300, 300, 310, 310], [0, 100, 96, 190]])  # hits medium, misses, hits large
    metric = DetectionRateBySize(max_k=5)
    metric.update([{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7])}], [target])
    by_size = metric.compute()["detection_rate_by_size"]
    assert by_size == {"small": {"num_objects": 1, "detection_rate": {"1": 0.0, "5": 0.0}},
                       "medium": {"num_objects": 1, "detection_rate": {"1": 1.0, "5": 1.0}},
                       "large": {"num_objects": 1, "detection_rate": {"1": 0.0, "5": 1.0}}}
    metric.reset()
    metric.update([{"boxes": boxes, "scores": torch.ones(3)}], [{"boxes": target["boxes"][1:2]}])
    assert metric.compute()["detection_rate_by_size"]["small"] == {"num_objects": 0, "detection_rate": {"1": None, "5": None}}


def test_report_files_and_no_class_tables_without_labels(model_eval):
    out, metrics, _ = model_eval
    curves = json.loads((out / "pr_curve.json").read_text())
    assert set(curves) == {"DeepMultiBox", "priors baseline"}
    assert len(curves["DeepMultiBox"]["precision"]) == len(curves["DeepMultiBox"]["recall"]) > 0
    for name in ("detection_rate.png", "pr_curve.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    rate = 100 * metrics["detection_rate"]["10"]
    assert f"| DeepMultiBox | {100 * metrics['detection_rate']['1']:.1f} |" in report and f"{rate:.1f} |" in report
    assert "| priors baseline |" in report and "(Fig. 1)" in report and "(Fig. 5)" in report
    assert "Table 1" not in report and "Table 2" not in report and "voc" not in metrics


def test_pr_ap50_and_coco_are_those_of_the_written_detections(model_eval):
    """The model's detections.json, scored directly (ClassAgnosticPR; pycocotools with useCats=0)."""
    out, metrics, cfg = model_eval
    dataset = load_split(cfg, "train")
    entries = json.loads((out / "detections.json").read_text())
    preds = [{"boxes": np.array(e["boxes"], np.float32).reshape(-1, 4), "scores": np.array(e["scores"], np.float32)}
             for e in entries]
    pr = ClassAgnosticPR()
    pr.update(preds, dataset_targets(dataset))
    assert metrics["pr_ap50"] == pytest.approx(pr.compute()["AP"])
    assert [metrics["coco"][k] for k in STAT_KEYS] == pytest.approx(pycocotools_stats(dataset, entries), abs=1e-12)


def pycocotools_stats(dataset, entries) -> list[float]:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": i} for i in range(len(dataset))], "categories": [{"id": 1}], "annotations": []}
    for i, r in enumerate(dataset.records):
        for box, ignored in zip(r.boxes.tolist(), r.ignore.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": 1,
                                      "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(ignored)})
    dets = [{"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            for i, e in enumerate(entries) for b, s in zip(e["boxes"], e["scores"])]
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    evaluation = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluation.params.useCats = 0
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return list(evaluation.stats)


def test_detection_files_give_the_models_numbers(model_eval, tmp_path, capsys):
    out, metrics, cfg = model_eval
    ours = evaluate_detections(out / "detections.json", tmp_path / "ours", split="train", cfg=cfg, num_boxes=16)
    entries = json.loads((out / "detections.json").read_text())
    results = [{"image_id": e["image_id"], "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
               for e in entries for (x1, y1, x2, y2), s in zip(e["boxes"], e["scores"])]
    results.insert(3, {"image_id": "no-such-image", "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.99})
    (tmp_path / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    coco = evaluate_detections(tmp_path / "results.json", tmp_path / "coco", split="train", cfg=cfg, num_boxes=16)
    for key in SCORE_KEYS:
        assert ours[key] == metrics[key], key
        assert coco[key] == metrics[key], key
    assert ours["unmatched_detections"] == 0 and coco["unmatched_detections"] == 1
    err = capsys.readouterr().err
    assert "1 entries name no image" in err and "no-such-image" in err
    assert ours["baselines"] == {} == coco["baselines"]  # no model: no priors baseline
    assert "detections" in ours and "model" not in ours
    assert not (tmp_path / "ours" / "detections.json").exists()  # the input is not rewritten (OUT may hold it)


def test_images_missing_from_the_file_count_as_missed(model_eval, tmp_path, capsys):
    out, metrics, cfg = model_eval
    entries = json.loads((out / "detections.json").read_text())
    hit = max(range(len(entries)), key=lambda i: len(entries[i]["boxes"]))
    (tmp_path / "d.json").write_text(json.dumps(entries[:hit] + entries[hit + 1:]))
    got = evaluate_detections(tmp_path / "d.json", tmp_path / "o", split="train", cfg=cfg, num_boxes=16)
    assert got["images_without_detections"] == 1 and got["num_objects"] == metrics["num_objects"]
    assert "1 of 8 images have no detections" in capsys.readouterr().err
    assert "1 image(s) had no detections" in (tmp_path / "o" / "report.md").read_text()


# ------------------------------------------------------------------ labelled detections (Tables 1 and 2)
#
# basic_spec(): img_a (COCO id 10) holds an apple [4, 6, 30, 40] (884 px², small) and a pear [20, 10, 60, 44]
# (medium); img_b (id 20) a kiwi [0, 0, 50, 70] (medium); img_c (id 30) nothing. Category ids 1, 5, 9 are
# apple, kiwi, pear. Hand-made guesses, by score:
#   0.95 img_c pear   (no object: FP)
#   0.90 img_a apple  on the apple (TP)
#   0.80 img_a kiwi   on the pear: a wrong label, but a hit for the class-agnostic numbers
#   0.75 img_b kiwi   on [0, 0, 20, 20] (IoU 0.11: FP)
#   0.70 img_b kiwi   on the kiwi (TP)
# VOC AP (11-point): apple 1; kiwi ranks FP, FP, TP -> precision 1/3 at recall 1 -> 1/3; pear 0; mAP 4/9.
# det@5: img_a hit (apple); img_b keeps only its best kiwi box (0.75, the miss) -> 1/2; class@5: 1.
# Class-agnostic: FP, TP, TP, FP, TP over 3 objects: precision .0 .5 .667 .5 .6 at recall 0 1/3 2/3 2/3 1;
# 11-point AP = (7 * 2/3 + 4 * 0.6) / 11. Detection rate: k=1 finds the apple only (1/3), k=2 everything.
GUESSES = [(30, 9, [1, 1, 20, 20], 0.95), (10, 1, [4, 6, 30, 40], 0.9), (10, 5, [20, 10, 60, 44], 0.8),
           (20, 5, [0, 0, 20, 20], 0.75), (20, 5, [0, 0, 50, 70], 0.7)]
NAMES = {1: "apple", 5: "kiwi", 9: "pear"}
FILES = {10: "img_a", 20: "img_b", 30: "img_c"}


def coco_results(guesses, same_category: bool = False) -> list[dict]:
    return [{"image_id": i, "category_id": 1 if same_category else c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for i, c, (x1, y1, x2, y2), s in guesses]


def ours_by_file_name(guesses) -> list[dict]:
    """detections.json entries naming images by a path in another folder, labels by class name."""
    entries = {}
    for i, c, box, s in guesses:
        entry = entries.setdefault(i, {"path": f"/elsewhere/{FILES[i]}.jpg", "boxes": [], "scores": [], "labels": []})
        entry["boxes"].append(box)
        entry["scores"].append(s)
        entry["labels"].append(NAMES[c])
    return list(entries.values())


@pytest.fixture
def coco_data(tmp_path) -> str:
    return str(write_coco(tmp_path / "coco", basic_spec()))


def evaluate_file(tmp_path, name, entries, data) -> dict:
    (tmp_path / name).write_text(json.dumps(entries))
    return evaluate_detections(tmp_path / name, tmp_path / f"out-{name}", data, split="train")


def test_labelled_detections_give_table_1_and_2(tmp_path, coco_data):
    coco = evaluate_file(tmp_path, "results.json", coco_results(GUESSES), coco_data)
    ours = evaluate_file(tmp_path, "detections.json", ours_by_file_name(GUESSES), coco_data)
    for metrics in (coco, ours):
        assert metrics["voc"]["ap"] == pytest.approx({"apple": 1.0, "kiwi": 1 / 3, "pear": 0.0})
        assert metrics["voc"]["mAP"] == pytest.approx(4 / 9)
        assert metrics["ilsvrc"]["det@5"] == 0.5 and metrics["ilsvrc"]["class@5"] == 1.0
        assert metrics["pr_ap50"] == pytest.approx((7 * 2 / 3 + 4 * 0.6) / 11)
        assert metrics["curve"] == pytest.approx([1 / 3, 1.0]) and metrics["detection_rate"] == {"1": pytest.approx(1 / 3)}
        by_size = metrics["detection_rate_by_size"]
        assert by_size["small"] == {"num_objects": 1, "detection_rate": {"1": 1.0}}
        assert by_size["medium"] == {"num_objects": 2, "detection_rate": {"1": 0.0}}
        assert metrics["unmatched_detections"] == 0 and metrics["images_without_detections"] == 0
    report = (tmp_path / "out-results.json" / "report.md").read_text()
    assert "Average precision per class (Table 1)" in report and "| class | apple | kiwi | pear |" in report
    assert "| results.json | 1.000 | 0.333 | 0.000 |" in report and "| results.json | 0.444 |" in report
    assert "(Table 2)" in report and "| results.json | 50.0 | 100.0 | 50.0 | 2 |" in report


def test_unlabelled_detections_have_no_class_tables(tmp_path, coco_data):
    metrics = evaluate_file(tmp_path, "results.json", coco_results(GUESSES, same_category=True), coco_data)
    assert "voc" not in metrics and "ilsvrc" not in metrics
    assert metrics["pr_ap50"] == pytest.approx((7 * 2 / 3 + 4 * 0.6) / 11)  # labels never mattered here
    report = (tmp_path / "out-results.json" / "report.md").read_text()
    assert "Table 1" not in report and "Table 2" not in report and "(Fig. 5)" in report


# ------------------------------------------------------------------------------------------- compare


def test_compare_writes_a_table_with_each_run(model_eval, tmp_path, capsys):
    out, metrics, cfg = model_eval
    random = run_baseline("random", tmp_path / "random", split="train", num_boxes=16, cfg=cfg)
    capsys.readouterr()
    code = main(["compare", str(out / "metrics.json"), str(tmp_path / "random"), "--out", str(tmp_path / "cmp"),
                 "--names", "tiny model,uniform"])
    assert code == 0
    table, printed = (tmp_path / "cmp" / "compare.md").read_text(), capsys.readouterr().out
    for name, m in (("tiny model", metrics), ("uniform", random)):
        cells = " | ".join(f"{100 * m['detection_rate'][k]:.1f}" for k in ("1", "5", "10"))
        assert f"| {name} | {cells} |" in table
        assert f"{name}  " in printed and f"{100 * m['detection_rate']['10']:.1f}%" in printed
    assert (tmp_path / "cmp" / "detection_rate.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_names_runs_by_method_and_rejects_bad_names(model_eval, tmp_path, capsys):
    out, _, _ = model_eval
    assert list(compare([str(out / "metrics.json")], tmp_path / "c")) == ["DeepMultiBox"]
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.json").write_text((out / "metrics.json").read_text())
    runs = compare([str(tmp_path / "a" / "metrics.json"), str(tmp_path / "b")], tmp_path / "c")
    assert list(runs) == ["DeepMultiBox (a)", "DeepMultiBox (b)"]  # one method twice: told apart by folder
    assert main(["compare", str(out), "--out", str(tmp_path / "c"), "--names", "a,b"]) == 2
    assert "2 name(s) for 1 metrics file(s)" in capsys.readouterr().err
    assert main(["compare", str(out), str(out), "--out", str(tmp_path / "c")]) == 2
    assert "give each a display name" in capsys.readouterr().err


@pytest.mark.parametrize("argv,fragment", [
    (["evaluate", "--detections", "nope.json", "--out", "o"], "no such file"),
    (["evaluate", "--detections", "bad.json", "--out", "o"], "not JSON"),
    (["evaluate", "--detections", "empty.json", "--out", "o"], "non-empty JSON list"),
    (["evaluate", "--detections", "other.json", "--out", "o"], "neither COCO results keys"),
    (["evaluate", "--detections", "badbox.json", "--out", "o"], "entry 0: bbox"),
    (["compare", "nope.json", "--out", "o"], "no such metrics file"),
])
def test_detection_file_mistakes_are_one_line(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("bad.json").write_text("[{")
    Path("empty.json").write_text("[]")
    Path("other.json").write_text('[{"x": 1}]')
    Path("badbox.json").write_text('[{"image_id": "test-000000", "bbox": [1, 2], "score": 1, "category_id": 1}]')
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_evaluate_needs_exactly_one_source(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "m.pt", "--detections", "d.json", "--out", "o"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
