"""`multibox serve`: the HTTP API and the page of :mod:`multibox.serving` on uvicorn.

The socket is bound first (a taken port is a one-line error before any exporting), then the model is
loaded before the server answers (a bad checkpoint is a one-line error, not a server that never gets
ready); the printed URL is the one listening. Ctrl-C stops
uvicorn gracefully (requests in flight finish) and the command returns normally.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import tempfile
import threading
from importlib.util import find_spec
from pathlib import Path

from multibox.errors import UserError
from multibox.threads import available_cpus, omp_threads

INSTALL_HINT = 'the server needs FastAPI and uvicorn: pip install "multibox[serve]"'


def server_threads() -> int:
    """Torch threads for the one forward-pass thread: OMP_NUM_THREADS when set, else every core
    (forward passes never overlap, so they do not compete for cores with each other)."""
    return omp_threads() or available_cpus()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); taken or unknown addresses are a UserError."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise UserError(f"address {host}:{port}: cannot listen there ({exc.strerror or exc})") from None


def quiet_server(config):
    """A uvicorn Server whose Ctrl-C / SIGTERM only stop it gracefully. uvicorn's own signal capture
    re-raises the signal after shutting down, which surfaces as a KeyboardInterrupt (and a logged
    traceback of the lifespan task) instead of a clean exit."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return QuietServer(config)


BACKENDS = ("auto", "torch", "onnx", "openvino")


def serving_backend(classifier: str | Path | None, device: str, backend: str) -> str:
    """``backend`` resolved: "auto" is OpenVINO on the CPU where installed (1.83x ONNX Runtime's rate on the
    default's network, bench/openvino_vs_ort.py), else ONNX Runtime (1.6x the eager torch model in README Performance),
    else torch; torch on a GPU or with a classifier (which needs the torch localizer)."""
    from multibox.engine.precision import resolve_device

    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if backend != "torch" and classifier is not None:
            raise UserError(f"backend {backend}: an exported localizer cannot be paired with --classifier "
                            "(use --backend torch)")
        return backend
    if classifier is not None or resolve_device(device).type != "cpu":
        return "torch"
    return next((b for b, module in (("openvino", "openvino"), ("onnx", "onnxruntime")) if find_spec(module)), "torch")


def serving_model(model: str | Path, classifier: str | Path | None, device: str, backend: str,
                  folder: Path) -> tuple[Path, str]:
    """(the model file the server loads, the runtime of an .onnx). Backends "onnx" / "openvino"
    (:func:`serving_backend`): the checkpoint exported to ``folder``/model.onnx at start-up (checked against
    it, as `multibox export` does); "torch", or an .onnx given: the file as it is."""
    from multibox.inference.loading import is_onnx
    from multibox.serving.predictor import resolve_checkpoint

    chosen = serving_backend(classifier, device, backend)
    runtime = "openvino" if chosen == "openvino" else "onnxruntime"
    path = resolve_checkpoint(model)
    if is_onnx(path) or chosen == "torch":
        return path, runtime
    from multibox.jobs.export import export_job

    export_job(path, "onnx", folder / "model.onnx")
    return folder / "model.onnx", runtime


GPU_BATCH = 8  # --max-batch on a GPU; on the CPU batches of a conv net measured slower per image (docs/serving.md)


def serve(model: str | Path, classifier: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          max_batch: int | None = None, max_wait_ms: float = 5.0, token: str | None = None,
          device: str = "auto", backend: str = "auto", threads: int | None = None) -> None:
    """Serve ``model`` (a checkpoint or a run folder; with ``classifier``, labelled boxes) until Ctrl-C.
    max_batch: most images in one forward pass (None: GPU_BATCH on a GPU, 1 on the CPU); backend: see
    :func:`serving_model`; threads: of the forward pass (None: :func:`server_threads`)."""
    try:
        import uvicorn

        from multibox.serving.app import create_app
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    if find_spec("python_multipart") is None and find_spec("multipart") is None:  # uploads would fail later
        raise UserError(INSTALL_HINT)
    import torch

    from multibox.serving.predictor import Predictor

    sock = bind(host, port)  # first: a taken port is said before minutes of exporting
    exported = tempfile.TemporaryDirectory(prefix="multibox-serve-")  # lives as long as the server
    try:
        path, runtime = serving_model(model, classifier, device, backend, Path(exported.name))
        predictor = Predictor.from_checkpoints(path, classifier, device, runtime)
    except BaseException:
        sock.close()
        exported.cleanup()
        raise
    if max_batch is None:
        max_batch = GPU_BATCH if predictor.localizer.device.type == "cuda" else 1
    app = create_app(lambda: predictor, max_batch, max_wait_ms, token)
    torch.set_num_threads(threads or server_threads())  # once the server will run: the one forward-pass thread's pool
    shown = f"[{host}]" if ":" in host else host
    batching = f"batches of up to {max_batch}" if max_batch > 1 else "one image per forward pass"
    print(f"serving {predictor.info['localizer']['file']} on http://{shown}:{sock.getsockname()[1]}/ "
          f"({predictor.info['device']}, {batching}; API: /v1/detect, docs: /docs); Ctrl-C to stop", flush=True)
    server = quiet_server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])  # until Ctrl-C (a second one forces the exit)
    finally:
        sock.close()
        exported.cleanup()
    print("stopped", flush=True)
