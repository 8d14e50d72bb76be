"""The streaming pipeline of `multibox detect`: decode ahead, run the network, write behind.

Three kinds of work overlap, so the network is rarely kept waiting:

* **Decoding** in a pool of worker threads (PIL releases the GIL while it decodes), at most
  ``max(2 x batch_size, 2 x workers)`` images read ahead of the network, handed over in the order of
  the inputs; with no workers (`detect`'s default on a CPU, whose cores the network uses) between
  network runs on the calling thread.
* **The network** on the calling thread, one batch at a time; or, for a :class:`Staged` predict (an
  exported model on a CPU), in a thread of its own while the calling thread finishes the previous batch
  (NMS) and prepares the next (windows, resizing), holding one batch more.
* **Writing** in one worker thread, in order: the drawing (optional), the image's line of
  ``OUT/detections.jsonl`` (flushed at once, after its drawing: a line means the image is done), and
  the annotation writers. At most ``max(2 x batch_size, 4)`` images wait there.

So the images held at any time are bounded (read ahead + the batch + waiting + the one being
written) whatever the number of inputs: memory is flat in the number of images. An unreadable file is
named in one line on stderr and returned as skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from PIL import Image

from multibox.data.images import open_image
from multibox.errors import UserError
from multibox.inference.entries import detection_entry
from multibox.reports.plots import DRAW_CONF, draw_for_viewing
from multibox.threads import torch_threads

READ_WORKERS = max(1, min(4, os.cpu_count() or 1))  # decoding threads: enough to keep one network fed
Predict = Callable[[list[Image.Image]], list[dict]]
T = TypeVar("T")


@dataclass
class Staged:
    """A Predict cut in three, so the network of one batch runs in its own thread while the calling
    thread prepares the next batch and finishes the previous one: ``prepare`` (images -> state),
    ``network`` (state -> outputs; a runtime that releases the GIL), ``finish`` (state, outputs -> per-image
    detection dicts). For a runtime whose threads do not spin (ONNX Runtime without spinning, OpenVINO):
    the single-threaded preparing and NMS then use the core the network's threads leave between their
    parallel sections (2 cores, ONNX Runtime, 200 tiles decoded beforehand: 101-108 images/s against
    79-93 one stage after the other)."""

    prepare: Callable[[list[Image.Image]], object]
    network: Callable[[object], object]
    finish: Callable[[object, object], list[dict]]
    torch_threads: int | None = None  # torch's threads while the stages run (multibox.threads.torch_threads)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def read(path: Path) -> Image.Image | UserError:
    """The RGB image at ``path``, or the one-line UserError saying why it cannot be read."""
    try:
        return open_image(path)
    except UserError as exc:
        return exc


def decoded(todo: list[tuple[int, Path]], workers: int,
            ahead: int) -> Iterator[tuple[int, Path, Image.Image | UserError]]:
    """(position, path, image or error) of each ``todo`` item in order, decoded by ``workers`` threads
    with at most ``ahead`` items in flight (read, or waiting to be taken); ``workers`` 0: decoded by the
    calling thread, each when it is asked for."""
    if workers == 0:
        yield from ((index, path, read(path)) for index, path in todo)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="detect-read")
    pending: deque[tuple[int, Path, Future]] = deque()
    items = iter(todo)
    try:
        for index, path in items:
            pending.append((index, path, pool.submit(read, path)))
            if len(pending) >= ahead:
                index, path, future = pending.popleft()
                yield index, path, future.result()
        while pending:
            index, path, future = pending.popleft()
            yield index, path, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class InOrderBehind:
    """Tasks run one after another in a worker thread, at most ``depth`` waiting; a task's exception is
    raised by the next :meth:`put` or by :meth:`close` (which waits for every task)."""

    def __init__(self, depth: int) -> None:
        self.depth, self.pending = max(1, depth), deque()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="detect-write")

    def put(self, task: Callable[..., None], *args) -> None:
        self.pending.append(self.pool.submit(task, *args))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Sink:
    """Where each image's detections go (in the writing thread): its drawing OUT/images/PICTURE.jpg when
    ``save`` (boxes scoring at least ``draw_conf``), its line of the JSONL ``log``, the ``writers``."""

    out: Path
    log: IO[str]
    class_names: list[str] | None
    pictures: list[str]
    save: bool = True
    draw_conf: float = DRAW_CONF
    writers: list = field(default_factory=list)
    written: int = 0

    def put(self, det: dict, image: Image.Image, path: Path, index: int) -> None:
        entry = detection_entry(det, image.width, image.height, self.class_names, str(path))
        if self.save:
            picture = f"images/{self.pictures[index]}.jpg"
            # JPEG: 1.2 ms for a 640 px drawing where PNG at compress_level 1 took 24 ms (the writing thread
            # shares the CPU with the network), a third of the bytes; what Ultralytics saves too
            self.drawing(image, det).save(self.out / picture, quality=90)
            entry["drawing"] = picture
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()  # a line is there for good once written: a killed run keeps it
        self.written += 1
        for writer in self.writers:
            writer.add(entry, Path(path), int(entry["width"]), int(entry["height"]))

    def drawing(self, image: Image.Image, det: dict) -> Image.Image:
        """``image`` upscaled for viewing with the boxes scoring at least ``draw_conf`` drawn."""
        if self.class_names is None:
            return draw_for_viewing(image, det["boxes"], det["scores"], min_score=self.draw_conf)
        ids = det["labels"].tolist()
        return draw_for_viewing(image, det["boxes"], det["scores"], labels=[self.class_names[i] for i in ids],
                                class_ids=ids, min_score=self.draw_conf)


def stream(todo: list[tuple[int, Path]], predict: Predict | Staged, sink: Sink, batch_size: int = 1,
           workers: int = READ_WORKERS, progress=None) -> list[dict]:
    """Run ``predict`` over the images of ``todo`` ((position in the inputs, path), in order) and hand
    each result to ``sink``; the unreadable files as [{"path", "reason"}], each also named on stderr.
    ``progress``: a tqdm bar (or None), advanced per image. A :class:`Staged` predict runs each batch's
    network in a thread of its own while the previous batch is finished and the next one prepared."""
    skipped: list[dict] = []
    behind = InOrderBehind(max(2 * batch_size, 4))
    network = ThreadPoolExecutor(1, thread_name_prefix="detect-network") if isinstance(predict, Staged) else None

    def hand_over(batch: list, readable: list, dets: list[dict]) -> None:
        for (index, path, image), det in zip(readable, dets):
            behind.put(sink.put, det, image, path, index)
        if progress is not None:
            progress.update(len(batch))

    try:
        with torch_threads(predict.torch_threads if network is not None else None):
            in_flight = None  # Staged: (batch, its readable items, state, the network's Future)
            for batch in batched(decoded(todo, workers, max(2 * batch_size, 2 * workers)), batch_size):
                readable = readable_items(batch, skipped, progress)
                if network is None:
                    hand_over(batch, readable, predict([image for _, _, image in readable]) if readable else [])
                    continue
                started = start_network(predict, network, batch, readable)
                if in_flight is not None:  # the previous batch finishes while this one's network runs
                    hand_over(*finished(predict, *in_flight))
                in_flight = started
            if in_flight is not None:
                hand_over(*finished(predict, *in_flight))
    finally:
        if network is not None:
            network.shutdown(wait=True, cancel_futures=True)
        behind.close()  # what the network computed is written, even on Ctrl-C
    return skipped


def readable_items(batch: list, skipped: list[dict], progress=None) -> list:
    """The decoded items of ``batch``; each unreadable one named on stderr and added to ``skipped``."""
    for _, path, error in (item for item in batch if isinstance(item[2], UserError)):
        say(f"{error}", progress)
        skipped.append({"path": str(path), "reason": reason(error)})
    return [item for item in batch if not isinstance(item[2], UserError)]


def start_network(predict: Staged, network: ThreadPoolExecutor, batch: list, readable: list) -> tuple:
    """(batch, readable, state, Future of the network's outputs) with the batch prepared and its network
    started in the ``network`` thread (state and Future None for a batch with nothing readable)."""
    if not readable:
        return batch, readable, None, None
    state = predict.prepare([image for _, _, image in readable])
    return batch, readable, state, network.submit(predict.network, state)


def finished(predict: Staged, batch: list, readable: list, state: object, future: Future | None) -> tuple:
    """(batch, readable, detections) of a batch whose network was started."""
    return batch, readable, predict.finish(state, future.result()) if future is not None else []


def reason(error: UserError) -> str:
    """Why a file was skipped, without its path (the entry names it)."""
    problem = getattr(error, "problem", None)
    return problem.what if problem is not None else str(error)


def say(line: str, progress=None) -> None:
    """One line on stderr, above the progress bar when there is one."""
    if progress is not None:
        progress.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)
