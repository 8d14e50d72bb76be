"""drop_cut_parts tests boxes a chunk at a time (memory chunk x N, not N x N) and gives what the one N x N
test gave, with and without top_k."""

import pytest
import torch

from multibox.inference import postprocess
from multibox.inference.postprocess import CUT_CONTAINED, drop_cut_parts


def all_at_once(det: dict, top_k: int | None) -> dict:
    """The N x N reference: box i dropped when cut and mostly inside a higher-scoring box j < i."""
    boxes, cut = det["boxes"], det["cut"]
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-9).prod(-1)
    inside = (hi - lo).clamp(min=0).prod(-1) / area[:, None] >= CUT_CONTAINED
    keep = ~(cut & (inside & torch.ones_like(inside).triu(1).T).any(1))
    return {k: v[keep][:top_k] for k, v in det.items() if k != "cut"}


def random_detections(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], dim=1)
    return {"boxes": boxes, "scores": torch.rand(n, generator=g).sort(descending=True).values,
            "cut": torch.rand(n, generator=g) < 0.5}


@pytest.mark.parametrize("top_k", [None, 1, 7, 300])
def test_chunks_give_the_all_at_once_result(monkeypatch, top_k):
    monkeypatch.setattr(postprocess, "CUT_CHUNK", 16)  # many chunks on a small example
    for seed in range(3):
        det = random_detections(200, seed)
        expected = all_at_once(det, top_k)
        got = drop_cut_parts(dict(det), top_k)
        assert set(got) == {"boxes", "scores"} and 0 < len(got["boxes"]) <= (top_k or 200)
        assert torch.equal(got["boxes"], expected["boxes"]) and torch.equal(got["scores"], expected["scores"])


def test_a_cut_part_inside_a_better_box_is_dropped_and_memory_is_a_chunk(monkeypatch):
    monkeypatch.setattr(postprocess, "CUT_CHUNK", 4)
    whole = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    parts = torch.tensor([[10.0, 10.0, 50.0, 50.0], [90.0, 90.0, 150.0, 150.0]])  # inside / mostly outside
    det = {"boxes": torch.cat([whole, parts]), "scores": torch.tensor([0.9, 0.8, 0.7]),
           "cut": torch.tensor([False, True, True])}
    seen = []
    real_maximum = torch.maximum
    monkeypatch.setattr(torch, "maximum", lambda a, b: seen.append(torch.broadcast_shapes(a.shape, b.shape))
                        or real_maximum(a, b))
    got = drop_cut_parts(det, None)
    assert got["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert seen and all(shape[0] <= 4 for shape in seen)
