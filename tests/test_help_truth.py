"""Every default a `--help` shows is the value a run gets (issue 22 item 1): a walk over every flag of
every subcommand of the real parser, and the run folder each command picks, and the resolved config.yaml."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest
import yaml

from multibox.cli import main
from multibox.cli.commands import TRAIN_FLAGS
from multibox.cli.parser import build_parser
from multibox.config import Config
from multibox.engine.tasks import PAPER_IMAGE_SIZE

CONFIG_COMMANDS = {"train", "train-classifier", "priors"}  # flags -> Config fields (cli.commands.TRAIN_FLAGS)
# Resolved by code, not by a default: the classifier's and the priors' input side; the split `data` reads
# (cli.commands.cmd_data: from the data, multibox.data.splits).
COMPUTED = {("train-classifier", "image_size"): PAPER_IMAGE_SIZE, ("priors", "image_size"): PAPER_IMAGE_SIZE,
            ("data check", "split"): None, ("data show", "split"): None}
# Flags whose job parameter has another name.
PARAMETERS = {"out": "out_dir", "model": "model_path", "time": "minutes", "conf": "min_score", "format": "fmt"}
NOTHING = ("none", "off")  # what a help says for "no value"


def job_functions() -> dict:
    """command -> the job function its handler calls (the run gets its defaults for flags given as None)."""
    from multibox.jobs import baseline, compare, data, demo, detect, evaluate, export, paper, select, serve

    return {"demo": demo.demo, "paper": paper.paper, "evaluate": evaluate.evaluate, "baseline": baseline.run_baseline,
            "compare": compare.compare, "detect": detect.detect, "export": export.export_job, "serve": serve.serve,
            "data check": data.check_main, "data show": data.show_main, "select": select.select_images}


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every leaf subcommand ("data check"), aliases skipped."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    found += subcommands(sub, f"{prefix} {name}".strip())
    return found or [(prefix, parser)]


def flags() -> list[tuple[str, argparse.Action]]:
    skip = (argparse._HelpAction, argparse._VersionAction)
    return [(command, action) for command, parser in subcommands(build_parser()) for action in parser._actions
            if action.option_strings and not isinstance(action, skip)]


def resolved(command: str, action: argparse.Action) -> object:
    """What a run of ``command`` gets when ``action``'s flag is not given."""
    dest = action.dest
    if action.default is not None:  # the handler passes it on
        return action.default
    if command in CONFIG_COMMANDS and dest in TRAIN_FLAGS:
        section, name = TRAIN_FLAGS[dest]
        value = getattr(getattr(Config.preset("default"), section), name)
        return COMPUTED.get((command, dest), value)
    if command in CONFIG_COMMANDS:
        return COMPUTED.get((command, dest))
    if (command, dest) in COMPUTED:
        return COMPUTED[command, dest]
    job = job_functions().get(command)  # a command not listed there: its help must say "from ..." or nothing
    parameters = inspect.signature(job).parameters if job is not None else {}
    parameter = parameters.get(PARAMETERS.get(dest, dest))
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def shown_default(text: str | None) -> str | None:
    """The default a help text states: "(default X ..." or "(default: X ...", up to ; or )."""
    match = re.search(r"\(default:? ([^;)]*)", (text or "").replace("%%", "%"))
    return match.group(1).strip() if match else None


def same(shown: str, value: object) -> bool:
    literal = shown.split()[0].rstrip(",:")
    if value is None or value is False or value == []:
        return literal in NOTHING
    if isinstance(value, bool):
        return literal == ("on" if value else "off")
    if isinstance(value, (int, float)):
        try:
            return float(literal.replace(",", "")) == float(value)
        except ValueError:
            return False
    if isinstance(value, list):
        return literal == ",".join(map(str, value))
    return literal == str(value)


def test_the_walk_sees_every_command():
    commands = {command for command, _ in flags()}
    assert {"train", "train-classifier", "evaluate", "detect", "export", "serve", "data check", "priors"} <= commands


@pytest.mark.parametrize("command,action", flags(), ids=lambda x: x if isinstance(x, str) else x.option_strings[-1])
def test_help_default_is_what_the_run_gets(command, action):
    flag = "/".join(action.option_strings)
    value, shown = resolved(command, action), shown_default(action.help)
    valued = action.nargs != 0 and not action.required and not isinstance(action, argparse._StoreConstAction)
    if valued and value not in (None, False, []) and shown is None:
        pytest.fail(f"{command} {flag}: the help names no default; a run gets {value!r}")
    if shown is None or (shown.startswith("runs/") and value is None):  # run folders: test_default_run_folders
        return
    if shown.startswith("from "):
        assert value is None, f"{command} {flag}: the help says {shown!r}, a run gets {value!r}"
    else:
        assert same(shown, value), f"{command} {flag}: the help says {shown!r}, a run gets {value!r}"


class FolderChosen(Exception):
    """Raised where a command picks its default run folder: the test stops there."""


@pytest.mark.parametrize("argv", [
    ["train", "--steps", "1"], ["train-classifier", "--steps", "1"], ["evaluate", "--model", "m.pt"],
    ["baseline", "random"], ["compare", "m.json"], ["detect", "--model", "m.pt", "x.jpg"],
    ["select", "--model", "m.pt", "--images", "x.jpg"]])
def test_default_run_folders(argv, monkeypatch, tmp_path):
    """The run folder a command picks without --out is the one its help names."""
    import multibox.engine.run_dir as run_dir
    import multibox.engine.trainer as trainer

    def chosen(name, *args, **kwargs):
        raise FolderChosen(name)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_dir, "next_run_dir", chosen)
    monkeypatch.setattr(trainer, "next_run_dir", chosen)
    with pytest.raises(FolderChosen) as exc:
        main(argv)
    action = next(a for c, a in flags() if c == argv[0] and "--out" in a.option_strings)
    assert shown_default(action.help).split()[0].rstrip(",") == f"runs/{exc.value.args[0]}"


def test_config_yaml_holds_the_resolved_geometry(tmp_path):
    """The default conv head: the input size and stride chosen from the data and K as built, not 100."""
    import torch

    from multibox.engine.checkpoint import load_checkpoint, model_from_checkpoint

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"backbone": "tiny", "conv_hidden": 16, "conv_depth": 1},
        "data": {"synthetic_sizes": {"train": 4, "val": 2, "test": 2}, "synthetic_image_size": 64, "num_workers": 0,
                 "cache_scales": [1.0], "rotate": False, "flip": False},
        "train": {"device": "cpu", "steps": 1, "batch_size": 2}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert saved["image_size"] is not None and saved["stride"] in (8, 16)
    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt"))
    assert saved["num_boxes"] == model.num_boxes == (saved["image_size"] // saved["stride"]) ** 2 * saved["shapes_per_cell"]
    assert saved["num_boxes"] != Config().model.num_boxes
    assert torch.is_tensor(model.priors)
