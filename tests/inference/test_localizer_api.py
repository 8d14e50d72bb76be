"""The Python API: `from multibox import Localizer, Detector` (lazily), every accepted image form, and a
one-line UserError naming the accepted forms for the rest."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from multibox.data.transforms import to_pil
from multibox.errors import UserError
from multibox.inference.localizer import Localizer


class FixedNet(torch.nn.Module):
    """Stands in for MultiBox: the same K = 3 boxes (window [0, 1] xyxy) for every input, the first and
    best of them degenerate (in the padding of any image wider than tall, seen whole)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        boxes = torch.tensor([[0.1, 0.9, 0.5, 0.99], [0.1, 0.1, 0.4, 0.3], [0.5, 0.05, 0.9, 0.3]])
        return {"pred_boxes": boxes.expand(len(x), -1, -1), "pred_logits": torch.tensor([3.0, 1.0, 0.0]).expand(len(x), -1)}


@pytest.fixture
def localizer():
    return Localizer(FixedNet(), 32, "cpu")


def test_multibox_exports_the_api_lazily():
    code = ("import sys, multibox; light = 'torch' not in sys.modules; "
            "from multibox import Localizer, Detector; "
            "print(light, Localizer.__module__, Detector.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "multibox.inference.localizer", "multibox.inference.detector"]
    import multibox

    with pytest.raises(AttributeError, match="Nope"):
        multibox.Nope  # noqa: B018


def test_every_accepted_image_form_gives_the_same_detections(localizer, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)  # H=40, W=64
    Image.fromarray(pixels).save(tmp_path / "a.png")
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    forms = [str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(pixels), pixels, pixels / 255.0,
             (pixels / 255.0).astype(np.float32), chw, chw.float() / 255]
    expected = localizer.predict(forms[0])
    assert len(expected[1]) == 2  # the degenerate best box is never returned
    for form in forms:
        boxes, scores = localizer.predict(form)
        assert torch.allclose(boxes, expected[0]) and torch.allclose(scores, expected[1]), type(form)
    batch = localizer.predict_batch(torch.stack([chw, chw]))  # Tensor[B, 3, H, W] = B images
    assert len(batch) == 2 and all(torch.allclose(b, expected[0]) for b, _ in batch)
    assert localizer.model.seen[-1][0] == 2  # one forward pass for the batch


def test_predict_options(localizer):
    image = np.zeros((40, 64, 3), np.uint8)
    assert len(localizer.predict(image, max_det=1)[1]) == 1
    assert len(localizer.predict(image, top_k=5, max_det=None)[1]) == 2
    assert len(localizer.predict(image, min_score=0.6)[1]) == 1  # sigmoid(1) = 0.73 kept, sigmoid(0) = 0.5 not
    with pytest.raises(UserError, match="^iou 0: expected"):
        localizer.predict(image, iou=0)


@pytest.mark.parametrize("bad,fragment", [
    (torch.zeros(2, 3, 8, 8), "use predict_batch() for several"),
    (np.full((8, 8, 3), 200.0), "float images must lie in [0, 1]"),
    (np.zeros((8, 8, 4), np.uint8), "expected a file path, a PIL image"),
    (np.zeros((8, 8, 3), np.int32), "expected uint8, or float in [0, 1]"),
    (torch.zeros(8, 8, 3), "Tensor of shape [8, 8, 3]"),
    (42, "a int: expected a file path"),
    ("missing.jpg", "missing.jpg: no such image file"),
])
def test_other_inputs_are_one_line_user_errors(localizer, bad, fragment):
    with pytest.raises(UserError) as caught:
        localizer.predict(bad)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_to_pil_grey_and_bad_files(tmp_path):
    assert to_pil(np.zeros((5, 7), np.uint8)).mode == "RGB" and to_pil(torch.zeros(1, 5, 7)).size == (7, 5)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(UserError, match="bad.jpg"):
        to_pil(tmp_path / "bad.jpg")


def test_a_fused_network_gives_the_same_detections_and_a_shared_model_is_left_alone():
    """Folded batch norms and the NHWC layout (what loaded localizers use on the CPU) change speed, not
    boxes; a localizer built around a model it does not own (training's validation) leaves the model as it is."""
    from multibox.modeling.localizer import build_grid_model

    torch.manual_seed(0)
    model = build_grid_model("tiny", torch.tensor([[8.0, 8.0], [20.0, 14.0]]), image_size=64, head="separable",
                             hidden=16)
    images = [torch.randint(0, 256, (3, 50 + 9 * i, 64), dtype=torch.uint8) for i in range(3)]
    shared = Localizer(model, 64, "cpu")
    plain = [shared.predict(im, top_k=20) for im in images]
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert shared.memory_format is None and norms > 0
    assert all(p.is_contiguous() for p in model.parameters())
    owner = Localizer(model, 64, "cpu", fuse=True)  # rewrites the model it is given: its own
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) < norms
    assert any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters())  # NHWC
    for (boxes, scores), im in zip(plain, images):
        boxes_cl, scores_cl = owner.predict(im, top_k=20)
        assert len(boxes) == len(boxes_cl) > 0
        torch.testing.assert_close(boxes_cl, boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(scores_cl, scores, atol=1e-5, rtol=0)
