"""GRPO's training curves: per-rollout reward and reasoning length (noisy: one point per step
of 8 prompts), their trailing means, and the greedy validation reward, as one PNG and as the
series a notebook plots."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import logging

from sidjax.train.metrics import read_metric


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start): [N] -> [N]."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return values
    window = max(int(window), 1)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def default_window(n: int) -> int:
    """About a tenth of the run, at least 3 steps."""
    return max(3, n // 10)


def validation_series(metrics_path: str, updates_per_rollout: int = 1,
                      initial: float | None = None) -> list[tuple[int, float]]:
    """(GRPO step, greedy validation reward) from the trainer's metrics.jsonl; `initial` is
    the reward before the first update (step 0)."""
    steps, rewards = read_metric(metrics_path, "eval/val/reward")
    updates = max(int(updates_per_rollout), 1)
    series = dict([(0, float(initial))] if initial is not None else [])
    series.update((step // updates, reward) for step, reward in zip(steps, rewards))
    return sorted(series.items())


def plot_curves(history: list[dict], path: str,
                validation: Sequence[tuple[int, float]] = ()) -> None:
    """Writes `path`: reward per rollout (faint) and its trailing mean, the validation reward
    (markers), and the mean reasoning length on the right axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed; no %s.", path)
        return
    steps = [h["step"] for h in history]
    window = default_window(len(history))
    rewards = [h["reward_mean"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.4))
    ax.plot(steps, rewards, color="tab:blue", alpha=0.25, linewidth=1,
            label="train reward (per rollout)")
    ax.plot(steps, smooth(rewards, window), color="tab:blue", linewidth=2,
            label=f"train reward ({window}-step mean)")
    if validation:
        ax.plot([s for s, _ in validation], [v for _, v in validation], color="tab:green",
                marker="o", linewidth=1.5, label="validation reward (greedy)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    if history and all("reasoning_len" in h for h in history):
        twin = ax.twinx()
        lengths = [h["reasoning_len"] for h in history]
        twin.plot(steps, smooth(lengths, window), color="tab:orange", linewidth=1.5,
                  linestyle="--", label=f"reasoning tokens ({window}-step mean)")
        twin.set_ylabel("mean reasoning tokens", color="tab:orange")
    # One legend under the axes, so it never hides a curve.
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=2,
               fontsize=7, frameon=False)
    ax.set_title("GRPO: reward and reasoning length")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
