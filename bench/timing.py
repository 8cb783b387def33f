"""Timing helpers shared by the benchmarks: warm-up, per-call seconds, round-robin medians."""

import time

import numpy as np


def time_fn(fn, iters: int) -> float:
    """Mean seconds per call over `iters` calls."""
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def warmed(fn, calls: int = 2):
    """Calls fn `calls` times (compile, then warm caches) and returns it."""
    for _ in range(calls):
        fn()
    return fn


def timed(fn, repeats: int = 2) -> float:
    """Seconds per call after one warm-up call."""
    fn()
    return time_fn(fn, repeats)


def interleaved_medians(steps: dict, rounds: int, iters: int = 1) -> dict:
    """Median seconds per call of each step, timed round-robin.

    On a shared machine the speed drifts over minutes; measuring every variant in
    each round exposes them to the same drift, so the ratios stay meaningful.
    """
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(time_fn(step, iters))
    return {name: float(np.median(ts)) for name, ts in times.items()}
