"""Quiet by default (issue 20 item 6): one terminal line per kind of problem with its count and the first
one; every line kept for RUN/problems.log, printed by `data check --verbose` or MULTIBOX_VERBOSE=1."""

from __future__ import annotations

import io

import pytest
from fixtures.datasets import SpecImage, basic_spec, write_voc

from multibox.data import problems as problems_module
from multibox.data.problems import Channel, Problem, ProblemLog, write_problems_log
from multibox.data.voc import VOCDataset
from multibox.jobs.data import check_main


@pytest.fixture(autouse=True)
def _fresh_channel(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIBOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MULTIBOX_VERBOSE", raising=False)
    monkeypatch.setattr(problems_module, "_CHANNEL", Channel())


def border_spec() -> list[SpecImage]:
    """Five boxes past the border of a 40x40 image (DeepForest writes -1), one degenerate box."""
    boxes = [[-3, 2 + 5 * k, 10, 8 + 5 * k] for k in range(5)] + [[20, 20, 20, 30]]
    return [SpecImage("edge", 40, 40, boxes, [0] * 6), *basic_spec()[:1]]


def test_a_replayed_index_prints_one_line_per_kind_with_count_and_first(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", border_spec())
    VOCDataset(root, "train")
    VOCDataset(root, "train")  # opened again (train opens a split more than once): nothing new printed
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    clipped = next(line for line in lines if line.startswith("box-clipped: "))
    assert clipped.startswith("box-clipped: 5 problem(s), the first: ") and "edge.xml: object 1 " in clipped
    assert "--verbose" in clipped and "problems.log" in clipped  # where the full list is
    assert any(line.startswith("degenerate-box: 1 problem(s)") for line in lines)
    kept = problems_module.channel().lines
    assert len(kept) == 6 and sum("extends outside" in line for line in kept) == 5


def test_the_run_log_holds_every_line_and_later_summaries_name_it(tmp_path, capsys):
    root = write_voc(tmp_path / "voc", border_spec())
    dataset = VOCDataset(root, "train")
    path = write_problems_log(tmp_path / "run")
    assert path == tmp_path / "run" / "problems.log"
    written = path.read_text().splitlines()
    assert written == [str(p) for p in dataset.problems.problems] and len(written) == 6
    summary = dataset.problems.summary()
    assert "box-clipped: 5 problem(s), the first:" in summary and f"all listed in {path}" in summary
    assert write_problems_log(tmp_path / "empty") is not None  # the process's lines, not one log's
    problems_module._CHANNEL = Channel()
    assert write_problems_log(tmp_path / "none") is None and not (tmp_path / "none").exists()


def test_problems_found_later_show_the_first_of_each_kind_only(capsys):
    log = ProblemLog()
    for k in range(4):
        log.report(Problem("corrupt-image", f"img{k}.jpg", "", "truncated", "image skipped"))
    log.report(Problem("missing-image", "gone.jpg", "", "image file not found", "image skipped"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["img0.jpg", "gone.jpg"]
    assert "the first corrupt-image problem; more are counted" in lines[0]
    assert log.counts == {"corrupt-image": 4, "missing-image": 1}
    assert len(problems_module.channel().lines) == 5
    assert "corrupt-image: 4 problem(s), the first: img0.jpg: truncated -> image skipped" in log.summary()


def test_verbose_prints_every_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULTIBOX_VERBOSE", "1")
    monkeypatch.setattr(problems_module, "_CHANNEL", Channel())  # reads the variable when made
    VOCDataset(write_voc(tmp_path / "voc", border_spec()), "train")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6 and sum("extends outside" in line for line in lines) == 5


def test_explicit_echo_still_gets_every_line():
    lines: list[str] = []
    log = ProblemLog(echo=lines.append)
    for k in range(3):
        log.add("box-clipped", "a.xml", f"object {k}", "outside", "clipped")
    assert lines == [f"a.xml: object {k}: outside -> clipped" for k in range(3)]


def _check(root, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    return check_main(str(root), "train", out=out, **kwargs), out.getvalue()


def test_data_check_summarizes_by_default_and_lists_all_with_verbose(tmp_path):
    root = write_voc(tmp_path / "voc", border_spec())
    code, quiet = _check(root)
    assert code == 1
    assert sum("extends outside" in line for line in quiet.splitlines()) == 1
    assert "  box-clipped: 5 problem(s), the first: " in quiet and "(--verbose lists all 6)" in quiet
    code, verbose = _check(root, verbose=True)
    assert code == 1 and sum("extends outside" in line for line in verbose.splitlines()) == 5 + 1  # + the summary


def test_data_check_plots_folder_holds_the_problem_list(tmp_path):
    root = write_voc(tmp_path / "voc", border_spec())
    code, text = _check(root, plots=tmp_path / "out")
    log = (tmp_path / "out" / "problems.log").read_text().splitlines()
    assert code == 1 and len(log) == 6 and sum("extends outside" in line for line in log) == 5
    assert f"so does {tmp_path / 'out' / 'problems.log'}" in text
