"""--threads on every command and multibox.set_threads in the API reach torch (issue 22 item 6)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

import multibox
from multibox import threads
from multibox.cli import main
from multibox.cli.parser import build_parser


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def leaf_parsers(parser: argparse.ArgumentParser, name: str = "multibox"):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
    for action in subs:
        for child_name, child in action.choices.items():
            yield from leaf_parsers(child, f"{name} {child_name}")


def test_every_command_takes_threads():
    commands = list(leaf_parsers(build_parser()))
    assert len(commands) > 10
    for name, parser in commands:
        assert any("--threads" in a.option_strings for a in parser._actions), name


def test_the_flag_reaches_torch_before_the_command_runs(tmp_path):
    torch.set_num_threads(2)
    code = main(["detect", "--model", str(tmp_path / "missing.pt"), str(tmp_path), "--threads", "1"])
    assert code == 2  # the command itself fails (no model), after the thread count was set
    assert torch.get_num_threads() == 1


def test_a_thread_count_below_one_is_a_one_line_error(tmp_path, capsys):
    assert main(["detect", "--model", str(tmp_path / "m.pt"), str(tmp_path), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "threads must be at least 1" in err[0]


def test_the_api_sets_threads():
    assert multibox.set_threads(1) == 1 and torch.get_num_threads() == 1


def test_the_default_is_this_process_share_of_its_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0)  # a quiet machine of 6 CPUs
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert threads.default_threads() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 processes on the node
    assert threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3


def test_cpus_other_processes_keep_busy_are_left_to_them(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 1)
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "busy_cpus", lambda: 5)
    assert threads.default_threads() == 1  # never below one
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0)
    assert threads.default_threads() == 2


def test_busy_cpus_reads_the_running_tasks():
    assert 0 <= threads.busy_cpus(samples=3, interval=0.0) <= 10 * (os.cpu_count() or 1)
