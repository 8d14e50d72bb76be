"""Full detection: square regions, region crops, score = confidence x probability, the Detector, `detect`."""

import json

import pytest
import torch
from PIL import Image

from multibox.cli import main
from multibox.data.regions import crop_regions, image_tensor, square_regions
from multibox.engine.trainer import train
from multibox.errors import UserError
from multibox.inference.detector import Detector, combine_scores
from multibox.jobs.train import train_classifier
from multibox.modeling.classifier import Classifier


@pytest.mark.parametrize("box,mode,expected", [
    ([10, 10, 30, 50], "max", [0, 10, 40, 50]),    # side max(20, 40) = 40, centred at (20, 30)
    ([10, 10, 30, 50], "min", [10, 20, 30, 40]),   # side min(20, 40) = 20
    ([80, 0, 100, 10], "max", [80, 0, 100, 20]),   # [80, -5, 100, 15] shifted down into the image
    ([90, 40, 100, 60], "max", [80, 40, 100, 60]),  # side 20, [85, 40, 105, 60] shifted left
    ([0, 0, 100, 30], "max", [20, 0, 80, 60]),     # side 100 > image height 60: cut to 60, shifted down
    ([0, 0, 100, 30], "min", [35, 0, 65, 30]),
    ([50, 20, 50, 20], "max", [49.5, 19.5, 50.5, 20.5]),  # degenerate box: side MIN_SIDE = 1
])
def test_square_regions_hand_worked_in_a_100_by_60_image(box, mode, expected):
    region = square_regions(torch.tensor([box], dtype=torch.float32), 100, 60, mode)
    assert region.tolist() == [expected]


def test_square_regions_are_batched_per_image_size():
    boxes = torch.tensor([[[0, 0, 10, 40]], [[0, 0, 10, 40]]], dtype=torch.float32)  # [B=2, N=1, 4]
    regions = square_regions(boxes, torch.tensor([[100.0], [30.0]]), torch.tensor([[100.0], [100.0]]))
    assert regions.tolist() == [[[0, 0, 40, 40]], [[0, 5, 30, 35]]]  # the second cut to the 30 px width, centred


def test_crop_regions_cut_exact_pixels_in_one_call():
    pixels = torch.arange(3 * 6 * 8, dtype=torch.float32).reshape(3, 6, 8) % 251
    crops = crop_regions(pixels, torch.tensor([[0.0, 0, 8, 6], [2, 1, 6, 5]]), 4)
    assert crops.shape == (2, 3, 4, 4) and crops.dtype == torch.uint8
    assert torch.equal(crops[1], pixels[:, 1:5, 2:6].to(torch.uint8))  # same-size region: the pixels
    same = crop_regions(pixels, torch.tensor([[0.0, 0, 8, 6]]), 6)  # not square: resampled, not shifted
    assert same.shape == (1, 3, 6, 6) and crop_regions(pixels, torch.zeros(0, 4), 4).shape == (0, 3, 4, 4)


def test_score_is_confidence_times_probability():
    conf = torch.tensor([0.5, 0.8])
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.7, 0.1, 0.2]])  # C = 2 classes + background
    box, label, score = combine_scores(conf, probs)
    assert box.tolist() == [1, 0, 1, 0] and label.tolist() == [0, 1, 1, 0]
    assert torch.allclose(score, torch.tensor([0.56, 0.30, 0.08, 0.05]))
    box, label, score = combine_scores(conf, probs, best_box_per_class=True)  # ILSVRC: one box per class
    assert box.tolist() == [1, 0] and label.tolist() == [0, 1] and torch.allclose(score, torch.tensor([0.56, 0.30]))
    box, label, score = combine_scores(torch.zeros(0), torch.zeros(0, 3), best_box_per_class=True)
    assert len(box) == len(label) == len(score) == 0


class FixedLocalizer:
    """Stands in for a Localizer: the same boxes and confidences for every image."""

    device = torch.device("cpu")
    nms_iou = 0.5

    def __init__(self, boxes, scores):
        self.boxes, self.scores, self.calls = boxes, scores, []

    def predict_batch(self, images, top_k=10, min_score=0.0, iou=None):
        self.calls.append(top_k)
        keep = (self.scores >= min_score).nonzero()[:, 0][:top_k]
        return [(self.boxes[keep], self.scores[keep]) for _ in images]


class CountingBackbone(torch.nn.Module):
    """Features = mean colour; records every batch it sees."""

    out_features = 3

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return x.mean(dim=(2, 3))


def test_detector_classifies_all_boxes_of_all_images_in_one_pass_and_multiplies_scores():
    boxes = torch.tensor([[0.0, 0, 20, 20], [10, 10, 50, 30], [30, 0, 40, 40]])
    localizer = FixedLocalizer(boxes, torch.tensor([0.9, 0.5, 0.2]))
    backbone = CountingBackbone()
    classifier = Classifier(backbone, 3, hidden_dim=0, dropout=0.0)
    detector = Detector(localizer, classifier, ["a", "b"], 16, region="max", top_n=2)
    images = [Image.new("RGB", (60, 40), (200, 0, 0)), Image.new("RGB", (50, 50), (0, 0, 200))]
    out = detector.detect_batch(images, per_box=False)  # every (box, class) pair, as for per-class AP
    assert backbone.batches == [4] and localizer.calls == [2]  # 2 images x top 2 boxes, one forward pass
    with torch.no_grad():
        crops = torch.cat([crop_regions(image_tensor(im), square_regions(boxes[:2], im.width, im.height), 16)
                           for im in images])
        probs = classifier(crops)["logits"].softmax(-1)
    for i, det in enumerate(out):
        assert len(det["scores"]) == 2 * 2  # N boxes x C classes, background never reported
        expected = localizer.scores[det["box_index"]] * probs[2 * i + det["box_index"], det["labels"]]
        assert torch.allclose(det["scores"], expected)
        assert torch.equal(det["boxes"], boxes[det["box_index"]])
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


@pytest.fixture
def checkpoints(tiny_cfg, tmp_path):
    tiny_cfg.train.steps = 1
    return train(tiny_cfg, tmp_path / "loc"), train_classifier(tiny_cfg, tmp_path / "cls")


def test_from_checkpoints_and_cli_detect_write_names_and_ids(checkpoints, tmp_path):
    loc, cls = checkpoints
    detector = Detector.from_checkpoints(loc, cls, mode="ilsvrc", multiscale=True)
    assert detector.localizer.nms_iou == 0.4 and detector.region == "max"  # the classifier's training region
    assert detector.class_names == ["rectangle", "ellipse", "triangle", "diamond", "cross"]
    Image.new("RGB", (90, 60), (20, 200, 20)).save(tmp_path / "a.png")
    assert main(["detect", "--model", str(loc), "--classifier", str(cls), "--out", str(tmp_path / "det"),
                 "--top-k", "3", "--device", "cpu", str(tmp_path / "a.png")]) == 0
    [entry] = json.loads((tmp_path / "det" / "detections.json").read_text())
    n = len(entry["boxes"])  # ilsvrc: at most one box per class
    assert n == len(entry["scores"]) == len(entry["labels"]) == len(entry["label_ids"]) == len(entry["label_scores"]) <= 5
    assert all(detector.class_names[i] == name for i, name in zip(entry["label_ids"], entry["labels"]))
    assert entry["scores"] == sorted(entry["scores"], reverse=True)
    assert (tmp_path / "det" / "images" / "a.jpg").is_file()


def test_detect_flag_mistakes_exit_2_with_one_line(checkpoints, tmp_path, capsys):
    loc, cls = checkpoints
    Image.new("RGB", (30, 30)).save(tmp_path / "a.png")
    cases = [(["--classifier", str(loc)], "--classifier"),
             (["--classifier", str(tmp_path / "no.pt")], "no such checkpoint"),
             (["--model", str(cls), "--classifier", str(cls)], "holds a classifier, not a localizer"),
             (["--classifier", str(cls), "--mode", "coco"], "--mode")]
    for extra, fragment in cases:
        argv = ["detect", "--model", str(loc), "--out", str(tmp_path / "o"), "--device", "cpu", *extra,
                str(tmp_path / "a.png")]
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err, (extra, err)


def test_score_combination_keeps_each_box_once_with_its_best_class():
    conf = torch.tensor([0.5, 0.8, 0.1])
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.7, 0.1, 0.2], [0.2, 0.3, 0.5]])  # C = 2 + background
    box, label, score = combine_scores(conf, probs, best_label_per_box=True)
    assert box.tolist() == [1, 0, 2] and label.tolist() == [0, 1, 1]  # box 2: background wins, best real class 1
    assert torch.allclose(score, torch.tensor([0.56, 0.30, 0.03]))
    assert combine_scores(torch.zeros(0), torch.zeros(0, 3), best_label_per_box=True)[0].numel() == 0


def test_detector_reports_each_box_once_and_applies_min_score_and_max_det():
    boxes = torch.tensor([[0.0, 0, 20, 20], [10, 10, 50, 30], [30, 0, 40, 40]])
    localizer = FixedLocalizer(boxes, torch.tensor([0.9, 0.5, 0.2]))
    classifier = Classifier(CountingBackbone(), 3, hidden_dim=0, dropout=0.0)
    detector = Detector(localizer, classifier, ["a", "b"], 16, region="max", top_n=3)
    image = Image.new("RGB", (60, 40), (200, 0, 0))
    det = detector.detect(image)
    assert sorted(det["box_index"].tolist()) == [0, 1, 2]  # each box once, never once per class
    assert torch.allclose(det["scores"], localizer.scores[det["box_index"]] * det["label_scores"])
    pairs = detector.detect_batch([image], per_box=False)[0]
    for i in range(3):  # the label is the box's best class, its score the best pair's
        mine = pairs["box_index"] == det["box_index"][i]
        assert det["scores"][i] == pairs["scores"][mine].max() and det["labels"][i] == pairs["labels"][mine][0]
    strict = detector.detect(image, min_score=float(det["scores"][1]), max_det=1)
    assert len(strict["scores"]) == 1 and strict["scores"][0] == det["scores"][0]
    assert localizer.calls[-1] == 3  # top_n localizer boxes, whatever max_det
    with pytest.raises(UserError, match="min_score 2"):
        detector.detect(image, min_score=2)
    with pytest.raises(UserError, match="use detect_batch"):
        detector.detect([image, image])
