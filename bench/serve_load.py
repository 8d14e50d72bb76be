"""Load test of `multibox serve` (issue 13): 8 concurrent clients send 1,000 requests over loopback,
20 of them malformed, to a server with dynamic batching and to one answering one request at a time
(two processes of the same model, sent the requests in alternating rounds); prints throughput, p50/p99 latency of the good requests, failures and the
server's RSS before and after. Bounded in requests (--requests) and in time (--timeout per phase).

    python bench/serve_load.py                        # the default localizer's architecture, 320 px
    python bench/serve_load.py --arch tiny            # a tiny network: the server's own overhead
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


def untrained_checkpoint(path: Path, arch: str, image_size: int) -> Path:
    """A checkpoint of random weights: "default", the default localizer's architecture (conv head on
    EfficientNet-Lite0's fused map), the cost of serving a real model without training one; "tiny",
    the tests' 64 px fc-head network (K = 16), where per-request overhead dominates."""
    import torch

    from multibox.config import Config
    from multibox.engine.checkpoint import save_checkpoint
    from multibox.modeling.localizer import build_grid_model, build_model

    torch.manual_seed(0)
    cfg = Config.preset("default" if arch == "default" else "paper")
    m = cfg.model
    if arch == "default":
        m.image_size = image_size
        shapes = torch.tensor([[24.0, 24], [48, 48], [80, 72], [120, 128]])
        model = build_grid_model(m.backbone, shapes, image_size, None, m.levels, m.stride, m.conv_hidden,
                                 m.conv_depth)
    else:
        m.backbone, m.image_size, m.num_boxes, m.hidden_dim = "tiny", 64, 16, 64
        xy = torch.rand(16, 2) * 0.6
        model = build_model("tiny", torch.cat([xy, xy + 0.1 + torch.rand(16, 2) * 0.3], 1), None, 64, m.grid)
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
    """Count one answer: a malformed request's status, or a good one's latency (or its failure)."""
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


def warm_up(port: int, bodies: list[bytes]) -> None:
    """One request per photo size, not counted: the allocator and caches settle first."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for body in bodies:
        conn.request("POST", "/v1/detect", body=body, headers={"Content-Type": "image/jpeg"})
        conn.getresponse().read()
    conn.close()


def run_round(port: int, phase: Phase, args: argparse.Namespace, requests: int, bad: int, seed: int) -> None:
    """``requests`` requests (``bad`` of them malformed) from the clients against one server."""
    jobs, lock, bodies, wrong = plan(requests, bad, seed), threading.Lock(), photos(), malformed()
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(port, jobs, lock, phase, bodies, wrong,
                                                     start + args.timeout / args.rounds))
               for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.wall += time.perf_counter() - start


def run_both(model: Path, args: argparse.Namespace) -> list[Phase]:
    """Both servers up at once; the requests sent in rounds, alternating which server goes first, so
    that both see the same background load of a shared machine on average."""
    settings = [(f"batching (max {args.max_batch}, {args.max_wait_ms:g} ms)", args.max_batch, args.max_wait_ms),
                ("one at a time (max 1, 0 ms)", 1, 0)]
    servers = [start_server(model, batch, wait, args.device) for _, batch, wait in settings]
    phases = [Phase(name) for name, _, _ in settings]
    try:
        for (proc, port), phase in zip(servers, phases):
            warm_up(port, photos())
            phase.rss_before_mb = rss_mb(proc.pid)
        for r in range(args.rounds):
            share = args.requests // args.rounds + (r < args.requests % args.rounds)
            bad = args.malformed // args.rounds + (r < args.malformed % args.rounds)
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for i in order:
                run_round(servers[i][1], phases[i], args, share, bad, seed=r)
        for (proc, _), phase in zip(servers, phases):
            phase.rss_after_mb = rss_mb(proc.pid)
    finally:
        for proc, _ in servers:
            proc.send_signal(2)  # Ctrl-C: the server stops cleanly
        for proc, _ in servers:
            proc.wait(60)
    return phases


def forward_ceiling(model: Path, batch: int, device: str) -> tuple[float, float]:
    """ms per image of the served inference path alone (Localizer.predict_batch, in this process, no
    HTTP, the server's thread count): one image at a time, and in batches of ``batch``; fastest of 3.
    Their ratio is the most batching can gain on this machine."""
    import torch

    from multibox.inference.loading import load_localizer
    from multibox.jobs.serve import server_threads, serving_model

    torch.set_num_threads(server_threads())
    with tempfile.TemporaryDirectory() as tmp:  # the backend `serve` picks by default (ONNX Runtime on the CPU)
        path, runtime = serving_model(model, None, device, "auto", Path(tmp))
        localizer = load_localizer(path, device, spinning=False, runtime=runtime)
        return ceiling_of(localizer, batch)


def ceiling_of(localizer, batch: int) -> tuple[float, float]:
    """:func:`forward_ceiling` of a loaded localizer."""
    images = [Image.open(io.BytesIO(body)).convert("RGB") for body in photos()]
    images = (images * batch)[:batch]
    single, batched = [], []
    for _ in range(3):
        start = time.perf_counter()
        for image in images:
            localizer.predict_batch([image], 10)
        single.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        localizer.predict_batch(images, 10)
        batched.append((time.perf_counter() - start) / batch)
    return 1000 * min(single), 1000 * min(batched)


def table(rows: list[dict]) -> str:
    """The phases as one Markdown table."""
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
    """Parse the options, run both servers, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint to serve (default: the default architecture, random head)")
    p.add_argument("--arch", choices=("default", "tiny"), default="default", help="the untrained model without --model")
    p.add_argument("--image-size", type=int, default=320, help="input size of the default architecture")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--malformed", type=int, default=20)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=4, help="the requests are sent in rounds, alternating the servers")
    p.add_argument("--timeout", type=float, default=300, help="seconds per server; requests left then are not sent")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else untrained_checkpoint(Path(tmp) / "model.pt", args.arch,
                                                                         args.image_size)
        print(f"machine: {machine(int(os.environ.get('OMP_NUM_THREADS', os.cpu_count() or 1)))}")
        arch = {"default": f"default architecture (EfficientNet-Lite0 conv head, {args.image_size} px)",
                "tiny": "the tests' tiny network (64 px, fc head, K = 16)"}[args.arch]
        print(f"model: {args.model or arch + ', random weights'}; "
              f"{args.clients} clients, {args.requests} requests ({args.malformed} malformed), photos {SIZES}")
        single, batched = forward_ceiling(model, args.max_batch, args.device)
        print(f"inference alone (Localizer.predict_batch in-process, no HTTP): {single:.1f} ms/image one at a time, "
              f"{batched:.1f} ms/image in batches of {args.max_batch}: batching can gain at most {single / batched:.2f}x")
        rows = [phase.summary() for phase in run_both(model, args)]
    print(table(rows))
    speedup = rows[0]["throughput_rps"] / rows[1]["throughput_rps"] if rows[1]["throughput_rps"] else float("nan")
    print(f"batching / one at a time: {speedup:.2f}x throughput (target >= 1.5x)")
    for r in rows:  # the server against the same backend's in-process rate, one image at a time
        print(f"{r['phase']}: {r['throughput_rps']} req/s = {100 * r['throughput_rps'] * single / 1000:.0f} % of the "
              f"in-process single-image ceiling ({1000 / single:.1f} images/s; target >= 90 %)")
    for r in rows:
        if r["first_failures"]:
            print(f"{r['phase']}: first failures {r['first_failures']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "speedup": speedup, "inference_alone_ms_per_image":
                                               {"one_at_a_time": single, "batched": batched}}, indent=1))


if __name__ == "__main__":
    main()
