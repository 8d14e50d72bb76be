"""`multibox serve`: the URL printed, Ctrl-C stops it with exit code 0; one-line errors (exit 2) for a
bad checkpoint, a taken port and a missing multibox[serve] extra; `multibox --help` needs no FastAPI."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from multibox.cli import main


def test_serve_prints_the_url_serves_and_stops_cleanly_on_ctrl_c(checkpoints):
    run_folder = checkpoints[0].parent  # a run folder: its best.pt (else last.pt)
    proc = subprocess.Popen([sys.executable, "-m", "multibox.cli", "serve", "--model", str(run_folder), "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url and "Ctrl-C to stop" in line, line + proc.stderr.read()
        with urllib.request.urlopen(url.group(0) + "v1/model", timeout=30) as reply:
            info = json.loads(reply.read())
        assert info["localizer"]["num_boxes"] == 16
        assert info["limits"]["max_batch"] == 1 and "one image per forward pass" in line  # the CPU's default
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_serve_flags_reach_the_job(monkeypatch):
    import multibox.jobs.serve

    calls = []
    monkeypatch.setattr(multibox.jobs.serve, "serve", lambda *args: calls.append(args))
    assert main(["serve", "--model", "run", "--classifier", "cls", "--host", "0.0.0.0", "--port", "0", "--max-batch",
                 "4", "--max-wait-ms", "2.5", "--token", "t", "--device", "cpu", "--backend", "torch", "--threads", "1"]) == 0
    assert calls == [("run", "cls", "0.0.0.0", 0, 4, 2.5, "t", "cpu", "torch", 1)]
    main(["serve", "--model", "run"])
    assert calls[-1] == ("run", None, "127.0.0.1", 8000, None, 5.0, None, "auto", "auto", None)


def one_line_exit_2(argv: list[str], capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_serve_mistakes_are_one_line_errors(checkpoints, tmp_path, capsys):
    assert "no such checkpoint" in one_line_exit_2(["serve", "--model", str(tmp_path / "none.pt")], capsys)
    empty = tmp_path / "run"
    empty.mkdir()
    assert "best.pt" in one_line_exit_2(["serve", "--model", str(empty), "--device", "cpu"], capsys)
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = str(taken.getsockname()[1])
        err = one_line_exit_2(["serve", "--model", str(checkpoints[0]), "--port", port, "--device", "cpu"], capsys)
        assert f"127.0.0.1:{port}" in err and "cannot listen" in err
    finally:
        taken.close()
    assert "--max-batch" in one_line_exit_2(["serve", "--model", "m.pt", "--max-batch", "0"], capsys)


@pytest.mark.parametrize("missing", [["uvicorn"], ["fastapi"], ["python_multipart", "multipart"]])
def test_without_the_serve_extra(missing, monkeypatch, capsys):
    for name in missing:  # as if multibox[serve] were not (fully) installed
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "multibox.serving.app", raising=False)  # imported afresh, without them
    err = one_line_exit_2(["serve", "--model", "m.pt"], capsys)
    assert 'pip install "multibox[serve]"' in err


def test_the_cli_imports_no_server_package():
    code = ("import sys; sys.modules['fastapi'] = sys.modules['uvicorn'] = None\n"
            "from multibox.cli.parser import build_parser\n"
            "build_parser().parse_args(['serve', '--model', 'm.pt'])\n"
            "import multibox.cli, multibox.serving\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "multibox.cli", "--help"], check=False, capture_output=True,
                               text=True, timeout=120)
    assert help_text.returncode == 0 and "serve" in help_text.stdout


def test_serve_help_lists_its_flags(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model", "--classifier", "--host", "--port", "--max-batch", "--max-wait-ms", "--token", "--device"):
        assert flag in out
