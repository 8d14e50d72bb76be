"""Per-image feature standardization: a photo under other light reaches the head on the same scale."""

import torch
from torch import nn

from multibox.modeling.localizer import GridMultiBox


class LinearBackbone(nn.Module):
    """Stride-16 pooling and a 1 x 1 convolution: features affine in the pixels, per channel."""

    stride, out_channels = 16, 5

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1, groups=1)
        with torch.no_grad():  # one input channel per feature channel: a global affine change of the
            self.conv.weight.zero_()  # pixels is a per-channel affine change of the features
            for c in range(5):
                self.conv.weight[c, c % 3] = 1.0 + c

    def forward(self, x):
        return self.conv(nn.functional.avg_pool2d(x, 16))


def model(norm: str) -> GridMultiBox:
    torch.manual_seed(0)
    net = GridMultiBox(LinearBackbone(), torch.tensor([[12.0, 12.0]]), image_size=64, hidden=8, depth=1, feature_norm=norm)
    nn.init.normal_(net.head.loc.weight, std=0.1)
    return net.eval()


def test_image_norm_makes_the_head_blind_to_global_exposure_and_contrast():
    image = torch.rand(1, 3, 64, 64)
    darker = 0.6 * image + 0.1
    per_image, per_dataset = model("image"), model("dataset")
    a, b = per_image(image), per_image(darker)
    assert torch.allclose(a["pred_logits"], b["pred_logits"], atol=1e-4)
    assert torch.allclose(a["pred_boxes"], b["pred_boxes"], atol=1e-5)
    assert not torch.allclose(per_dataset(image)["pred_logits"], per_dataset(darker)["pred_logits"], atol=1e-4)
    maps = per_image.features(image)
    assert torch.allclose(maps.mean((-2, -1)), torch.zeros(1, 5), atol=1e-5)
