"""SID quality: code utilisation and perplexity per level, collisions, reconstruction, a plot."""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from sidjax.sid.collisions import collision_groups


def sid_report(codes: np.ndarray, codes_per_level: int, recon_mse: float | None = None,
               **extra) -> dict:
    codes = np.asarray(codes)
    n = len(codes)
    groups = collision_groups(codes)
    levels = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codes_per_level)
        p = counts[counts > 0] / n
        levels.append({"used": int((counts > 0).sum()), "size": int(max(codes_per_level,
                                                                         len(counts))),
                       "utilisation": float((counts > 0).sum() / max(codes_per_level,
                                                                    len(counts))),
                       "perplexity": float(np.exp(-(p * np.log(p)).sum())),
                       "counts": counts.tolist()})
    distinct = n - sum(len(g) - 1 for g in groups)
    report = {
        "items": n, "distinct_sids": distinct, "collision_rate": 1.0 - distinct / n,
        "items_in_collisions": sum(len(g) for g in groups), "collision_groups": len(groups),
        "largest_collision_group": max((len(g) for g in groups), default=1),
        "levels": levels, "sid_tokens": sum(level["used"] for level in levels),
    }
    if recon_mse is not None:
        report["recon_mse"] = float(recon_mse)
    report.update(extra)
    return report


def write_report(report: dict, directory: str, plot: bool = True) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sid_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    if plot:
        plot_code_usage(report, os.path.join(directory, "sid_code_usage.png"))


def plot_code_usage(report: dict, path: str) -> bool:
    """Per-level code usage histogram (sorted counts) as a PNG; needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed (pip install 'sidjax[plot]'); no %s.", path)
        return False
    levels = report["levels"]
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 3), squeeze=False)
    for ax, (i, level) in zip(axes[0], enumerate(levels)):
        counts = sorted(level["counts"], reverse=True)
        ax.bar(range(len(counts)), counts, width=1.0)
        ax.set_title(f"level {i + 1}: {level['used']}/{level['size']} used, "
                     f"ppl {level['perplexity']:.0f}", fontsize=9)
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("items")
    fig.suptitle(f"{report['items']} items, collision rate {report['collision_rate']:.2%}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
