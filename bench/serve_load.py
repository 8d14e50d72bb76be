"""Load test of `multibox serve` (issue 13): 8 concurrent clients send 1,000 requests over loopback,
20 of them malformed, once with dynamic batching and once one at a time, each against a fresh server
process of the same model; prints throughput, p50/p99 latency of the good requests, failures and the
server's RSS before and after. Bounded in requests (--requests) and in time (--timeout per phase).

    python bench/serve_load.py                        # the default localizer's architecture, 320 px
    python bench/serve_load.py --model runs/demo/best.pt --requests 400

Not a test: numbers depend on the machine and what else runs on it (docs/serving.md).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from measure import machine

QUOKKA = Path(__file__).parents[1] / "tests" / "fixtures" / "imgaug" / "quokka.jpg"
SIZES = [(640, 480), (800, 600), (480, 640), (960, 643), (512, 384)]  # the photos the clients send


def default_checkpoint(path: Path, image_size: int) -> Path:
    """The default localizer's architecture (conv head on EfficientNet-Lite0's fused map), random head,
    as a checkpoint: the cost of serving a real model, without training one."""
    import torch

    from multibox.config import Config
    from multibox.engine.checkpoint import save_checkpoint
    from multibox.modeling.localizer import build_grid_model

    cfg = Config.preset("default")
    cfg.model.image_size = image_size
    m = cfg.model
    torch.manual_seed(0)
    shapes = torch.tensor([[24.0, 24], [48, 48], [80, 72], [120, 128]])
    model = build_grid_model(m.backbone, shapes, image_size, None, tuple(m.levels), m.stride, m.conv_hidden,
                             m.conv_depth)
    save_checkpoint(path, {"task": "localizer", "model": model.state_dict(), "config": cfg.to_dict(), "step": 0,
                           "class_names": ["object"]})
    return path


def photos() -> list[bytes]:
    """JPEGs of a few photo sizes (the quokka fixture resized)."""
    base = Image.open(QUOKKA).convert("RGB")
    out = []
    for size in SIZES:
        buf = io.BytesIO()
        base.resize(size).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def malformed() -> list[tuple[str, bytes, str, str]]:
    """(kind, body, content type, query) of requests the server must refuse with a 4xx."""
    good = photos()[0]
    gif = io.BytesIO()
    Image.new("RGB", (32, 32)).save(gif, "GIF")
    return [("not an image", b"GET / HTTP/1.0 -- certainly not a picture", "image/jpeg", ""),
            ("truncated", good[: len(good) // 3], "image/jpeg", ""),
            ("bad option", good, "image/jpeg", "?top_k=0"),
            ("unsupported type", b"a,b\n1,2\n", "text/csv", ""),
            ("gif as png", gif.getvalue(), "image/png", ""),
            ("empty", b"", "image/png", "")]


@dataclass
class Phase:
    """What one run of the load against one server gave."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, good requests answered 200
    good_failures: list[str] = field(default_factory=list)
    bad_answers: dict[int, int] = field(default_factory=dict)  # status -> count, malformed requests
    batch_sizes: list[int] = field(default_factory=list)
    sent: int = 0
    bad_sent: int = 0
    wall: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    timed_out: bool = False

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1000
        return {"phase": self.name, "requests": self.sent, "good_ok": len(self.latencies),
                "good_failures": len(self.good_failures), "malformed_answers": self.bad_answers,
                "throughput_rps": round(self.sent / self.wall, 2) if self.wall else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
                "mean_batch": round(float(np.mean(self.batch_sizes)), 2) if self.batch_sizes else None,
                "rss_before_mb": self.rss_before_mb, "rss_after_mb": self.rss_after_mb, "timed_out": self.timed_out,
                "first_failures": self.good_failures[:3]}


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return round(int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024, 1)


def start_server(model: Path, max_batch: int, max_wait_ms: float, device: str) -> tuple[subprocess.Popen, int]:
    """`multibox serve` on a free loopback port; (process, port) once it listens."""
    cmd = [sys.executable, "-m", "multibox.cli", "serve", "--model", str(model), "--port", "0", "--device", device,
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not found:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(found.group(1))


def plan(requests: int, bad: int, seed: int = 0) -> list[int | None]:
    """Which request is which: a photo index, or None for a malformed one (at random positions)."""
    order: list[int | None] = [i % len(SIZES) for i in range(requests - bad)] + [None] * bad
    random.Random(seed).shuffle(order)
    return order


def client(port: int, jobs: list, lock: threading.Lock, phase: Phase, bodies: list[bytes], bad: list,
           deadline: float) -> None:
    """One client: a keep-alive connection taking the next request until none or the deadline is left."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.perf_counter() < deadline:
        with lock:
            if not jobs:
                return
            job, phase.sent = jobs.pop(), phase.sent + 1
        if job is None:
            with lock:  # the malformed kinds in turn, across all clients
                _, body, ctype, query = bad[phase.bad_sent % len(bad)]
                phase.bad_sent += 1
        else:
            body, ctype, query = bodies[job], "image/jpeg", "?top_k=10"
        start = time.perf_counter()
        try:
            conn.request("POST", f"/v1/detect{query}", body=body, headers={"Content-Type": ctype})
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            reply, data = None, repr(exc).encode()
        took = time.perf_counter() - start
        with lock:
            record(phase, job, reply, data, took)
    with lock:
        phase.timed_out = True


def record(phase: Phase, job: int | None, reply, data: bytes, took: float) -> None:
    status = reply.status if reply is not None else 0
    if job is None:
        phase.bad_answers[status] = phase.bad_answers.get(status, 0) + 1
        return
    if status == 200:
        answer = json.loads(data)
        if "boxes" in answer and len(answer["boxes"]) == len(answer["scores"]):
            phase.latencies.append(took)
            phase.batch_sizes.append(answer["timing"]["batch_size"])
            return
    phase.good_failures.append(f"{status}: {data[:200]!r}")


def run_phase(name: str, model: Path, args: argparse.Namespace, max_batch: int, max_wait_ms: float) -> Phase:
    proc, port = start_server(model, max_batch, max_wait_ms, args.device)
    phase, bodies, bad = Phase(name), photos(), malformed()
    try:
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in bodies:  # one request per size first: allocator and caches warm, not counted
            warm.request("POST", "/v1/detect", body=body, headers={"Content-Type": "image/jpeg"})
            warm.getresponse().read()
        phase.rss_before_mb = rss_mb(proc.pid)
        jobs, lock = plan(args.requests, args.malformed), threading.Lock()
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(port, jobs, lock, phase, bodies, bad, start + args.timeout))
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        phase.wall = time.perf_counter() - start
        phase.rss_after_mb = rss_mb(proc.pid)
    finally:
        proc.send_signal(2)  # Ctrl-C: the server stops cleanly
        proc.wait(60)
    return phase


def table(rows: list[dict]) -> str:
    header = ("| server | requests | good answered | good failed | malformed answers | throughput | p50 | p99 | "
              "mean batch | RSS before -> after |")
    lines = [header, "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        answers = ", ".join(f"{n} x {s}" for s, n in sorted(r["malformed_answers"].items()))
        lines.append(f"| {r['phase']} | {r['requests']} | {r['good_ok']} | {r['good_failures']} | {answers} | "
                     f"{r['throughput_rps']} req/s | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['mean_batch']} | "
                     f"{r['rss_before_mb']} -> {r['rss_after_mb']} MB |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint to serve (default: the default architecture, random head)")
    p.add_argument("--image-size", type=int, default=320, help="input size of the default model")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--malformed", type=int, default=20)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=300, help="seconds per phase; requests left then are not sent")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_checkpoint(Path(tmp) / "default.pt", args.image_size)
        print(f"machine: {machine(int(os.environ.get('OMP_NUM_THREADS', os.cpu_count() or 1)))}")
        print(f"model: {args.model or f'default architecture (EfficientNet-Lite0 conv head, {args.image_size} px)'}; "
              f"{args.clients} clients, {args.requests} requests ({args.malformed} malformed), photos {SIZES}")
        rows = [run_phase(f"batching (max {args.max_batch}, {args.max_wait_ms:g} ms)", model, args, args.max_batch,
                          args.max_wait_ms).summary(),
                run_phase("one at a time (max 1, 0 ms)", model, args, 1, 0).summary()]
    print(table(rows))
    speedup = rows[0]["throughput_rps"] / rows[1]["throughput_rps"] if rows[1]["throughput_rps"] else float("nan")
    print(f"batching / one at a time: {speedup:.2f}x throughput (target >= 1.5x)")
    for r in rows:
        if r["first_failures"]:
            print(f"{r['phase']}: first failures {r['first_failures']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "speedup": speedup}, indent=1))


if __name__ == "__main__":
    main()
