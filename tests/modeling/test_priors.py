"""k-means priors: determinism, optimality of a fixed point, fewer boxes than K."""

import pytest
import torch

from multibox.modeling.priors import TooFewBoxes, kmeans_priors


def clustered_boxes(seed=0, per=50):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.0, 0.4, 1.0, 0.6]])
    return (centres.repeat_interleave(per, 0) + 0.01 * torch.randn(3 * per, 4, generator=g)).clamp(0, 1)


def test_deterministic_for_a_seed():
    boxes = torch.rand(500, 4)
    assert torch.equal(kmeans_priors(boxes, 20, seed=3), kmeans_priors(boxes, 20, seed=3))


def test_recovers_well_separated_clusters():
    priors = kmeans_priors(clustered_boxes(), 3, seed=0)
    expected = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.0, 0.4, 1.0, 0.6]])  # sorted by area
    assert torch.allclose(priors, expected, atol=0.01)


def test_each_centroid_is_its_cluster_mean():
    boxes = torch.rand(400, 4)
    priors = kmeans_priors(boxes, 8, seed=1, iters=300)
    assign = torch.cdist(boxes, priors).argmin(1)
    for k in range(8):
        assert torch.allclose(priors[k], boxes[assign == k].mean(0), atol=1e-4)


def test_fewer_distinct_boxes_than_k_is_an_error_never_random_priors():
    boxes = torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.9, 0.9], [0.1, 0.1, 0.2, 0.2]])
    with pytest.raises(TooFewBoxes, match="only 2 distinct training boxes for 5 priors"):
        kmeans_priors(boxes, 5, seed=0)
    priors = kmeans_priors(boxes, 2, seed=0)  # exactly K distinct boxes: they are the priors
    assert sorted(map(tuple, priors.tolist())) == sorted(map(tuple, boxes[:2].tolist()))


def test_every_prior_is_a_mean_of_real_boxes_when_k_distinct_exist():
    boxes = torch.rand(30, 4).sort(dim=1).values[:, [0, 1, 2, 3]]
    priors = kmeans_priors(boxes, 30, seed=0)  # as many priors as boxes: each prior is one box
    assert sorted(map(tuple, priors.tolist())) == sorted(map(tuple, boxes.tolist()))


def test_large_box_sets_are_subsampled_deterministically():
    boxes = torch.rand(300_000, 4)  # more than MAX_POINTS: k-means sees a seeded subsample
    first, second = kmeans_priors(boxes, 20, seed=3, iters=5), kmeans_priors(boxes, 20, seed=3, iters=5)
    assert first.shape == (20, 4) and torch.equal(first, second)
