"""bench/gpu_default.py (the GPU run of the default, issue 21 item 3) runs its code paths on the CPU too,
shrunk (--tiny), so the script a lent GPU runs once is known to work before it gets there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "gpu_default.py"


def test_the_gpu_script_runs_every_part_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--device", "cpu", "--tiny", "--images", "6", "--steps", "20", "--json", str(tmp_path / "r.json")])
    assert results["caching"]["maps"] == 6 * 8  # 6 images x mirror and rotations x 1 scale
    for part in ("head", "end_to_end", "detect"):
        assert results[part]["images_per_s"] > 0, part
        assert results[part]["gpu_busy"] == "n/a"  # no GPU to sample here
    assert results["head"]["steps_per_s"] > 0
    out = capsys.readouterr().out
    assert "| head steps (cached windows) |" in out and "| multibox detect |" in out
    assert (tmp_path / "r.json").exists()
