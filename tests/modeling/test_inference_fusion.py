"""The inference rewrites (folded batch norms, padding moved into convolutions, NHWC) keep the outputs."""

import copy

import pytest
import torch
from torch import nn

from multibox.modeling.inference_fusion import fold_batch_norms, fold_symmetric_padding, fuse_for_inference
from multibox.modeling.localizer import build_grid_model, build_model


def randomize_norms(model: nn.Module) -> None:
    """Running statistics and affine parameters away from their initial values, so a wrong fold shows."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("make", [
    lambda: build_grid_model("efficientnet_lite0", torch.tensor([[16.0, 16.0], [40.0, 30.0]]), 96, head="separable"),
    lambda: build_model("resnet18", torch.rand(8, 4).sort(dim=1).values, None, 32, 2),
    lambda: build_model("mobilenet_v3_small", torch.rand(8, 4).sort(dim=1).values, None, 32, 2),
], ids=["efficientnet_lite0 conv head", "resnet18 fc head", "mobilenet_v3_small fc head"])
def test_fused_model_gives_the_same_outputs(make):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        randomize_norms(model)
        size = model.image_size if hasattr(model, "image_size") else 96
        x = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
        before = model(x)
        norms = count(model, nn.BatchNorm2d)
        fused = fuse_for_inference(copy.deepcopy(model))
        after = fused(x.contiguous(memory_format=torch.channels_last))
    assert norms > 0 and count(fused, nn.BatchNorm2d) < norms  # folded, not left as they were
    for key in ("pred_boxes", "pred_logits"):
        torch.testing.assert_close(after[key], before[key], atol=1e-4, rtol=1e-4)


def test_efficientnet_every_norm_folds_and_stride_1_padding_moves():
    model = build_grid_model("efficientnet_lite0", torch.tensor([[16.0, 16.0]]), 64).eval()
    pads = count(model, nn.ZeroPad2d)
    with torch.no_grad():
        assert fold_batch_norms(model) == 33 and count(model, nn.BatchNorm2d) == 0
    moved = fold_symmetric_padding(model)
    assert moved > 0 and count(model, nn.ZeroPad2d) == pads - moved
    # what is left pads unevenly (stride 2: one more pixel right and bottom), which conv padding cannot express
    assert all(p.padding[0] != p.padding[1] or p.padding[2] != p.padding[3]
               for p in model.modules() if isinstance(p, nn.ZeroPad2d))


def test_a_norm_that_does_not_follow_a_convolution_stays():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        assert fold_batch_norms(model) == 0 and count(model, nn.BatchNorm2d) == 1
