"""Scalar metrics to `workdir/metrics.jsonl` and TensorBoard, plus a progress line.

Only process 0 writes; other processes get a writer that drops everything, so
callers never branch on the process index.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging


def _to_float(value) -> float:
    return float(np.asarray(value))


def read_metric(path: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric (e.g. 'train/loss', 'eval/valid/hr@10') from a
    `metrics.jsonl`; a resumed run's repeated steps keep their last value."""
    latest = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if key in record and isinstance(record[key], (int, float)):
                    latest[int(record["step"])] = float(record[key])
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


class MetricWriter:
    """Writes scalars as JSON lines and TensorBoard events (process 0 only)."""

    def __init__(self, workdir: str, tensorboard: bool = True, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._jsonl = None
        self._tb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled or not scalars:
            return
        values = {f"{prefix}{k}": _to_float(v) for k, v in scalars.items()}
        record = {"step": int(step), "time": time.time(), **{
            k: (v if math.isfinite(v) else str(v)) for k, v in values.items()
        }}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                # TensorBoard tags take no '@' (it renamed 'hr@10' to 'hr_10' with a warning
                # line per write); the JSON lines keep the metric's own name.
                self._tb.add_scalar(k.replace("@", "_"), v, int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Progress:
    """A one-line progress bar (steps, rate, ETA) on process 0.

    On a terminal it redraws in place; in logs (not a tty) it prints a line each call.
    """

    def __init__(self, total_steps: int, start_step: int = 0, enabled: bool = True):
        self.total = int(total_steps)
        self.start_step = int(start_step)
        self.start_time = time.time()
        self.enabled = enabled and jax.process_index() == 0
        self.tty = sys.stderr.isatty()
        # (step, time) when the first step finished: the rate and ETA count from there, since
        # the first step includes XLA compilation (a minute or more for a real model).
        self.base: tuple[int, float] | None = None

    def compiling(self) -> None:
        """Says what the silent first step is doing."""
        if self.enabled and self.start_step < self.total:
            logging.info("Compiling the train step (step %d of %d; rate and ETA follow once "
                         "it has run)...", self.start_step + 1, self.total)

    def first_step_done(self, step: int) -> None:
        if self.base is not None:
            return
        self.base = (int(step), time.time())
        if self.enabled:
            logging.info("First step done in %.0f s (compilation included).",
                         self.base[1] - self.start_time)

    def rate(self, step: int) -> float:
        """Steps/s since the first step; 0 until a step after it has finished."""
        if self.base is None or step <= self.base[0]:
            return 0.0
        return (step - self.base[0]) / max(time.time() - self.base[1], 1e-9)

    def update(self, step: int, loss: float | None = None) -> None:
        if not self.enabled:
            return
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
        loss_text = f" loss {loss:.4g}" if loss is not None else ""
        line = f"[{bar}] {step}/{self.total} {rate:.2f} steps/s ETA {eta_text}{loss_text}"
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        else:
            logging.info("%s", line)

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
