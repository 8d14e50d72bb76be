"""The conventions users bring from Ultralytics (issue 11 items 7 and 10): --version, the predict/val
aliases, --device 0, the default split of evaluate, key=value hints, checks that need no data first,
one-line errors for the environment and for the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import multibox
from multibox.cli import main
from multibox.cli.parser import build_parser
from multibox.engine.precision import resolve_device
from multibox.errors import UserError
from tests.fixtures.models import train_tiny


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits from inside parse_args
        return exc.code


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny") / "run")[0]


def test_version(capsys):
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"multibox {multibox.__version__}"


def test_predict_and_val_are_aliases():
    parser = build_parser()
    predict = parser.parse_args(["predict", "--model", "m.pt", "x.jpg"])
    val = parser.parse_args(["val", "--model", "m.pt"])
    assert predict.command == "predict" and predict.inputs == ["x.jpg"] and predict.top_k == 10
    assert val.command == "val" and val.model == "m.pt" and val.split is None


def test_device_numbers_mean_cuda():
    if torch.cuda.is_available():
        assert resolve_device("0") == torch.device("cuda:0")
    else:
        with pytest.raises(UserError, match="device cuda:0: no CUDA device"):
            resolve_device("0")
    with pytest.raises(UserError, match="torchrun"):
        resolve_device("0,1")
    assert resolve_device("cpu") == torch.device("cpu")


def test_ultralytics_key_value_gets_a_hint(capsys):
    assert exit_code(["train", "data=coco.yaml"]) == 2
    assert "did you mean --data coco.yaml?" in one_line(capsys.readouterr().err)


def test_missing_stop_rule_is_said_before_any_data_is_read(tmp_path, capsys):
    # the paper preset's fc head does not pick its own length; the data path does not exist either
    code = exit_code(["train", "--preset", "paper", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "none")])
    assert code == 2
    assert "say how long to train: --steps, --epochs or --time" in one_line(capsys.readouterr().err)


def test_wrong_yaml_type_is_refused_before_the_priors(tmp_path, capsys):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("train:\n  lr: fast\n")
    assert exit_code(["train", "--config", str(bad), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "cfg.yaml" in line and "train.lr" in line and "fast" in line
    assert not (tmp_path / "r").exists()


def test_evaluate_without_split_uses_test_and_says_so(tiny_model, tmp_path, capsys):
    assert exit_code(["evaluate", "--model", str(tiny_model), "--out", str(tmp_path / "ev"), "--baselines", "none"]) == 0
    out = capsys.readouterr().out
    assert "scored synthetic:test" in out or "scored synthetic (test)" in out or "test" in out.splitlines()[-1]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["num_images"] == 4  # the tiny test split


def test_model_accepts_a_run_folder(tiny_model, tmp_path):
    assert exit_code(["evaluate", "--model", str(tiny_model.parent), "--out", str(tmp_path / "ev"),
                      "--split", "val", "--baselines", "none"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["model"] == str(tiny_model.parent)


def test_evaluate_default_out_is_numbered(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert exit_code(["val", "--model", str(tiny_model), "--baselines", "none"]) == 0
    assert (tmp_path / "runs" / "evaluate" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "evaluate2" / "metrics.json").is_file()


def test_environment_faults_are_one_line_exit_1(tiny_model, tmp_path, capsys, monkeypatch):
    import multibox.jobs.evaluate as evaluate_job

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ev" / "metrics.json"))

    monkeypatch.setattr(evaluate_job, "write_report", denied)
    assert exit_code(["evaluate", "--model", str(tiny_model), "--out", str(tmp_path / "ev"), "--baselines", "none"]) == 1
    err = capsys.readouterr().err  # after the progress bar: the one error line
    assert "Traceback" not in err
    assert f"{tmp_path / 'ev' / 'metrics.json'}: permission denied" in err.strip().splitlines()[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_python_api_cuda_without_gpu_is_one_line(tiny_model):
    from multibox import Localizer

    with pytest.raises(UserError) as exc:
        Localizer.from_checkpoint(tiny_model, device="cuda")
    assert str(exc.value) == "device cuda: no CUDA device is available on this machine"


def test_library_messages_do_not_name_flags(tmp_path):
    """The library names files and config keys; only the CLI turns them into flags."""
    from multibox.config import Config
    from multibox.engine.stop import stop_rule

    with pytest.raises(UserError) as exc:
        stop_rule(Config.preset("paper"), 10)
    assert "--" not in str(exc.value) and "train.steps" in str(exc.value)
    from multibox.engine.run_dir import claim_run_dir

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_bytes(b"x")
    with pytest.raises(UserError) as exc:
        claim_run_dir(tmp_path / "old", resume=False, exist_ok=False)
    assert "--" not in str(exc.value) and "holds a previous run" in str(exc.value)


@pytest.mark.parametrize("flag,value,fragment", [
    ("--workers", "-1", "--workers: expected a non-negative integer"),
    ("--seed", "-3", "--seed: expected a non-negative integer"),
    ("--image-size", "7", "--image-size: expected an integer in [32, 4096]"),
    ("--image-size", "100000", "--image-size: expected an integer in [32, 4096]"),
])
def test_command_line_values_are_checked_before_anything_runs(flag, value, fragment, tmp_path, capsys):
    assert exit_code(["train", "--out", str(tmp_path / "r"), "--steps", "1", flag, value]) == 2
    assert fragment in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_evaluate_on_an_empty_split_is_an_error(tiny_model, tmp_path, capsys):
    from tests.fixtures.datasets import basic_spec, write_voc

    root = write_voc(tmp_path / "voc", basic_spec(), "train")
    write_voc(root, [], "val")  # a split file with no ids
    assert exit_code(["evaluate", "--model", str(tiny_model), "--data", str(root), "--split", "val",
                      "--out", str(tmp_path / "ev")]) == 2
    assert "the val split has no images to score" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "ev").exists()
