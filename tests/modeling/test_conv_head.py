"""The conv head: grid priors in the head's output order, documented shapes, the §3 loss on its outputs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from multibox.modeling.heads import ConvHead
from multibox.modeling.localizer import build_grid_model
from multibox.modeling.losses import MultiBoxLoss, weighted_total
from multibox.modeling.matcher import match_priors
from multibox.modeling.priors import grid_priors, kmeans_shapes

SHAPES = torch.tensor([[8.0, 8.0], [16.0, 24.0]])


def test_grid_priors_are_cell_centred_shapes_in_row_major_order():
    priors = grid_priors((2, 3), 16, SHAPES, (48, 32))  # 2 rows x 3 cols x A = 2, frame 48 x 32 px
    assert priors.shape == (12, 4)
    centres = (priors[:, :2] + priors[:, 2:]) / 2 * torch.tensor([48.0, 32.0])
    assert torch.allclose(centres[0], torch.tensor([8.0, 8.0])) and torch.allclose(centres[1], centres[0])
    assert torch.allclose(centres[2], torch.tensor([24.0, 8.0]))  # next column, same row
    assert torch.allclose(centres[6], torch.tensor([8.0, 24.0]))  # next row
    sizes = (priors[:, 2:] - priors[:, :2]) * torch.tensor([48.0, 32.0])
    assert torch.allclose(sizes[:2], SHAPES)


def test_head_outputs_have_the_documented_shapes_and_start_at_the_priors():
    model = build_grid_model("tiny", SHAPES, image_size=64)
    out = model(torch.rand(3, 3, 64, 64))
    k = (64 // 16) ** 2 * 2
    assert out["pred_boxes"].shape == (3, k, 4) and out["pred_logits"].shape == (3, k) and model.num_boxes == k
    assert torch.allclose(out["pred_boxes"], model.priors.expand(3, -1, -1))  # zero-initialized residuals
    assert torch.allclose(out["pred_logits"].sigmoid().mean(), torch.tensor(0.01), atol=0.005)


def test_residuals_are_in_units_of_the_prior_size():
    model = build_grid_model("tiny", SHAPES, image_size=32)
    torch.nn.init.constant_(model.head.loc.bias, 0.5)  # every residual +0.5 prior widths / heights
    out = model(torch.rand(1, 3, 32, 32))
    size = (model.priors[:, 2:] - model.priors[:, :2]).repeat(1, 2)
    assert torch.allclose(out["pred_boxes"][0], model.priors + 0.5 * size, atol=1e-6)


def test_the_paper_loss_runs_unchanged_on_conv_outputs_and_trains_the_head_only_when_frozen():
    model = build_grid_model("tiny", SHAPES, image_size=64)
    model.backbone.requires_grad_(False)
    gt = torch.tensor([[[0.1, 0.1, 0.3, 0.4], [0.5, 0.5, 0.9, 0.8]]])
    targets = {"boxes": gt, "count": torch.tensor([2]), "prior_match": match_priors(model.priors, gt[0])[None]}
    loss = MultiBoxLoss(alpha=0.3, prior_matching=True)
    terms = loss(model(torch.rand(1, 3, 64, 64)), targets)
    assert set(terms) == {"loc", "conf"} and all(torch.isfinite(v) for v in terms.values())
    weighted_total(terms, loss.weights()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.conf.weight.grad.abs().sum() > 0


def test_prior_shapes_are_kmeans_of_box_sizes():
    sizes = torch.cat([torch.full((50, 2), 10.0), torch.full((50, 2), 40.0)]) + torch.rand(100, 2)
    shapes = kmeans_shapes(sizes, 2, seed=0)
    assert shapes.shape == (2, 2) and torch.allclose(shapes, torch.tensor([[10.5, 10.5], [40.5, 40.5]]), atol=0.2)


@pytest.mark.parametrize("kind", ["dense", "separable"])
def test_conv_head_is_translation_invariant(kind):
    head = ConvHead(4, 2, hidden=8, depth=1, kind=kind)
    torch.nn.init.normal_(head.loc.weight, std=0.1)
    x = torch.zeros(1, 4, 6, 6)
    x[..., 2, 2] = 1.0
    shifted = torch.roll(x, shifts=(1, 1), dims=(-2, -1))
    res, logits = head(x)
    res2, logits2 = head(shifted)
    per_cell = logits.view(6, 6, 2)
    per_cell2 = logits2.view(6, 6, 2)
    assert torch.allclose(per_cell[2, 2], per_cell2[3, 3]) and torch.allclose(res.view(6, 6, 2, 4)[2, 2], res2.view(6, 6, 2, 4)[3, 3])


def test_the_separable_head_sees_the_same_context_at_a_fraction_of_the_cost():
    dense, separable = (ConvHead(152, 4, hidden=256, depth=3, kind=k) for k in ("dense", "separable"))
    x = torch.zeros(1, 152, 9, 9)
    x[..., 4, 4] = 1.0  # one lit cell: its influence spreads one cell per 3x3 layer in both heads
    for head in (dense, separable):
        for m in head.body:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.uniform_(m.weight, 0.1, 0.2)
                torch.nn.init.zeros_(m.bias)
        reach = (head.body(x).abs().sum(1)[0] > 0).nonzero()
        assert reach.min() == 1 and reach.max() == 7  # 3 layers: cells 4 +- 3
    flops = []
    for head in (dense, separable):
        with FlopCounterMode(display=False) as counter:
            head(torch.rand(1, 152, 44, 44))
        flops.append(counter.get_total_flops())
    assert flops[1] * 8 < flops[0]


def test_input_dropout_drops_whole_channels_while_training_and_nothing_at_inference():
    torch.manual_seed(0)
    plain = ConvHead(8, 2, hidden=16, depth=1)
    dropped = ConvHead(8, 2, hidden=16, depth=1, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # no parameters of its own: the same state loads
    x = torch.randn(2, 8, 5, 5)
    plain.eval(), dropped.eval()
    for a, b in zip(plain(x), dropped(x)):
        assert torch.equal(a, b)
    dropped.train()
    kept = dropped.dropout(torch.ones(4, 8, 5, 5))  # [B, C, H, W]: each channel of each map all kept or all 0
    per_channel = kept.flatten(2)
    assert torch.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))  # kept ones scaled by 1 / (1 - p)
    assert 0 < (per_channel == 0).all(-1).float().mean() < 1
