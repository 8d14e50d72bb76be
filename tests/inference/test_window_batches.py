"""A big image's tiles go through the network WINDOW_BATCH at a time (activations bounded whatever the
number of tiles), with the same detections as one pass."""

import numpy as np
import torch
from PIL import Image

from multibox.inference import localizer as localizer_module
from multibox.inference.localizer import Localizer
from multibox.modeling.localizer import build_model


class Recording(torch.nn.Module):
    """Wraps a network and records the batch size of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x):
        self.calls.append(len(x))
        return self.net(x)


def test_tiles_pass_in_window_batches_with_the_same_detections(monkeypatch):
    torch.manual_seed(0)
    priors = torch.rand(16, 2).repeat(1, 2) * torch.tensor([0.5, 0.5, 1.0, 1.0])
    net = Recording(build_model("tiny", priors.sort(dim=1).values, None, 64, 4))
    loc = Localizer(net, 32, "cpu", windows="tiles", tile=40, overlap=0.25)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    monkeypatch.setitem(localizer_module.WINDOW_BATCH, "cpu", 10_000)
    one_pass = loc.predict(image, top_k=30)
    assert net.calls == [len(loc.image_windows(300, 200))] == [10 * 7]
    net.calls.clear()
    monkeypatch.setitem(localizer_module.WINDOW_BATCH, "cpu", 8)
    chunked = loc.predict(image, top_k=30)
    assert net.calls == [8] * 8 + [6]
    assert torch.allclose(chunked[0], one_pass[0], atol=1e-4) and torch.allclose(chunked[1], one_pass[1], atol=1e-6)
