"""The one-box-per-class network (§4.4.2's competitor): outputs, class-conditional loss, its training task,
its inference (per-class guesses and NMS) and its scoring by the ILSVRC det@5 metric."""

import torch
from torch import nn

from multibox.config import Config
from multibox.data.synthetic import SyntheticDataset
from multibox.engine.tasks import collate_labelled, one_box_per_class_task, training_task
from multibox.evaluation.ilsvrc import ILSVRCMetric
from multibox.inference.one_box_per_class import OneBoxPerClassPredictor, class_guesses
from multibox.modeling.losses import OneBoxPerClassLoss, weighted_total
from multibox.modeling.one_box_per_class import build_one_box_per_class, class_priors

C = 5


def tiny_model(hidden: int = 16):
    torch.manual_seed(0)
    return build_one_box_per_class("tiny", torch.tensor([[0.2, 0.2, 0.8, 0.8]]).repeat(C, 1), hidden_dim=hidden, grid=1)


def test_outputs_have_one_box_per_class_and_sigmoid_of_logits_is_the_softmax_probability():
    model = tiny_model().eval()
    out = model(torch.rand(2, 3, 32, 32))
    assert out["pred_boxes"].shape == (2, C, 4) and out["pred_logits"].shape == (2, C)
    assert out["class_logits"].shape == (2, C + 1)  # background last
    probs = out["class_logits"].softmax(-1)[:, :C]
    assert torch.allclose(out["pred_logits"].sigmoid(), probs, atol=1e-5)
    assert torch.allclose(out["pred_boxes"], model.priors.expand(2, -1, -1))  # zero-initialized residuals


def test_class_priors_are_each_class_mean_box_and_a_default_for_absent_classes():
    boxes = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.2, 0.2, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]])
    priors = class_priors(boxes, torch.tensor([1, 1, 3]), C)
    assert torch.allclose(priors[1], torch.tensor([0.1, 0.1, 0.3, 0.3]))
    assert torch.allclose(priors[3], boxes[2])
    assert torch.allclose(priors[0], torch.tensor([0.1, 0.1, 0.9, 0.9]))


def loss_inputs():
    boxes = torch.full((2, C, 4), 0.5, requires_grad=True)
    logits = torch.zeros(2, C + 1, requires_grad=True)
    targets = {"boxes": torch.tensor([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.6, 0.6], [0.0, 0.0, 1.0, 1.0]],
                                      [[0.0, 0.0, 0.0, 0.0]] * 3]),
               "labels": torch.tensor([[1, 1, 3], [-1, -1, -1]])}  # image 0: two objects of class 1; image 1: none
    return boxes, logits, targets


def test_box_loss_regresses_only_the_true_classes_boxes_to_their_nearest_object():
    boxes, logits, targets = loss_inputs()
    terms = OneBoxPerClassLoss()({"pred_boxes": boxes, "class_logits": logits}, targets)
    terms["loc"].backward()
    grad = boxes.grad
    assert grad[0, [0, 2, 4]].abs().sum() == 0 and grad[1].abs().sum() == 0  # absent classes, empty image
    assert grad[0, 1].abs().sum() > 0 and grad[0, 3].abs().sum() > 0
    # class 1 regresses to its nearer object (0.5,0.5,0.6,0.6): gradient (pred - target) / B
    assert torch.allclose(grad[0, 1], (torch.full((4,), 0.5) - torch.tensor([0.5, 0.5, 0.6, 0.6])) / 2)
    expected = 0.5 * (0.02 + 1.0) / 2  # nearest errors: class 1: 2 x 0.1^2, class 3: 4 x 0.5^2
    assert torch.isclose(terms["loc"], torch.tensor(expected))


def test_class_loss_spreads_the_target_over_present_classes_and_uses_background_for_empty_images():
    boxes, logits, targets = loss_inputs()
    loss = OneBoxPerClassLoss(box_weight=2.0)
    terms = loss({"pred_boxes": boxes, "class_logits": logits}, targets)
    terms["cls"].backward()
    p = torch.full((C + 1,), 1 / (C + 1))
    want0 = p - torch.tensor([0, 0.5, 0, 0.5, 0, 0])  # softmax minus target, over B = 2
    want1 = p - torch.tensor([0, 0, 0, 0, 0, 1.0])
    assert torch.allclose(logits.grad, torch.stack([want0, want1]) / 2, atol=1e-6)
    assert loss.weights() == {"cls": 1.0, "loc": 2.0}
    assert torch.isclose(weighted_total(terms, loss.weights()), terms["cls"] + 2 * terms["loc"])


def tiny_config() -> Config:
    cfg = Config.preset("paper")
    cfg.model.kind, cfg.model.backbone, cfg.model.image_size, cfg.model.hidden_dim, cfg.model.grid = (
        "one-box-per-class", "tiny", 32, 16, 1)
    return cfg


def test_task_trains_on_labelled_crops_and_its_gradient_step_runs():
    dataset = SyntheticDataset("train", size=4, image_size=48)
    cfg = tiny_config()
    task = training_task(cfg, dataset, None)
    assert task.kind == "one-box-per-class" and task.extras["class_names"] == dataset.class_names
    items = [task.samples[(i, 0, i)] for i in range(4)]
    assert all(len(it["labels"]) == len(it["boxes"]) for it in items)
    images, targets, _ = collate_labelled(items)
    assert targets["labels"].shape == targets["boxes"].shape[:2]
    assert ((targets["labels"] >= 0).sum(1) == targets["count"]).all()
    terms = task.loss(task.model(images), targets)
    weighted_total(terms, task.loss.weights()).backward()
    assert torch.isfinite(terms["cls"]) and task.model.loc.weight.grad is not None


def test_train_kind_flag_reaches_the_config_and_the_default_task_hands_it_on():
    from multibox.cli.commands import train_config
    from multibox.cli.parser import build_parser
    from multibox.engine.tasks import localizer_task

    args = build_parser().parse_args(["train", "--kind", "one-box-per-class", "--backbone", "tiny"])
    assert train_config(args).model.kind == "one-box-per-class"
    task = localizer_task(tiny_config(), SyntheticDataset("train", size=2, image_size=48), None)  # the trainer's default
    assert task.kind == "one-box-per-class"


def test_task_refuses_to_resume_another_kind_of_checkpoint():
    import pytest

    from multibox.errors import UserError

    with pytest.raises(UserError, match="holds a localizer"):
        one_box_per_class_task(tiny_config(), SyntheticDataset("train", size=2, image_size=48), {"task": "localizer"})


class FixedBoxes(nn.Module):
    """Outputs given boxes [1, C, 4] and probabilities [1, C] for every input."""

    def __init__(self, boxes, probs):
        super().__init__()
        self.boxes, self.logits = boxes, torch.logit(probs)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        n = len(images)
        return {"pred_boxes": self.boxes.expand(n, -1, -1), "pred_logits": self.logits.expand(n, -1)}


BOXES = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.52], [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.9, 0.9],
                       [0.1, 0.6, 0.3, 0.9]]])
PROBS = torch.tensor([[0.1, 0.4, 0.2, 0.05, 0.25]])


def test_without_nms_each_class_gives_its_box_and_label_best_first():
    predictor = OneBoxPerClassPredictor(FixedBoxes(BOXES, PROBS), 32, nms_iou=None, windows="whole")
    [det] = predictor.run(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.tensor([[0.0, 0.0, 100.0, 100.0]]),
                          torch.tensor([1]), torch.tensor([[100.0, 100.0]]))
    assert det["labels"].tolist() == [1, 4, 2, 0, 3]
    assert torch.allclose(det["scores"], PROBS[0, det["labels"]], atol=1e-6)
    assert torch.allclose(det["boxes"][0], torch.tensor([0.0, 0.0, 50.0, 52.0]), atol=1e-4)


def test_with_nms_the_class_boxes_are_pruned_class_agnostically():
    predictor = OneBoxPerClassPredictor(FixedBoxes(BOXES, PROBS), 32, nms_iou=0.5, windows="whole")
    boxes, scores = predictor.predict(torch.zeros(3, 100, 100), top_k=None)
    assert len(boxes) == 4  # class 0's box overlaps class 1's (IoU 0.96) and scores lower: suppressed
    assert torch.allclose(scores, torch.tensor([0.4, 0.25, 0.2, 0.05]), atol=1e-6)
    assert not any(torch.allclose(b, torch.tensor([0.0, 0.0, 50.0, 50.0]), atol=1e-3) for b in boxes)


def test_class_guesses_score_through_the_ilsvrc_det5_metric():
    # Image 0: its class-1 object is where the class-1 box is -> det@5 and det@1 hit. Image 1: its class-3
    # object is elsewhere than the class-3 box -> a class@5 hit, no det@5 hit.
    outputs = {"pred_boxes": BOXES.repeat(2, 1, 1), "pred_logits": torch.logit(PROBS).repeat(2, 1)}
    windows, sizes = torch.tensor([[0.0, 0.0, 100.0, 100.0]] * 2), torch.tensor([[100.0, 100.0]] * 2)
    guesses = class_guesses(outputs, windows, sizes)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 50.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[0.0, 60.0, 30.0, 90.0]]), "labels": torch.tensor([3])}]
    for k, det, cls in ((5, 0.5, 1.0), (1, 0.5, 0.5)):
        metric = ILSVRCMetric(top_k=k)
        metric.update(guesses, targets)
        result = metric.compute()
        assert (result[f"det@{k}"], result[f"class@{k}"]) == (det, cls)
