"""The assignment (Eqs. 4-5) against brute force, batched against per-image, and prior matching."""

import itertools

import numpy as np
import pytest
import torch

from multibox.modeling.matcher import assignment_cost, match_predictions, match_priors, solve_assignment

ALPHA = 0.3


def objective(l, z, g, assign, alpha=ALPHA):
    """Eq. 3 for one image: alpha * F_match + F_conf, with assign[j] = prediction of ground truth j."""
    c = torch.sigmoid(z)
    x = torch.zeros(len(l))
    f_match = 0.0
    for j, i in enumerate(assign):
        x[i] = 1
        f_match += 0.5 * float(((l[i] - g[j]) ** 2).sum())
    f_conf = float(-(x * torch.log(c) + (1 - x) * torch.log(1 - c)).sum())
    return alpha * f_match + f_conf


def brute_force(l, z, g):
    """The best of all injective maps ground truth -> predictions (Eq. 5), by exhaustive search."""
    k, m = len(l), len(g)
    return min(objective(l, z, g, perm) for perm in itertools.permutations(range(k), m))


@pytest.mark.parametrize("seed,k,m", [(0, 5, 0), (1, 5, 1), (2, 5, 3), (3, 6, 4), (4, 4, 4), (5, 7, 2)])
def test_matching_equals_brute_force(seed, k, m):
    g_ = torch.Generator().manual_seed(seed)
    l, g = torch.rand(k, 4, generator=g_), torch.rand(m, 4, generator=g_)
    z = torch.randn(k, generator=g_) * 2
    match = match_predictions(l[None], z[None], g[None], torch.tensor([m]), ALPHA)[0]
    assert match.shape == (m,)
    assert len(set(match.tolist())) == m and (match >= 0).all()
    assert objective(l, z, g, match.tolist()) == pytest.approx(brute_force(l, z, g), abs=1e-5)


@pytest.mark.parametrize("seed,k,m", [(0, 5, 0), (1, 6, 3), (2, 5, 5)])
def test_prior_matching_equals_brute_force(seed, k, m):
    g_ = torch.Generator().manual_seed(seed)
    priors, g = torch.rand(k, 4, generator=g_), torch.rand(m, 4, generator=g_)
    match = match_priors(priors, g)
    cost = lambda perm: sum(float(((priors[i] - g[j]) ** 2).sum()) for j, i in enumerate(perm))  # noqa: E731
    best = min(cost(p) for p in itertools.permutations(range(k), m))
    assert cost(match.tolist()) == pytest.approx(best, abs=1e-6)


def test_cost_reduces_to_negated_logit():
    """alpha/2 ||l - g||^2 - log c + log(1 - c) == alpha/2 ||l - g||^2 - z."""
    l, g, z = torch.rand(1, 3, 4), torch.rand(1, 2, 4), torch.randn(1, 3)
    c = torch.sigmoid(z)
    direct = 0.5 * ALPHA * ((l[0, :, None] - g[0, None]) ** 2).sum(-1) - torch.log(c[0, :, None]) + torch.log(1 - c[0, :, None])
    assert torch.allclose(assignment_cost(l, z, g, ALPHA)[0], direct, atol=1e-5)


def test_batched_equals_per_image():
    g_ = torch.Generator().manual_seed(7)
    b, k, m = 5, 8, 4
    l, z, g = torch.rand(b, k, 4, generator=g_), torch.randn(b, k, generator=g_), torch.rand(b, m, 4, generator=g_)
    counts = torch.tensor([4, 0, 2, 3, 1])
    batched = match_predictions(l, z, g, counts, ALPHA)
    for i in range(b):
        n = int(counts[i])
        single = match_predictions(l[i : i + 1], z[i : i + 1], g[i : i + 1, :n], counts[i : i + 1], ALPHA)[0]
        assert batched[i, :n].tolist() == single.tolist()
        assert (batched[i, n:] == -1).all()


def test_more_ground_truth_than_predictions_leaves_surplus_unmatched():
    match = solve_assignment(np.random.default_rng(0).random((2, 4)))
    assert sorted(match[match >= 0].tolist()) == [0, 1]
    assert (match == -1).sum() == 2
