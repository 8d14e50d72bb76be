"""EfficientNet-Lite0/1/2 feature maps: taps found from the network, Lite0's the documented ones."""

import pytest
import torch

from multibox.modeling.feature_maps import build_feature_maps


@pytest.mark.parametrize("name, channels", [("efficientnet_lite0", 40 + 112), ("efficientnet_lite1", 40 + 112),
                                            ("efficientnet_lite2", 48 + 120)])
def test_lite_maps_fuse_the_stride_8_and_16_stages(name, channels):
    maps = build_feature_maps(name, "none", (8, 16), 16).eval()
    assert maps.out_channels == channels
    with torch.no_grad():
        out = maps(torch.rand(1, 3, 96, 64))
    assert out.shape == (1, channels, 6, 4)
    if name == "efficientnet_lite0":  # its stages end at blocks 2, 4, 10, 15 (the taps used before they were read off)
        assert maps.taps == {4: 8, 10: 16}
