"""Config values are checked when loaded: types from the dataclass annotations, ranges, choices; each
bad value is a one-line error naming the file and the key, and `multibox train` exits 2 before reading data."""

import dataclasses
import typing

import pytest

from multibox.cli import main
from multibox.config import FIELD_RANGES, Config, check_values
from multibox.errors import UserError


def load(tmp_path, text: str | bytes) -> Config:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return Config.from_yaml(path)


@pytest.mark.parametrize("yaml_text, message", [
    ("train: {batch_size: 0}", "train.batch_size: expected a positive integer, got 0"),
    ("train: {batch_size: '32'}", "train.batch_size: expected a positive integer, got '32'"),
    ("train: {batch_size: true}", "train.batch_size: expected a positive integer, got True"),
    ("train: {steps: -5}", "train.steps: expected a positive integer or null, got -5"),
    ("train: {checkpoint_every: 0}", "train.checkpoint_every: expected a positive integer, got 0"),
    ("train: {lr: .nan}", "train.lr: expected a positive number, got nan"),
    ("train: {lr: .inf}", "train.lr: expected a positive number, got inf"),
    ("train: {lr: fast}", "train.lr: expected a positive number, got 'fast'"),
    ("data: {num_workers: -1}", "data.num_workers: expected a non-negative integer, got -1"),
    ("train: {seed: -1}", "train.seed: expected a non-negative integer, got -1"),
    ("model: {image_size: 7}", "model.image_size: expected an integer in [32, 4096] or null, got 7"),
    ("model: {image_size: 100000}", "model.image_size: expected an integer in [32, 4096] or null, got 100000"),
    ("data: {cache_scales: [1.0, -1]}", "data.cache_scales: expected a list of positive numbers, got [1.0, -1]"),
    ("data: {synthetic_sizes: {train: many}}", "data.synthetic_sizes: expected a mapping of strings to "
                                               "non-negative integers, got {'train': 'many'}"),
    ("train: {compile: 'yes please'}", "train.compile: expected true or false, got 'yes please'"),
    ("model: {backbone: vgg}", "model.backbone: unknown backbone 'vgg' (choose from"),
    ("train: {device: [0]}", "train.device: expected a string, got [0]"),
    ("- train\n- model\n", "expected a mapping (key: value lines) at the top level, got a list"),
    ("train: 3", "section 'train' must be a mapping"),
])
def test_bad_values_name_the_file_and_key(tmp_path, yaml_text, message):
    with pytest.raises(UserError) as info:
        load(tmp_path, yaml_text)
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'cfg.yaml'}: ") and message in text and "\n" not in text


def test_latin1_bytes_are_a_one_line_error(tmp_path):
    with pytest.raises(UserError) as info:
        load(tmp_path, "train:\n  lr: 0.1\n# caf\xe9\n".encode("latin-1"))
    assert str(info.value) == f"{tmp_path / 'cfg.yaml'}: line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_good_values_are_normalized(tmp_path):
    cfg = load(tmp_path, "\ufefftrain: {lr: 1, device: 0, steps: null}\nmodel: {levels: [8, 16]}\n")  # BOM allowed
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.device == "cuda:0"  # a GPU number, as `--device 0` (docs/reliability.md)
    assert cfg.train.steps is None and cfg.model.levels == [8, 16]
    assert load(tmp_path, "").to_dict() == Config().to_dict()  # an empty file: the defaults


def test_every_default_and_preset_passes():
    for name in ("default", "paper"):
        cfg = Config.preset(name)
        check_values(cfg)
        assert cfg.to_dict() == Config.preset(name).to_dict()


def _leaf_types(hint) -> set:
    args = typing.get_args(hint)
    return {hint} if not args else set().union(*(_leaf_types(a) for a in args))


def test_ranges_name_real_number_fields():
    for section, name in FIELD_RANGES:
        hints = typing.get_type_hints(type(getattr(Config(), section)))
        assert name in hints, (section, name)
        assert _leaf_types(hints[name]) & {int, float}, (section, name)  # a range on a number (or numbers)


def test_check_values_after_overrides_names_the_source():
    cfg = Config()
    cfg.train.batch_size, cfg.data.num_workers = 4, -2  # what a command line could set
    with pytest.raises(UserError, match=r"^command line: data\.num_workers: expected a non-negative integer, got -2$"):
        check_values(cfg, "command line")


def test_types_come_from_the_annotations():
    """A value of the wrong type in every typed field is refused (no second list of types to forget)."""
    for section in ("model", "data", "train"):
        for f in dataclasses.fields(getattr(Config(), section)):
            cfg = Config()
            setattr(getattr(cfg, section), f.name, object())
            with pytest.raises(UserError, match=rf"{section}\.{f.name}: expected"):
                check_values(cfg)


@pytest.mark.parametrize("yaml_text, fragments", [
    ("train: {batch_size: '32'}", ["cfg.yaml", "positive integer", "'32'"]),
    ("train: {lr: .nan}", ["cfg.yaml", "positive number", "nan"]),
    ("[1, 2]", ["cfg.yaml", "mapping"]),
    (b"train: {lr: 0.1}  # \xe9t\xe9\n", ["cfg.yaml", "not UTF-8"]),
])
def test_cli_exit_2_before_any_data_is_read(tmp_path, capsys, monkeypatch, yaml_text, fragments):
    def no_data(*args, **kwargs):
        pytest.fail("data read before the config check")

    monkeypatch.setattr("multibox.engine.trainer.training_split", no_data)
    monkeypatch.setattr("multibox.jobs.train.load_split", no_data)
    path = tmp_path / "cfg.yaml"
    path.write_bytes(yaml_text if isinstance(yaml_text, bytes) else yaml_text.encode())
    code = main(["train", "--out", str(tmp_path / "run"), "--config", str(path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
