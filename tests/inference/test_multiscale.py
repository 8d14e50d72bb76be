"""The §4.3 two-scale localizer: the ten windows, exact mapping back to the image, one batch, evaluate."""

import torch

from multibox.boxes import center_square_crop
from multibox.data.synthetic import SyntheticDataset
from multibox.inference.predict import predict_dataset
from multibox.modeling.localizer import build_model
from multibox.inference.localizer import WINDOW_BATCH, Localizer
from multibox.inference.windows import multiscale_windows
from multibox.inference.postprocess import merge_windows
from multibox.inference.postprocess import postprocess
from multibox.data.transforms import crop_resize


def test_windows_of_a_100_by_50_image():
    windows = multiscale_windows(100, 50)  # grid squares of side 0.6 x 50 = 30
    expected = [[25, 0, 75, 50]] + [[x, y, x + 30, y + 30] for y in (0, 10, 20) for x in (0, 35, 70)]
    assert torch.allclose(windows, torch.tensor(expected, dtype=torch.float32))
    batched = multiscale_windows(torch.tensor([100.0, 40.0]), torch.tensor([50.0, 40.0]))
    assert batched.shape == (2, 10, 4) and torch.allclose(batched[0], windows)
    assert torch.allclose(batched[1, 9], torch.tensor([16.0, 16, 40, 40]))  # bottom-right square touches the corner


def test_a_box_predicted_in_one_window_lands_exactly_in_the_image():
    windows = multiscale_windows(torch.tensor([100.0]), torch.tensor([50.0]))  # [1, 10, 4]
    pred_boxes = torch.rand(10, 2, 4) * 0.4  # [B*W, K, 4], all low confidence ...
    logits = torch.full((10, 2), -8.0)
    pred_boxes[5, 1] = torch.tensor([0.5, 0.5, 1.0, 1.0])  # ... except this one, in the centre window [35, 10, 65, 40]
    logits[5, 1] = 6.0
    pred_boxes[3, 0] = torch.tensor([0.5, -0.5, 1.5, 0.5])  # top-right window [70, 0, 100, 30], past its edges
    logits[3, 0] = 4.0
    [det] = merge_windows({"pred_boxes": pred_boxes, "pred_logits": logits}, windows, torch.tensor([[100.0, 50.0]]))
    assert det["boxes"][0].tolist() == [50.0, 25.0, 65.0, 40.0]
    assert det["scores"][0] == torch.sigmoid(torch.tensor(6.0))
    assert det["boxes"][1].tolist() == [85.0, 0.0, 100.0, 15.0]  # mapped to [85, -15, 115, 15], truncated to the image
    assert len(det["boxes"]) <= 20


def test_one_window_merge_equals_the_single_scale_postprocess():
    outputs = {"pred_boxes": torch.rand(3, 8, 4), "pred_logits": torch.randn(3, 8)}
    sizes = torch.tensor([[100.0, 50.0], [60.0, 80.0], [64.0, 64.0]])
    crops = center_square_crop(sizes[:, 0], sizes[:, 1])
    single = postprocess(outputs, crops, sizes, 0.5, 5)
    merged = merge_windows(outputs, crops[:, None], sizes, 0.5, 5)
    for a, b in zip(single, merged):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


class Recorder(torch.nn.Module):
    """A localizer stand-in that records its input batches and puts one box at the input's centre."""

    def __init__(self, k=4):
        super().__init__()
        self.k, self.inputs = k, []

    def forward(self, images):
        self.inputs.append(images)
        b = images.shape[0]
        boxes = torch.tensor([0.25, 0.25, 0.75, 0.75]).expand(b, self.k, 4)
        return {"pred_boxes": boxes, "pred_logits": torch.linspace(-1, 1, b * self.k).reshape(b, self.k)}


def test_all_windows_of_all_images_run_in_window_batches():
    dataset = SyntheticDataset("test", size=2, image_size=48)
    images = [dataset.load_image(0), dataset.load_image(1).resize((64, 40))]
    recorder = Recorder()
    located = Localizer(recorder, 16, windows="multiscale").predict_batch(images, top_k=None)
    assert [len(x) for x in recorder.inputs] == [WINDOW_BATCH["cpu"], 20 - WINDOW_BATCH["cpu"]]  # both images' windows
    batch = torch.cat(recorder.inputs)
    assert batch.shape == (20, 3, 16, 16)
    windows = multiscale_windows(torch.tensor([48.0, 64.0]), torch.tensor([48.0, 40.0]))
    for b, image in enumerate(images):
        for w in range(10):
            assert torch.equal(batch[10 * b + w], crop_resize(image, windows[b, w], 16))
    centres = (windows[1, :, :2] + windows[1, :, 2:]) / 2
    # Each window's centre box once: same-window copies are suppressed, no two windows' boxes overlap >= 0.5.
    boxes, _ = located[1]
    assert len(boxes) == 10
    assert {tuple(c) for c in ((boxes[:, :2] + boxes[:, 2:]) / 2).tolist()} == {tuple(c) for c in centres.tolist()}


def test_predict_dataset_multiscale_matches_the_localizer():
    dataset = SyntheticDataset("test", size=3, image_size=48)
    torch.manual_seed(0)
    model = build_model("tiny", torch.rand(6, 2).repeat(1, 2) * torch.tensor([0.5, 0.5, 1, 1]), hidden_dim=16).eval()
    via_dataset = predict_dataset(Localizer(model, 32, windows="multiscale"), dataset, batch_size=30, num_workers=0)
    images = [dataset.load_image(i) for i in range(3)]  # the same 30 inputs in one batch as the 3 x 10 above
    via_localizer = Localizer(model, 32, windows="multiscale").predict_batch(images, top_k=None)
    for d, (boxes, scores) in zip(via_dataset, via_localizer):
        assert torch.allclose(d["boxes"], boxes, atol=1e-5) and torch.allclose(d["scores"], scores)
    single = predict_dataset(Localizer(model, 32), dataset, num_workers=0)
    assert all(len(s["boxes"]) <= 6 for s in single) and any(len(d["boxes"]) > 6 for d in via_dataset)
