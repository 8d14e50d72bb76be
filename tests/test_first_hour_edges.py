"""What a new user meets in the first hour (issue 22 items 8 and 9): defaults that fit data with one split and
next commands that work on it; did-you-mean for flags and config keys; YAML's `1e-3`; the flags that fix a
run-folder mistake; a classifier given where a localizer goes; class names from Detector.detect."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from multibox.cli import main
from multibox.config import Config
from multibox.data.splits import dataset_splits, scoring_split_name, training_split_name
from multibox.errors import UserError
from tests.fixtures.datasets import basic_spec, write_coco, write_voc
from tests.fixtures.models import tiny_config


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `multibox ARGV`, argparse's SystemExit included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def tiny_yaml(path: Path, **data) -> Path:
    """The 1-step tiny localizer's config (fc head, 64 px, K = 16) as a --config file."""
    cfg = tiny_config()
    cfg.train.steps = 1
    raw = cfg.to_dict()
    raw["data"] |= data
    path.write_text(yaml.safe_dump(raw))
    return path


def voc_without_imagesets(root: Path) -> Path:
    write_voc(root, basic_spec() * 1, "train")
    shutil.rmtree(root / "ImageSets")
    return root


# ------------------------------------------------------------------------------- one-split data (item 8)


def test_split_defaults_follow_the_data(tmp_path):
    voc = voc_without_imagesets(tmp_path / "voc")
    assert dataset_splits(str(voc)) == ["all"]
    assert training_split_name(str(voc)) == scoring_split_name(str(voc)) == "all"
    full = write_voc(tmp_path / "full", basic_spec(), "train")
    write_voc(full, basic_spec(), "val")
    assert training_split_name(str(full)) == "train" and scoring_split_name(str(full)) == "val"
    val_file = write_coco(tmp_path / "coco", basic_spec(), "val2017")
    assert dataset_splits(str(val_file)) == ["val"]
    assert training_split_name(str(val_file)) == scoring_split_name(str(val_file)) == "val"
    assert (training_split_name("synthetic"), scoring_split_name("synthetic")) == ("train", "test")
    assert training_split_name(str(tmp_path / "missing")) == "train"  # opening it says what is wrong


def test_data_check_without_split_takes_the_only_one(tmp_path, capsys):
    voc = voc_without_imagesets(tmp_path / "voc")
    code, out, err = run(["data", "check", str(voc), "--no-images"], capsys)
    assert code == 0, out + err
    assert out.startswith(f"dataset voc:{voc}:all: 3 images"), out


def next_evaluate(out: str) -> list[str]:
    """The arguments of the `next: multibox evaluate ...` line `train` printed."""
    line = next(line for line in out.splitlines() if line.startswith("next: multibox evaluate"))
    return shlex.split(line.removeprefix("next: multibox "))


@pytest.mark.parametrize("layout", ["voc-without-imagesets", "one-coco-file"])
def test_train_on_one_split_data_and_its_next_command_works(layout, tmp_path, capsys):
    if layout == "voc-without-imagesets":
        data = voc_without_imagesets(tmp_path / "voc")
    else:
        data = write_coco(tmp_path / "coco", basic_spec(), "train")  # one file, no val or test split
    config = tiny_yaml(tmp_path / "tiny.yaml", data=str(data))
    code, out, err = run(["train", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert "evaluate scores the" in out and "flatter the model" in out  # said, not hidden
    argv = next_evaluate(out)
    code, out, err = run([*argv, "--out", str(tmp_path / "ev"), "--baselines", "none", "--device", "cpu"], capsys)
    assert code == 0, err
    expected = "all" if layout.startswith("voc") else "train"
    scored = next(line for line in out.splitlines() if line.startswith("scored "))
    assert f":{expected} (no --split" in scored, out


def test_one_file_named_val_is_not_validated_on_itself(tmp_path):
    """Trained on the one split a val-named COCO file has, best.pt is chosen on images held out of it."""
    from multibox.data.build import training_split, validation_split
    from tests.fixtures.datasets import SpecImage

    spec = [SpecImage(f"im{i}", 40, 40, [[2, 2, 20, 20]], [0]) for i in range(10)]
    cfg = Config()
    cfg.data.data = str(write_coco(tmp_path / "coco", spec, "val2017"))
    cfg.data.split = training_split_name(cfg.data.data)
    assert cfg.data.split == cfg.data.val_split == "val"
    trained = {r.path for r in training_split(cfg).records}
    validated = {r.path for r in validation_split(cfg).records}
    assert validated and not trained & validated and len(trained | validated) == 10


# ------------------------------------------------------------------------------------ typing edges (item 9)


@pytest.mark.parametrize("argv,hint", [
    (["train", "--lrr", "0.1"], "did you mean --lr?"),
    (["train", "--batchsize", "4"], "did you mean --batch-size?"),
    (["evaluate", "--model", "m.pt", "--splt", "val"], "did you mean --split?"),
    (["data", "check", "d", "--no-imgs"], "did you mean --no-images?"),
    (["trian"], "did you mean train?"),
])
def test_a_misspelt_flag_gets_a_did_you_mean(argv, hint, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert hint in one_line(err)


def test_yaml_exponents_are_the_numbers_users_meant(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-4\ndata:\n  cache_scales: [5e-1, 1.0]\n")
    assert yaml.safe_load(path.read_text())["train"]["lr"] == "1e-3"  # YAML 1.1: a string
    cfg = Config.from_yaml(path)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.data.cache_scales) == (0.001, 0.0005, [0.5, 1.0])
    path.write_text("train:\n  lr: fast\n  batch_size: '1e1'\n")
    with pytest.raises(UserError, match="train.lr: expected a positive number, got 'fast'"):
        Config.from_yaml(path)


def test_a_misspelt_config_key_names_the_closest(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  batchsize: 4\n")
    code, _, err = run(["train", "--config", str(path), "--out", str(tmp_path / "r"), "--steps", "1"], capsys)
    assert code == 2 and "unknown key 'batchsize' (did you mean 'batch_size'?)" in one_line(err)
    path.write_text("trian:\n  steps: 4\n")
    code, _, err = run(["train", "--config", str(path), "--out", str(tmp_path / "r"), "--steps", "1"], capsys)
    assert code == 2 and "unknown section 'trian' (did you mean 'train'?)" in one_line(err)


def test_run_folder_mistakes_name_the_flags(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["train", "--out", str(tmp_path / "empty"), "--resume"], capsys)
    assert code == 2 and "no checkpoint to resume" in one_line(err) and "drop --resume" in err
    code, _, err = run(["train", "--resume"], capsys)
    assert code == 2 and "give --out RUN" in one_line(err) and "drop --resume" in err
    held = tmp_path / "held"
    held.mkdir()
    (held / "last.pt").write_bytes(b"x")
    code, _, err = run(["train", "--out", str(held), "--steps", "1"], capsys)
    line = one_line(err)
    assert code == 2 and "holds a previous run" in line and "--resume continues it" in line and "--exist-ok" in line


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(localizer, classifier) checkpoints of 1-step tiny networks."""
    from multibox.engine.trainer import train
    from multibox.jobs.train import train_classifier

    out = tmp_path_factory.mktemp("nets")
    cfg = tiny_config()
    cfg.train.steps = 1
    return train(cfg, out / "loc"), train_classifier(cfg, out / "cls")


@pytest.mark.parametrize("command", ["evaluate", "detect", "serve"])
def test_a_classifier_given_as_model_says_where_it_goes(command, checkpoints, tmp_path, capsys):
    _, classifier = checkpoints
    Image.new("RGB", (40, 30), (90, 20, 20)).save(tmp_path / "a.png")
    argv = {"evaluate": ["evaluate", "--model", str(classifier), "--out", str(tmp_path / "o")],
            "detect": ["detect", "--model", str(classifier), "--out", str(tmp_path / "o"), str(tmp_path / "a.png")],
            "serve": ["serve", "--model", str(classifier), "--port", "0"]}[command]
    code, _, err = run([*argv, "--device", "cpu"], capsys)
    line = one_line(err)
    assert code == 2 and "holds a classifier, not a localizer" in line and "--classifier" in line


def test_detector_detect_gives_class_names_beside_ids(checkpoints):
    from multibox import Detector

    localizer, classifier = checkpoints
    detector = Detector.from_checkpoints(localizer, classifier)
    found = detector.detect(Image.new("RGB", (70, 50), (20, 160, 40)))
    assert len(found["label_names"]) == len(found["labels"]) > 0
    assert found["label_names"] == [detector.class_names[i] for i in found["labels"].tolist()]
