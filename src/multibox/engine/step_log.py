"""The training log: RUN_DIR/log.jsonl lines and the progress bar, with one host copy per log step."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from multibox.engine import distributed
from multibox.errors import TrainingDiverged

if TYPE_CHECKING:
    from multibox.engine.run import Run
    from multibox.engine.stop import StopRule


class StepLog:
    """Per-step log lines in RUN_DIR/log.jsonl and the progress bar, on rank 0.

    The loss terms of the steps since the last flush stay on the device; :meth:`flush` (every log_every
    steps, before checkpoints and at the end) brings them to the host in one copy, averaged over ranks,
    and raises TrainingDiverged naming the first step with a non-finite term.
    """

    def __init__(self, run: Run, stop: StopRule) -> None:
        self.run, self.every, self.stop = run, max(1, run.cfg.train.log_every), stop
        self.file = open(run.out / "log.jsonl", "a") if run.world.is_main else None
        # With a time budget the bar counts percent of the run (whichever limit binds), so its total and ETA
        # follow the budget; with a step limit alone, steps.
        self.timed = stop.deadline is not None
        total, initial = (100.0, round(100 * run.progress, 1)) if self.timed else (stop.max_steps, run.step)
        self.bar = tqdm(total=total, initial=initial, unit="%" if self.timed else "step", dynamic_ncols=True,
                        mininterval=1.0, disable=not run.world.is_main,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]" if self.timed else None)
        self.window_start, self.window_images = time.perf_counter(), 0
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []  # Tensor[T] per step, on the device

    def __call__(self, terms: dict[str, torch.Tensor], batch: int) -> None:
        self.names = list(terms)
        self.pending.append(torch.stack(list(terms.values())))
        self.window_images += batch * self.run.world.world_size
        if self.timed:  # the step is shown in the postfix of each log line (write)
            self.bar.update(round(100 * self.stop.progress(self.run.step), 1) - self.bar.n)
        else:
            self.bar.update(1)
        if self.run.step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = distributed.mean_over_ranks(torch.stack(self.pending)).cpu()  # [n, T]: the one host sync
        first_step = self.run.step - len(self.pending) + 1
        self.pending = []
        check_finite(rows, self.names, first_step, self.run.out)
        self.write({name: float(v) for name, v in zip(self.names, rows[-1])})

    def flush_quietly(self) -> bool:
        """:meth:`flush` on the way out (Ctrl-C): False, instead of raising, when a term is not finite."""
        try:
            self.flush()
        except TrainingDiverged:
            return False
        return True

    def write(self, values: dict[str, float]) -> None:
        now = time.perf_counter()
        rate = self.window_images / max(now - self.window_start, 1e-9)
        self.window_start, self.window_images = now, 0
        if self.file is None:
            return
        record = {"step": self.run.step, **{k: round(v, 6) for k, v in values.items()},
                  "lr": self.run.optimizer.param_groups[0]["lr"], "images_per_s": round(rate, 2)}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        terms = {k: f"{v:.3f}" for k, v in values.items() if k != "loss"}  # the task's own terms
        step = {"step": self.run.step} if self.timed else {}  # the bar counts percent: show the step beside it
        self.bar.set_postfix(**step, loss=f"{values['loss']:.3f}", **terms, img_s=f"{rate:.0f}")

    def note(self, record: dict) -> None:
        """An extra log.jsonl line (e.g. a validation score), also shown above the progress bar."""
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
            self.bar.write(" ".join(f"{k} {v}" for k, v in record.items()))

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()


def check_finite(rows: torch.Tensor, names: list[str], first_step: int, out: Path) -> None:
    """Raise TrainingDiverged for the first non-finite entry of rows Tensor[n, T] (step first_step + i)."""
    bad = (~torch.isfinite(rows)).nonzero()
    if len(bad):
        i, t = bad[0].tolist()
        raise TrainingDiverged(f"step {first_step + i}: loss term {names[t]!r} is {float(rows[i, t])}; stopping "
                               f"(last checkpoint kept in {out}; try a lower --lr)")
