"""Training samples: an unreadable image is replaced by the next one and reported, never a crash."""

import pytest

from fixtures.datasets import SpecImage, write_voc
from multibox.data import build_dataset
from multibox.data.pipeline import TrainSamples, collate
from multibox.errors import UserError


def voc_with_broken(tmp_path, broken: list[str]):
    spec = [SpecImage(f"im{i}", 60, 50, [[5, 5, 40, 40]], [0]) for i in range(3)]
    root = write_voc(tmp_path / "voc", spec)
    for name in broken:
        (root / "JPEGImages" / f"{name}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return build_dataset(str(root), "train", cache=False, probe_images=False)


def test_unreadable_image_is_replaced_by_the_next_and_reported(tmp_path):
    dataset = voc_with_broken(tmp_path, ["im1"])
    samples = TrainSamples(dataset, 32)
    item = samples[(1, 0, 0)]
    assert [p.file for p in item["problems"]] == [str(tmp_path / "voc" / "JPEGImages" / "im1.jpg")]
    assert item["image"].shape == (3, 32, 32)
    images, targets, problems = collate([samples[(0, 0, 0)], item])
    assert images.shape == (2, 3, 32, 32) and len(problems) == 1 and targets["count"].tolist() == [1, 1]


def test_no_readable_image_is_a_one_line_user_error(tmp_path):
    dataset = voc_with_broken(tmp_path, ["im0", "im1", "im2"])
    with pytest.raises(UserError, match="3 images in a row could not be read"):
        TrainSamples(dataset, 32)[(0, 0, 0)]
