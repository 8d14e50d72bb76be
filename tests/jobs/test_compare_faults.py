"""`multibox compare` on hand-edited metrics.json files (issue 12): a missing key, a wrong type or an
out-of-range value is a one-line error naming the file and the key, exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multibox.cli import main
from multibox.errors import UserError
from multibox.jobs.compare import compare, load_metrics


def _metrics(**changes) -> dict:
    metrics = {"method": "DeepMultiBox", "dataset": "voc:x:val", "curve": [0.25, 0.5, 0.75],
               "detection_rate": {"1": 0.25, "2": 0.5, "3": 0.75}, "pr_ap50": 0.4, "coco": {"AR100": 0.3}}
    metrics.update(changes)
    return {k: v for k, v in metrics.items() if v is not ...}  # ... deletes a key


def _write(folder: Path, metrics) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return path


def test_well_formed_metrics_compare(tmp_path):
    a, b = _write(tmp_path / "a", _metrics()), _write(tmp_path / "b", _metrics(method="other", pr_ap50=None))
    runs = compare([str(a), str(b)], tmp_path / "out")
    assert list(runs) == ["DeepMultiBox", "other"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["compare.md", "detection_rate.png"]
    table = (tmp_path / "out" / "compare.md").read_text()
    assert "| DeepMultiBox | 25.0 | 0.400 | 0.300 |" in table and "| other | 25.0 | – | 0.300 |" in table


@pytest.mark.parametrize("changes,message", [
    ({"curve": ...}, "not a metrics.json of multibox evaluate/baseline (no curve, detection_rate)"),
    ({"curve": "0.5"}, "'curve' must be a non-empty list of detection rates (one per box count)"),
    ({"curve": []}, "'curve' must be a non-empty list of detection rates (one per box count)"),
    ({"curve": [0.1, "x", 0.3]}, "curve[1] 'x' is not a detection rate in [0, 1]"),
    ({"curve": [0.1, float("nan")]}, "curve[1] 'nan' is not a detection rate in [0, 1]"),
    ({"curve": [0.1, 7]}, "curve[1] '7' is not a detection rate in [0, 1]"),
    ({"detection_rate": [0.1]}, "'detection_rate' must map box counts to detection rates"),
    ({"detection_rate": {"10": "high"}}, "detection_rate['10'] 'high' is not a detection rate in [0, 1]"),
    ({"pr_ap50": "0.4"}, "'pr_ap50' '0.4' is not a number in [0, 1]"),
    ({"coco": None}, "'coco' must be an object whose AR100 is a number in [0, 1]"),
    ({"coco": {"AR100": [1]}}, "'coco' must be an object whose AR100 is a number in [0, 1]"),
    ({"method": 3}, "'method' '3' is not text"),
])
def test_hand_edited_metrics_are_one_line_errors_naming_file_and_key(tmp_path, capsys, changes, message):
    good = _write(tmp_path / "good", _metrics())
    bad = _write(tmp_path / "bad", _metrics(**changes))
    with pytest.raises(UserError) as error:
        load_metrics(bad)
    assert str(error.value).startswith(f"{bad}: {message}")
    assert main(["compare", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(bad) in err
    assert not (tmp_path / "out" / "compare.md").exists()  # nothing half-written


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "not a metrics.json (JSON nested too deeply)"),
    ('{"curve": [0.1', "not a metrics.json (Expecting"),
    ("[1, 2]", "not a metrics.json of multibox evaluate/baseline"),
])
def test_unparseable_metrics_files(tmp_path, capsys, text, message):
    bad = _write(tmp_path / "bad", text)
    assert main(["compare", str(tmp_path / "bad"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}: {message}" in err
