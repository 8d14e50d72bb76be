"""The dataset picture (issue 20 item 5): `data check --plots DIR` writes DIR/labels.png whose panels count
what the data holds."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.datasets import basic_spec, write_voc
from PIL import Image

from multibox.cli import main
from multibox.data.problems import ProblemLog
from multibox.data.voc import VOCDataset
from multibox.reports.dataset_plots import dataset_figure, dataset_stats, write_dataset_plots


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))


def test_stats_and_the_figure_count_what_the_data_holds(tmp_path):
    dataset = VOCDataset(write_voc(tmp_path / "voc", basic_spec()), "train", problems=ProblemLog(echo=None))
    stats = dataset_stats(dataset)
    # basic_spec: img_a (64x48) apple [4, 6, 30, 40] + pear [20, 10, 60, 44]; img_b (50x70) kiwi the whole image
    assert stats.class_names == ["apple", "kiwi", "pear"] and stats.per_class.tolist() == [1, 1, 1]
    assert sorted(stats.per_image.tolist()) == [0, 1, 2]
    expected = {(4 / 64, 6 / 48, 30 / 64, 40 / 48), (20 / 64, 10 / 48, 60 / 64, 44 / 48), (0.0, 0.0, 1.0, 1.0)}
    assert {tuple(np.round(b, 6)) for b in stats.boxes} == {tuple(np.round(b, 6)) for b in expected}
    assert sorted(map(tuple, stats.pixel_wh.tolist())) == [(26.0, 34.0), (40.0, 34.0), (50.0, 70.0)]
    fig = dataset_figure(stats, "t")
    classes, per_image, centres, sizes = fig.axes[:4]
    assert [p.get_height() for p in classes.patches] == [1, 1, 1]
    assert sorted(int(p.get_height()) for p in per_image.patches) == [1, 1, 1]  # one image with 0, 1, 2 objects
    assert len(centres.collections[0].get_offsets()) == 3 and len(sizes.collections[0].get_offsets()) == 3


def test_written_png_is_valid(tmp_path):
    dataset = VOCDataset(write_voc(tmp_path / "voc", basic_spec()), "train", problems=ProblemLog(echo=None))
    stats = write_dataset_plots(dataset, tmp_path / "out" / "labels.png")
    assert int(stats.per_class.sum()) == 3
    with Image.open(tmp_path / "out" / "labels.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300


def test_data_check_plots_through_the_cli(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", basic_spec())
    assert main(["data", "check", str(root), "--plots", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "labels.png").is_file() and not (tmp_path / "plots" / "problems.log").exists()
    assert f"wrote {tmp_path / 'plots' / 'labels.png'}" in capsys.readouterr().out
