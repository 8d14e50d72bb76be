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


def test_unset_levels_are_the_stride_and_the_next_finer_one():
    maps = build_feature_maps("efficientnet_lite0", "none", None, 8).eval()
    assert maps.taps == {2: 4, 4: 8} and maps.out_channels == 24 + 40
    assert len(maps.blocks) == 5  # nothing past the stride-8 stage runs
    with torch.no_grad():
        assert maps(torch.rand(1, 3, 96, 64)).shape == (1, 64, 12, 8)
    assert build_feature_maps("efficientnet_lite0", "none", None, 16).taps == {4: 8, 10: 16}
